using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PoolKernels.Kernels.Retrieval;

/// <summary>
/// The element types a retrieval corpus (<c>db</c>) may be stored in: F32, F16, BF16, I8, U8, each taken as the number it
/// holds (an int8-quantized corpus scores as its integers) and widened to float32 exactly.
/// </summary>
internal static unsafe class DbElements
{
    /// <summary>Kind codes.</summary>
    public const int F32 = 0, F16 = 1, BF16 = 2, I8 = 3, U8 = 4;

    /// <summary>Bytes per element of a kind.</summary>
    public static int Size(int kind) => kind switch { F32 => 4, F16 or BF16 => 2, _ => 1 };

    /// <summary>Element i of a raw buffer of the given kind, as float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Get(byte* raw, int kind, long i) => kind switch
    {
        F32 => ((float*)raw)[i],
        F16 => (float)BitConverter.UInt16BitsToHalf(((ushort*)raw)[i]),
        BF16 => BitConverter.Int32BitsToSingle(((ushort*)raw)[i] << 16),
        I8 => ((sbyte*)raw)[i],
        _ => raw[i],
    };

    /// <summary>Widens elements [start, start + count) into dst (16 at a time on AVX-512; every value is exact in float).</summary>
    public static void Widen(byte* raw, int kind, long start, int count, float* dst)
    {
        int j = 0;
        if (Avx512F.IsSupported)
            switch (kind)
            {
                case I8:
                    for (; j + 16 <= count; j += 16)
                        Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)raw + start + j))).Store(dst
                            + j);
                    break;
                case U8:
                    for (; j + 16 <= count; j += 16)
                        Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(raw + start + j))).Store(dst + j);
                    break;
                case BF16:
                    for (; j + 16 <= count; j += 16)
                        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)raw + start + j)), 16).AsSingle()
                            .Store(dst + j);
                    break;
                case F16:
                    System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((Half*)raw + start, count),
                        new Span<float>(dst, count));
                    return;
            }
        for (; j < count; j++) dst[j] = Get(raw, kind, start + j);
    }
}
