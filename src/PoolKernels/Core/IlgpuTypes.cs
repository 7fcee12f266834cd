using System.Collections.Concurrent;
using System.Reflection;
using PoolKernels.Kernels;

namespace PoolKernels;

/// <summary>Maps dtypes to the storage type and reader struct that ILGPU kernels are specialized on,
/// and caches the closed launch delegates (one reflection lookup per type combination).</summary>
internal static class IlgpuTypes
{
    private static readonly ConcurrentDictionary<(MethodInfo, Type, string), Delegate> Cache = new();

    public static (Type Raw, Type Reader) Element(DType t) => t switch
    {
        DType.F32 => (typeof(float), typeof(F32Reader)),
        DType.F16 => (typeof(ushort), typeof(F16Reader)),
        DType.BF16 => (typeof(ushort), typeof(Bf16Reader)),
        _ => throw new ArgumentException($"{t.Name()} is not a float input type."),
    };

    public static (Type Raw, Type Reader) Mask(DType t) => t switch
    {
        DType.I64 => (typeof(long), typeof(I64Mask)),
        DType.I32 => (typeof(int), typeof(I32Mask)),
        DType.U8 or DType.Bool => (typeof(byte), typeof(U8Mask)),
        _ => throw new ArgumentException($"{t.Name()} is not a mask type."),
    };

    public static (Type Raw, Type Reader) Index(DType t) => t switch
    {
        DType.I64 => (typeof(long), typeof(I64Index)),
        DType.I32 => (typeof(int), typeof(I32Index)),
        _ => throw new ArgumentException($"{t.Name()} is not an index type."),
    };

    /// <summary>The generic method <paramref name="definition"/> closed over <paramref name="pairs"/>' types, as a delegate.</summary>
    public static TDelegate Get<TDelegate>(MethodInfo definition, params (Type Raw, Type Reader)[] pairs) where TDelegate : Delegate
    {
        var args = pairs.SelectMany(p => new[] { p.Raw, p.Reader }).ToArray();
        var key = (definition, typeof(TDelegate), string.Join(",", args.Select(a => a.FullName)));
        return (TDelegate)Cache.GetOrAdd(key, _ => definition.MakeGenericMethod(args).CreateDelegate(typeof(TDelegate)));
    }
}
