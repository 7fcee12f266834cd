using System.Runtime.CompilerServices;
using ILGPU;

namespace PoolKernels;

/// <summary>Bit-level helpers that compile both in managed code and inside ILGPU kernels.</summary>
internal static class Numerics
{
    /// <summary>bfloat16 bits to float: the bits are the float's upper half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Bf16BitsToFloat(ushort bits) => Interop.IntAsFloat((uint)bits << 16);

    /// <summary>float to bfloat16 bits, round to nearest even; NaN maps to a quiet NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FloatToBf16Bits(float value)
    {
        uint u = Interop.FloatAsInt(value);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((u >> 16) | 0x40);
        uint rounding = 0x7FFFu + ((u >> 16) & 1u);
        return (ushort)((u + rounding) >> 16);
    }

    /// <summary>IEEE binary16 bits to float (exact, handles subnormals, inf and NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfBitsToFloat(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        uint exp = (uint)(h >> 10) & 0x1F;
        uint man = (uint)h & 0x3FF;
        if (exp == 0x1F) return Interop.IntAsFloat(sign | 0x7F800000u | (man << 13));
        if (exp == 0)
        {
            // subnormal: man * 2^-24, exact in float
            float f = man * 5.9604644775390625e-8f;
            return sign != 0 ? -f : f;
        }
        return Interop.IntAsFloat(sign | ((exp + 112) << 23) | (man << 13));
    }

    /// <summary>Maximum that propagates NaN (as PyTorch's max and <see cref="Math.Max(float,float)"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxNaN(float a, float b) => a > b || float.IsNaN(a) ? a : b;

    /// <summary>Minimum that propagates NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MinNaN(float a, float b) => a < b || float.IsNaN(a) ? a : b;
}
