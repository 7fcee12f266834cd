using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels;

/// <summary>Reads an input element stored as <typeparamref name="TRaw"/> and widens it to float, inside a kernel.</summary>
internal interface IElementReader<TRaw> where TRaw : unmanaged
{
    /// <summary>The float value of <paramref name="raw"/>.</summary>
    float ToFloat(TRaw raw);
}

/// <summary>F32 storage.</summary>
internal readonly struct F32Reader : IElementReader<float>
{
    /// <inheritdoc/>
    public float ToFloat(float raw) => raw;
}
/// <summary>IEEE half stored as its 16 bits.</summary>
internal readonly struct F16Reader : IElementReader<ushort>
{
    /// <inheritdoc/>
    public float ToFloat(ushort raw) => Numerics.HalfBitsToFloat(raw);
}
/// <summary>bfloat16 stored as its 16 bits.</summary>
internal readonly struct Bf16Reader : IElementReader<ushort>
{
    /// <inheritdoc/>
    public float ToFloat(ushort raw) => Numerics.Bf16BitsToFloat(raw);
}

/// <summary>Reads a mask element inside a kernel: nonzero keeps.</summary>
internal interface IMaskReader<TMask> where TMask : unmanaged
{
    /// <summary>True when the element keeps its position.</summary>
    bool Keep(TMask raw);
}
/// <summary>I64 mask.</summary>
internal readonly struct I64Mask : IMaskReader<long>
{
    /// <inheritdoc/>
    public bool Keep(long raw) => raw != 0;
}
/// <summary>I32 mask.</summary>
internal readonly struct I32Mask : IMaskReader<int>
{
    /// <inheritdoc/>
    public bool Keep(int raw) => raw != 0;
}
/// <summary>U8 or BOOL mask.</summary>
internal readonly struct U8Mask : IMaskReader<byte>
{
    /// <inheritdoc/>
    public bool Keep(byte raw) => raw != 0;
}

/// <summary>Reads an index element (I64 or I32) inside a kernel.</summary>
internal interface IIndexReader<TIdx> where TIdx : unmanaged
{
    /// <summary>The index as long.</summary>
    long Get(TIdx raw);
}
/// <summary>I64 index.</summary>
internal readonly struct I64Index : IIndexReader<long>
{
    /// <inheritdoc/>
    public long Get(long raw) => raw;
}
/// <summary>I32 index.</summary>
internal readonly struct I32Index : IIndexReader<int>
{
    /// <inheritdoc/>
    public long Get(int raw) => raw;
}

/// <summary>Per-accelerator cache of loaded kernels, keyed by the kernel method itself (its <see cref="MethodInfo"/>, closed
/// over its type arguments) and a variant (e.g. a group size): each kernel is compiled once per device.</summary>
internal static class KernelCache
{
    private static readonly ConditionalWeakTable<Accelerator, ConcurrentDictionary<(MethodInfo Kernel, int Variant),
        object>> Kernels = new();
    private static readonly ConditionalWeakTable<Accelerator, ConcurrentDictionary<(Type Type, int Key), object>> States = new();

    /// <summary>The loaded form of <paramref name="kernel"/> on <paramref name="accelerator"/>, loaded by <paramref name="load"/>
    /// on first use.</summary>
    public static TKernel Get<TKernel>(Accelerator accelerator, Delegate kernel, Func<Accelerator, TKernel> load) where TKernel : class =>
        Get(accelerator, kernel, 0, load);

    /// <summary>The loaded form of <paramref name="kernel"/> for <paramref name="variant"/> (a launch parameter baked into the
    /// loaded kernel, such as an implicit group size).</summary>
    public static TKernel Get<TKernel>(Accelerator accelerator, Delegate kernel, int variant, Func<Accelerator, TKernel> load)
        where TKernel : class
    {
        var table = Kernels.GetValue(accelerator, static _ => new());
        return (TKernel)table.GetOrAdd((kernel.Method, variant), static (_, x) => x.load(x.accelerator), (load, accelerator));
    }

    /// <summary>Per-accelerator state of type <typeparamref name="T"/> (device-resident tables such as FFT twiddles), one per
    /// <paramref name="key"/>.</summary>
    public static T State<T>(Accelerator accelerator, int key, Func<Accelerator, T> create) where T : class
    {
        var table = States.GetValue(accelerator, static _ => new());
        return (T)table.GetOrAdd((typeof(T), key), static (_, x) => x.create(x.accelerator), (create, accelerator));
    }
}

/// <summary>Group-wide reductions through shared memory and barriers (portable: no warp shuffles,
/// no assumption about warp size). The group size must be a power of two no larger than <see cref="MaxGroup"/>.</summary>
internal static class GroupReduce
{
    /// <summary>The largest group size the reductions support (shared memory is sized for it).</summary>
    public const int MaxGroup = 256;

    /// <summary>Largest power of two &lt;= min(<paramref name="want"/>, the accelerator's group limit, <see cref="MaxGroup"/>).</summary>
    public static int GroupSize(Accelerator accelerator, int want = MaxGroup)
    {
        int limit = Math.Min(Math.Min(want, MaxGroup), accelerator.MaxNumThreadsPerGroup);
        int g = 1;
        while (g * 2 <= limit) g *= 2;
        return g;
    }

    /// <summary>Sum of <paramref name="value"/> over the group; every thread gets the result.</summary>
    public static float Sum(float value)
    {
        var shared = SharedMemory.Allocate<float>(MaxGroup);
        int tid = Group.IdxX, n = Group.DimX;
        shared[tid] = value;
        Group.Barrier();
        for (int s = n / 2; s > 0; s >>= 1)
        {
            if (tid < s) shared[tid] += shared[tid + s];
            Group.Barrier();
        }
        float result = shared[0];
        Group.Barrier();
        return result;
    }
}
