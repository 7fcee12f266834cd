using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels;

/// <summary>The accelerator forms of <see cref="MachineLimits"/>: a grid-stride streaming read and a
/// register-resident FMA loop (8 independent chains per thread), to measure a device's bandwidth and F32 peak.</summary>
internal static class MachineLimitsIlgpu
{
    /// <summary>Each thread sums data[i], data[i + grid], ... and writes its partial sum.</summary>
    [GpuKernel]
    public static void StreamReadKernel(Index1D i, ArrayView<float> data, ArrayView<float> partial)
    {
        float s = 0;
        long stride = partial.Length;
        for (long j = i; j < data.Length; j += stride) s += data[j];
        partial[i] = s;
    }

    /// <summary>8 independent FMA chains of <paramref name="iterations"/> steps per thread.</summary>
    [GpuKernel]
    public static void FmaKernel(Index1D i, ArrayView<float> output, int iterations)
    {
        float a = 0.999f, b = 1e-3f;
        float c0 = i, c1 = c0 + 1, c2 = c0 + 2, c3 = c0 + 3, c4 = c0 + 4, c5 = c0 + 5, c6 = c0 + 6, c7 = c0 + 7;
        for (int k = 0; k < iterations; k++)
        {
            c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
            c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
        }
        output[i] = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7;
    }

    /// <summary>Launches the streaming read over <paramref name="data"/> with one partial per element of <paramref
    /// name="partial"/>.</summary>
    public static void StreamRead(Accelerator accelerator, ArrayView<float> data, ArrayView<float> partial)
    {
        var k = KernelCache.Get(accelerator, StreamReadKernel, a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>,
            ArrayView<float>>(StreamReadKernel));
        k(accelerator.DefaultStream, (int)partial.Length, data, partial);
    }

    /// <summary>Launches the FMA loop on <paramref name="output"/>.Length threads; returns the FLOPs it performs.</summary>
    public static double Fma(Accelerator accelerator, ArrayView<float> output, int iterations)
    {
        var k = KernelCache.Get(accelerator, FmaKernel, a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, int>(FmaKernel));
        k(accelerator.DefaultStream, (int)output.Length, output, iterations);
        return 2.0 * 8 * iterations * output.Length;
    }
}
