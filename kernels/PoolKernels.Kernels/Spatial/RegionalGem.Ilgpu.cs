using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Spatial;

/// <summary><c>regional_gem</c>, ILGPU: one thread per output cell reads its k×k reflect-mapped window directly
/// (no padded intermediate); neighbouring threads share most of their window through the cache.</summary>
internal static class RegionalGemIlgpu
{
    /// <summary>The kernel; <paramref name="i"/> runs over B·C·H·W.</summary>
    [GpuKernel]
    public static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> output, int height, int width, float p, int kernel)
    {
        int w = i % width, rest = i / width, h = rest % height;
        long plane = rest / height;
        int pad = kernel / 2;
        float s = 0;
        for (int a = 0; a < kernel; a++)
        {
            long row = (plane * height + PadIndex.Map(h + a, pad, height, PadIndex.Reflect)) * width;
            for (int b = 0; b < kernel; b++)
                s += XMath.Pow(Numerics.MaxNaN(x[row + PadIndex.Map(w + b, pad, width, PadIndex.Reflect)], 0f), p);
        }
        float xc = Numerics.MaxNaN(x[i], 0f);
        output[i] = 0.5f * XMath.Pow(s / (kernel * kernel), 1f / p) + 0.5f * xc;
    }

    /// <summary>Launches the kernel over <paramref name="count"/> = B·C·H·W cells.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> output, int count,
        int height, int width, float p, int kernel)
    {
        if (count == 0) return;
        var k = KernelCache.Get(accelerator, Kernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, float, int>(Kernel));
        k(stream, count, x, output, height, width, p, kernel);
    }
}
