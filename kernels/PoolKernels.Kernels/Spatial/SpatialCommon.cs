using System.Runtime.CompilerServices;
using ILGPU;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// Mask access shared by the spatial kernels. A mask element is I64, I32, U8 or BOOL; it keeps its cell when any
/// of its bytes is nonzero, which is the same as "value != 0" for every one of those types. Reading masks as raw
/// bytes with their element size lets one kernel serve every mask dtype (no generic instantiation per type).
/// </summary>
internal static class MaskBytes
{
    /// <summary>True when element <paramref name="i"/> of a mask of <paramref name="size"/>-byte elements is nonzero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Keep(ReadOnlySpan<byte> mask, int size, long i)
    {
        int o = (int)(i * size);
        for (int k = 0; k < size; k++) if (mask[o + k] != 0) return true;
        return false;
    }

    /// <summary>Pointer form of <see cref="Keep(ReadOnlySpan{byte}, int, long)"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe bool Keep(byte* mask, int size, long i)
    {
        byte* p = mask + i * size;
        for (int k = 0; k < size; k++) if (p[k] != 0) return true;
        return false;
    }

    /// <summary>Kernel form: element <paramref name="i"/> of a byte view holding <paramref name="size"/>-byte mask elements.</summary>
    public static bool Keep(ArrayView<byte> mask, int size, long i)
    {
        long o = i * size;
        for (int k = 0; k < size; k++) if (mask[o + k] != 0) return true;
        return false;
    }
}

/// <summary>Maps a coordinate of a replicate- or reflect-padded axis back to the input (no padded copy is made).</summary>
internal static class PadIndex
{
    /// <summary>Padding mode codes shared by the kernels.</summary>
    public const int Zeros = 0, Replicate = 1, Reflect = 2;

    /// <summary>Input index of padded coordinate <paramref name="i"/> (0-based in the padded axis) with
    /// <paramref name="pad"/> cells before an axis of length <paramref name="n"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Map(int i, int pad, int n, int mode)
    {
        int j = i - pad;
        if (mode == Replicate) return j < 0 ? 0 : j >= n ? n - 1 : j;
        if (mode == Reflect)
        {
            if (j < 0) j = -j;
            if (j >= n) j = 2 * (n - 1) - j;
            return j;
        }
        return i;
    }
}
