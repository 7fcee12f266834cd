using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Signal;

/// <summary><c>pool1d</c>, ILGPU: one thread per (row, output), neighbouring threads on neighbouring windows.</summary>
internal static class Pool1dIlgpu
{
    /// <summary>The kernel; <paramref name="i"/> runs over Rows·NOut.</summary>
    [GpuKernel]
    public static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> output, Pool1dParams p, int outStride)
    {
        int row = i / p.NOut, o = i % p.NOut;
        if (row >= p.Rows) return;
        long t0 = (p.O0 + o) * p.Stride - p.Padding;
        long a = t0 < 0 ? 0 : t0, b = t0 + p.Kernel < p.ValidEnd ? t0 + p.Kernel : p.ValidEnd;
        bool max = p.Mode == (int)Pool1dMode.Max;
        float acc = max ? float.NegativeInfinity : 0f;
        long rowBase = (long)row * p.BufLen - p.BufStart;
        for (long t = a; t < b; t++)
        {
            float v = x[rowBase + t];
            acc = max ? Numerics.MaxNaN(acc, v) : acc + v;
        }
        output[(long)row * outStride + o] = b <= a ? 0f : max ? acc : acc / p.Kernel;
    }

    /// <summary>Launches the kernel on <paramref name="stream"/>.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> output,
        Pool1dParams p, int outStride)
    {
        if (p.Rows == 0 || p.NOut == 0) return;
        var k = KernelCache.Get(accelerator, Kernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, Pool1dParams, int>(Kernel));
        k(stream, (int)((long)p.Rows * p.NOut), x, output, p, outStride);
    }
}
