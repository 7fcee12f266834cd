using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels;

/// <summary>
/// Element access for the managed kernels. The input element type is one of <see cref="float"/>,
/// <see cref="Half"/> or <see cref="BFloat16"/>; masks are <see cref="long"/>, <see cref="int"/>,
/// <see cref="byte"/> or <see cref="bool"/> (nonzero = keep); indices are <see cref="long"/> or
/// <see cref="int"/>. All type tests are JIT-time constants, so each instantiation is branch-free.
/// </summary>
internal static class Elements
{
    /// <summary>True when <typeparamref name="T"/> is a supported floating input type.</summary>
    public static bool IsFloatInput<T>() => typeof(T) == typeof(float) || typeof(T) == typeof(Half) || typeof(T) == typeof(BFloat16);

    /// <summary>True when <typeparamref name="T"/> is a supported mask type.</summary>
    public static bool IsMask<T>() => typeof(T) == typeof(long) || typeof(T) == typeof(int) || typeof(T) == typeof(byte)
        || typeof(T) == typeof(bool);

    /// <summary>True when <typeparamref name="T"/> is a supported index/offset type.</summary>
    public static bool IsIndex<T>() => typeof(T) == typeof(long) || typeof(T) == typeof(int);

    /// <summary>Widens one input element to float (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat<T>(T v)
    {
        if (typeof(T) == typeof(float)) return Unsafe.As<T, float>(ref v);
        if (typeof(T) == typeof(Half)) return (float)Unsafe.As<T, Half>(ref v);
        if (typeof(T) == typeof(BFloat16)) return Unsafe.As<T, BFloat16>(ref v).ToSingle();
        throw new NotSupportedException(typeof(T).Name);
    }

    /// <summary>Mask test: nonzero keeps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Keep<TMask>(TMask v)
    {
        if (typeof(TMask) == typeof(long)) return Unsafe.As<TMask, long>(ref v) != 0;
        if (typeof(TMask) == typeof(int)) return Unsafe.As<TMask, int>(ref v) != 0;
        if (typeof(TMask) == typeof(byte)) return Unsafe.As<TMask, byte>(ref v) != 0;
        if (typeof(TMask) == typeof(bool)) return Unsafe.As<TMask, byte>(ref v) != 0;
        throw new NotSupportedException(typeof(TMask).Name);
    }

    /// <summary>Widens an index element to long.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ToInt64<TIdx>(TIdx v)
    {
        if (typeof(TIdx) == typeof(long)) return Unsafe.As<TIdx, long>(ref v);
        if (typeof(TIdx) == typeof(int)) return Unsafe.As<TIdx, int>(ref v);
        throw new NotSupportedException(typeof(TIdx).Name);
    }

    /// <summary>
    /// Returns <paramref name="src"/> as floats: the span itself for F32 (no copy), otherwise the
    /// widened values written into <paramref name="scratch"/> (vectorized).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ReadOnlySpan<float> AsFloats<T>(ReadOnlySpan<T> src, Span<float> scratch) where T : struct
    {
        if (typeof(T) == typeof(float)) return MemoryMarshal.Cast<T, float>(src);
        var dst = scratch[..src.Length];
        if (typeof(T) == typeof(Half)) { TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<T, Half>(src), dst); return dst; }
        if (typeof(T) == typeof(BFloat16)) { Bf16ToFloat(MemoryMarshal.Cast<T, ushort>(src), dst); return dst; }
        throw new NotSupportedException(typeof(T).Name);
    }

    /// <summary>bfloat16 bits to float: zero-extend to 32 bits and shift into the upper half.</summary>
    public static void Bf16ToFloat(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        int i = 0;
        var d = MemoryMarshal.Cast<float, uint>(dst);
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 32 <= src.Length; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Create(src.Slice(i, 32)));
                Vector512.ShiftLeft(lo, 16).CopyTo(d.Slice(i));
                Vector512.ShiftLeft(hi, 16).CopyTo(d.Slice(i + 16));
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= src.Length; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Create(src.Slice(i, 16)));
                Vector256.ShiftLeft(lo, 16).CopyTo(d.Slice(i));
                Vector256.ShiftLeft(hi, 16).CopyTo(d.Slice(i + 8));
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i + 8 <= src.Length; i += 8)
            {
                var (lo, hi) = Vector128.Widen(Vector128.Create(src.Slice(i, 8)));
                Vector128.ShiftLeft(lo, 16).CopyTo(d.Slice(i));
                Vector128.ShiftLeft(hi, 16).CopyTo(d.Slice(i + 4));
            }
        }
        for (; i < src.Length; i++) d[i] = (uint)src[i] << 16;
    }
}
