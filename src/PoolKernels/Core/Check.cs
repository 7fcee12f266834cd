using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace PoolKernels;

/// <summary>Argument checks shared by every operation: each failure is an <see cref="ArgumentException"/>
/// naming the argument and the shapes involved, raised before any kernel runs.</summary>
internal static class Check
{
    /// <summary>The name an error message shows: the DESIGN.md (snake_case) form of a C# name (<c>attnMask</c> →
    /// <c>attn_mask</c>, <c>AlibiSlopes</c> → <c>alibi_slopes</c>). ParamName stays the C# name.</summary>
    public static string D(string name)
    {
        int upper = 0;
        for (int i = 1; i < name.Length; i++) if (char.IsAsciiLetterUpper(name[i])) upper++;
        if (upper == 0 && !char.IsAsciiLetterUpper(name[0])) return name;
        return string.Create(name.Length + upper, name, static (dst, src) =>
        {
            int j = 0;
            for (int i = 0; i < src.Length; i++)
            {
                char c = src[i];
                if (char.IsAsciiLetterUpper(c)) { if (i > 0) dst[j++] = '_'; dst[j++] = char.ToLowerInvariant(c); }
                else dst[j++] = c;
            }
        });
    }

    public static void Length(long actual, long expected, string name, string what)
    {
        if (actual != expected) throw new ArgumentException($"{D(name)} has {actual} elements but {what} needs {expected}.", name);
    }

    public static void Rank(ReadOnlySpan<int> shape, int rank, string name, string layout)
    {
        if (shape.Length != rank) throw new ArgumentException($"{D(name)} must be {layout} (rank {rank}), got {Shape.Format(shape)}.",
            name);
    }

    /// <summary>The tensor's shape must equal <paramref name="expected"/> exactly (same rank, same dims): an output of the
    /// right element count but another shape ([8,2] for [2,8]) is rejected.</summary>
    public static void ShapeIs(ReadOnlySpan<int> actual, ReadOnlySpan<int> expected, string name, string layout)
    {
        if (!actual.SequenceEqual(expected))
            throw new ArgumentException($"{D(name)} must be {layout} = {Shape.Format(expected)}, got {Shape.Format(actual)}.", name);
    }

    public static void DTypeIs(DType actual, string name, string allowed, bool ok)
    {
        if (!ok) throw new ArgumentException($"{D(name)} has dtype {actual.Name()}; expected {allowed}.", name);
    }

    public static void FloatInput<T>(string name)
    {
        if (!Kernels.Elements.IsFloatInput<T>())
            throw new ArgumentException($"{D(name)} element type {typeof(T).Name} is not float, Half or BFloat16.", name);
    }

    public static void Mask<T>(string name)
    {
        if (!Kernels.Elements.IsMask<T>())
            throw new ArgumentException($"{D(name)} element type {typeof(T).Name} is not long, int, byte or bool.", name);
    }

    public static void SameDevice(Device device, string name, DeviceTensor? t)
    {
        if (t is not null && !ReferenceEquals(t.Device, device))
            throw new ArgumentException($"{D(name)} lives on {t.Device.Id}, not on {device.Id}.", name);
    }

    public static void NonNegative(int value, string name)
    {
        if (value < 0) throw new ArgumentException($"{D(name)} must be >= 0, got {value}.", name);
    }

    /// <summary>The dense, row-major elements of a tensor span, with its lengths.</summary>
    public static ReadOnlySpan<T> Dense<T>(ReadOnlyTensorSpan<T> t, string name, out int[] shape)
    {
        shape = new int[t.Rank];
        for (int i = 0; i < t.Rank; i++) shape[i] = checked((int)t.Lengths[i]);
        if (!t.IsDense) throw new ArgumentException($"{D(name)} {Shape.Format(shape)} must be dense and row-major.", name);
        return MemoryMarshal.CreateReadOnlySpan(ref Unsafe.AsRef(in t.GetPinnableReference()), checked((int)t.FlattenedLength));
    }

    /// <summary>The dense elements of a writable tensor span.</summary>
    public static Span<T> Dense<T>(TensorSpan<T> t, string name, out int[] shape)
    {
        var ro = Dense((ReadOnlyTensorSpan<T>)t, name, out shape);
        return MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(ro), ro.Length);
    }
}
