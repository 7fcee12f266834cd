using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>Scalar parameters of the MFB/MFH kernel.</summary>
internal struct MfbParams
{
    /// <summary>Shape: batch, input widths, pooled outputs o, factor k, blocks (1 MFB, 2 MFH).</summary>
    public int Batch, Dx, Dy, O, K, Blocks;
    /// <summary><see cref="MfbActivation"/> as int; 1 for the signed square root.</summary>
    public int Act, SignedSqrt;
}

/// <summary>
/// <c>mfb_pool</c> / <c>mfh_pool</c>, ILGPU: one thread per (b, j) pooled output computes its k factors' projections
/// (dot products over Dx and Dy) for both blocks, so e1 never leaves registers; the signed square root is applied in
/// place and each block's L2 normalization by the shared row kernel.
/// </summary>
internal static class MfbIlgpu
{
    private static float Act(float v, int a) =>
        a == (int)MfbActivation.Relu ? (v > 0 ? v : 0) : a == (int)MfbActivation.Tanh ? XMath.Tanh(v) : a == (int)MfbActivation.LeakyRelu
            ? (v < 0 ? 0.01f * v : v) : v;

    private static float Project(ArrayView<float> v, long vBase, ArrayView<float> w, ArrayView<float> bias, long r, int width)
    {
        float acc = bias[r];
        for (int i = 0; i < width; i++) acc += v[vBase + i] * w[r * width + i];
        return acc;
    }

    /// <summary>The kernel; <paramref name="i"/> runs over B·O. Block-2 views are ignored when Blocks = 1.</summary>
    [GpuKernel]
    public static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> wx1, ArrayView<float> bx1,
        ArrayView<float> wy1,
        ArrayView<float> by1, ArrayView<float> wx2, ArrayView<float> bx2, ArrayView<float> wy2, ArrayView<float> by2,
            ArrayView<float> output, MfbParams p)
    {
        int b = i / p.O, j = i % p.O;
        if (b >= p.Batch) return;
        float s1 = 0, s2 = 0;
        for (int t = 0; t < p.K; t++)
        {
            long r = (long)j * p.K + t;
            float e1 = Act(Project(x, (long)b * p.Dx, wx1, bx1, r, p.Dx), p.Act) * Act(Project(y, (long)b * p.Dy, wy1, by1, r, p.Dy),
                p.Act);
            s1 += e1;
            if (p.Blocks == 2)
                s2 += Act(Project(x, (long)b * p.Dx, wx2, bx2, r, p.Dx), p.Act) * Act(Project(y, (long)b * p.Dy, wy2, by2, r, p.Dy),
                    p.Act) * e1;
        }
        if (p.SignedSqrt != 0)
        {
            s1 = s1 < 0 ? -XMath.Sqrt(-s1) : XMath.Sqrt(s1);
            s2 = s2 < 0 ? -XMath.Sqrt(-s2) : XMath.Sqrt(s2);
        }
        long o = (long)b * p.Blocks * p.O + j;
        output[o] = s1;
        if (p.Blocks == 2) output[o + p.O] = s2;
    }

    /// <summary>Launches the kernel and, when asked, the per-block normalization.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> y,
        ArrayView<float> wx1, ArrayView<float> bx1,
        ArrayView<float> wy1, ArrayView<float> by1, ArrayView<float> wx2, ArrayView<float> bx2, ArrayView<float> wy2, ArrayView<float> by2,
        ArrayView<float> output, MfbParams p, bool normalize)
    {
        if (p.Batch == 0 || p.O == 0) return;
        var k = KernelCache.Get(accelerator, Kernel, a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>,
            ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, MfbParams>(Kernel));
        k(stream, p.Batch * p.O, x, y, wx1, bx1, wy1, by1, wx2, bx2, wy2, by2, output, p);
        if (!normalize) return;
        for (int bl = 0; bl < p.Blocks; bl++)
            Sequence.SequencePoolIlgpu.NormalizeRows(accelerator, stream, output.SubView((long)bl * p.O), p.Batch, p.O, p.Blocks * p.O);
    }
}
