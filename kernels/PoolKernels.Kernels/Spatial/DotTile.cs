using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// A 4×4 register tile of dot products: out[i·4 + j] = a_i · b_j for four rows a (stride <c>aStride</c>) and four rows b
/// (stride <c>bStride</c>) of length n. Each step loads 8 vectors and issues 16 FMAs into 16 accumulators, so the rows
/// are read once per tile instead of four times (the GEMM micro-kernel idea, for the mask_pool and similarity_topk
/// score blocks). Without Vector512 it falls back to TensorPrimitives.Dot.
/// </summary>
internal static unsafe class DotTile
{
    /// <summary>Computes the 16 dot products into <paramref name="output"/>. Callers with fewer than four rows repeat a
    /// row (and drop the extra results), so every score of an op comes from this same arithmetic.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot4x4(float* a0, float* a1, float* a2, float* a3, float* b0, float* b1, float* b2, float* b3, int n, float* output)
    {
        if (!Vector512.IsHardwareAccelerated || n < 16)
        {
            Fallback(a0, b0, b1, b2, b3, n, output); Fallback(a1, b0, b1, b2, b3, n, output + 4);
            Fallback(a2, b0, b1, b2, b3, n, output + 8); Fallback(a3, b0, b1, b2, b3, n, output + 12);
            return;
        }
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default,
            c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default,
            c33 = default;
        int k = 0;
        for (; k + 16 <= n; k += 16)
        {
            var x0 = Vector512.Load(b0 + k); var x1 = Vector512.Load(b1 + k); var x2 = Vector512.Load(b2 + k); var x3 = Vector512.Load(b3
                + k);
            var y = Vector512.Load(a0 + k);
            c00 = Vector512.FusedMultiplyAdd(y, x0, c00); c01 = Vector512.FusedMultiplyAdd(y, x1, c01); c02 = Vector512.FusedMultiplyAdd(y,
                x2, c02); c03 = Vector512.FusedMultiplyAdd(y, x3, c03);
            y = Vector512.Load(a1 + k);
            c10 = Vector512.FusedMultiplyAdd(y, x0, c10); c11 = Vector512.FusedMultiplyAdd(y, x1, c11); c12 = Vector512.FusedMultiplyAdd(y,
                x2, c12); c13 = Vector512.FusedMultiplyAdd(y, x3, c13);
            y = Vector512.Load(a2 + k);
            c20 = Vector512.FusedMultiplyAdd(y, x0, c20); c21 = Vector512.FusedMultiplyAdd(y, x1, c21); c22 = Vector512.FusedMultiplyAdd(y,
                x2, c22); c23 = Vector512.FusedMultiplyAdd(y, x3, c23);
            y = Vector512.Load(a3 + k);
            c30 = Vector512.FusedMultiplyAdd(y, x0, c30); c31 = Vector512.FusedMultiplyAdd(y, x1, c31); c32 = Vector512.FusedMultiplyAdd(y,
                x2, c32); c33 = Vector512.FusedMultiplyAdd(y, x3, c33);
        }
        output[0] = Vector512.Sum(c00); output[1] = Vector512.Sum(c01); output[2] = Vector512.Sum(c02); output[3] = Vector512.Sum(c03);
        output[4] = Vector512.Sum(c10); output[5] = Vector512.Sum(c11); output[6] = Vector512.Sum(c12); output[7] = Vector512.Sum(c13);
        output[8] = Vector512.Sum(c20); output[9] = Vector512.Sum(c21); output[10] = Vector512.Sum(c22); output[11] = Vector512.Sum(c23);
        output[12] = Vector512.Sum(c30); output[13] = Vector512.Sum(c31); output[14] = Vector512.Sum(c32); output[15] = Vector512.Sum(c33);
        for (; k < n; k++)
        {
            // the tail after the vector part (n not a multiple of 16)
            float y0 = a0[k], y1 = a1[k], y2 = a2[k], y3 = a3[k], x0 = b0[k], x1 = b1[k], x2 = b2[k], x3 = b3[k];
            output[0] += y0 * x0; output[1] += y0 * x1; output[2] += y0 * x2; output[3] += y0 * x3;
            output[4] += y1 * x0; output[5] += y1 * x1; output[6] += y1 * x2; output[7] += y1 * x3;
            output[8] += y2 * x0; output[9] += y2 * x1; output[10] += y2 * x2; output[11] += y2 * x3;
            output[12] += y3 * x0; output[13] += y3 * x1; output[14] += y3 * x2; output[15] += y3 * x3;
        }
    }

    private static void Fallback(float* a, float* b0, float* b1, float* b2, float* b3, int n, float* output)
    {
        var x = new ReadOnlySpan<float>(a, n);
        output[0] = TensorPrimitives.Dot(x, new ReadOnlySpan<float>(b0, n)); output[1] = TensorPrimitives.Dot(x, new ReadOnlySpan<float>(b1,
            n));
        output[2] = TensorPrimitives.Dot(x, new ReadOnlySpan<float>(b2, n)); output[3] = TensorPrimitives.Dot(x, new ReadOnlySpan<float>(b3,
            n));
    }
}
