using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>pool2d</c>, <c>adaptive_pool2d</c> and <c>spp</c>, ILGPU: one thread per output element, neighbouring threads
/// on neighbouring output columns (their windows overlap, so reads hit cache). Replicate/reflect padding is an index
/// map, not a padded copy.
/// </summary>
internal static class Pool2dIlgpu
{
    /// <summary>Window kernel; <paramref name="i"/> runs over B·C·OutH·OutW.</summary>
    [GpuKernel]
    public static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> output, Pool2dParams q)
    {
        int ow = i % q.OutW, rest = i / q.OutW, oh = rest % q.OutH;
        long plane = rest / q.OutH;
        if (plane >= (long)q.Batch * q.Channels) return;
        int hs = oh * q.SH - q.ImpH, ws = ow * q.SW - q.ImpW;
        float r = 0;
        if (q.Mode == (int)Pool2dMode.Max || q.Mode == (int)Pool2dMode.Min)
        {
            bool any = false, isMax = q.Mode == (int)Pool2dMode.Max;
            for (int a = 0; a < q.KH; a++)
            {
                int h = hs + a * q.DH;
                if (h < 0 || h >= q.DataH) continue;
                long row = (plane * q.H + PadIndex.Map(h, q.PH, q.H, q.PadMode)) * q.W;
                for (int c = 0; c < q.KW; c++)
                {
                    int w = ws + c * q.DW;
                    if (w < 0 || w >= q.DataW) continue;
                    float v = x[row + PadIndex.Map(w, q.PW, q.W, q.PadMode)];
                    r = !any ? v : isMax ? Numerics.MaxNaN(r, v) : Numerics.MinNaN(r, v);
                    any = true;
                }
            }
        }
        else
        {
            int he = XMath.Min(hs + q.KH, q.DataH + q.ImpH), we = XMath.Min(ws + q.KW, q.DataW + q.ImpW);
            int poolSize = (he - hs) * (we - ws);
            int h0 = XMath.Max(hs, 0), w0 = XMath.Max(ws, 0);
            he = XMath.Min(he, q.DataH); we = XMath.Min(we, q.DataW);
            if (h0 < he && w0 < we)
            {
                float s = 0;
                bool lp = q.Mode == (int)Pool2dMode.Lp;
                for (int h = h0; h < he; h++)
                {
                    long row = (plane * q.H + PadIndex.Map(h, q.PH, q.H, q.PadMode)) * q.W;
                    for (int w = w0; w < we; w++)
                    {
                        float v = x[row + PadIndex.Map(w, q.PW, q.W, q.PadMode)];
                        s += !lp ? v : q.P == 2f ? v * v : XMath.Pow(v, q.P);
                    }
                }
                r = lp ? XMath.Pow(s, 1f / q.P) : s / (q.CountIncludePad != 0 ? poolSize : (he - h0) * (we - w0));
            }
        }
        output[i] = r;
    }

    /// <summary>Adaptive kernel; <paramref name="i"/> runs over B·C·OutH·OutW.</summary>
    [GpuKernel]
    public static void AdaptiveKernel(Index1D i, ArrayView<float> x, ArrayView<float> output, AdaptivePoolParams q)
    {
        int j = i % q.OutW, rest = i / q.OutW, oi = rest % q.OutH;
        rest /= q.OutH;
        int c = rest % q.Channels, b = rest / q.Channels;
        if (b >= q.Batch) return;
        int h0 = (int)((long)oi * q.H / q.OutH), h1 = (int)(((long)(oi + 1) * q.H + q.OutH - 1) / q.OutH);
        int w0 = (int)((long)j * q.W / q.OutW), w1 = (int)(((long)(j + 1) * q.W + q.OutW - 1) / q.OutW);
        float s = 0, mx = float.NegativeInfinity;
        long plane = ((long)b * q.Channels + c) * q.H;
        for (int h = h0; h < h1; h++)
            for (int w = w0; w < w1; w++)
            {
                float v = x[(plane + h) * q.W + w];
                s += v; mx = Numerics.MaxNaN(mx, v);
            }
        int n = (h1 - h0) * (w1 - w0);
        float r = n <= 0 ? 0 : q.Mode == (int)Pool2dMode.Max ? mx : s / n;
        output[(long)b * q.OutStride + q.OutOffset + ((long)c * q.OutH + oi) * q.OutW + j] = r;
    }

    /// <summary>Launches <see cref="Kernel"/>.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> output,
        Pool2dParams q)
    {
        long n = (long)q.Batch * q.Channels * q.OutH * q.OutW;
        if (n == 0) return;
        var k = KernelCache.Get(accelerator, Kernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, Pool2dParams>(Kernel));
        k(stream, checked((int)n), x, output, q);
    }

    /// <summary>Launches <see cref="AdaptiveKernel"/> for one level.</summary>
    public static void LaunchAdaptive(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> output,
        AdaptivePoolParams q)
    {
        long n = (long)q.Batch * q.Channels * q.OutH * q.OutW;
        if (n == 0) return;
        var k = KernelCache.Get(accelerator, AdaptiveKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, AdaptivePoolParams>(AdaptiveKernel));
        k(stream, checked((int)n), x, output, q);
    }
}
