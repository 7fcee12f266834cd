using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Training;

/// <summary><c>adamw_step</c>, ILGPU: one thread per element, the float rules of <see cref="AdamWSimd"/>; in place.</summary>
internal static class AdamWIlgpu
{
    /// <summary>The kernel.</summary>
    [GpuKernel]
    public static void Kernel(Index1D i, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v,
        AdamWParams p)
    {
        float g = grad[i], mi = p.Beta1 * m[i] + (1f - p.Beta1) * g, vi = p.Beta2 * v[i] + (1f - p.Beta2) * g * g;
        param[i] = param[i] * (1f - p.Lr * p.WeightDecay) - p.Lr / p.Bc1 * mi / (XMath.Sqrt(vi) * (1f / p.Bc2Sqrt) + p.Eps);
        m[i] = mi; v[i] = vi;
    }

    /// <summary>Launches <see cref="Kernel"/> on <paramref name="stream"/> for the first <paramref name="count"/> elements.</summary>
    public static void Launch(Accelerator acc, AcceleratorStream stream, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> m,
        ArrayView<float> v, AdamWParams p, int count)
    {
        if (count == 0) return;
        var kernel = KernelCache.Get(acc, Kernel,
            x => x.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                AdamWParams>(Kernel));
        kernel(stream, count, param, grad, m, v, p);
    }
}
