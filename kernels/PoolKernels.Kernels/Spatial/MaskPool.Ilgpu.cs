using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Spatial;

/// <summary>Scalar parameters of the <c>mask_pool</c> kernels.</summary>
internal struct MaskPoolParams
{
    /// <summary>Shapes.</summary>
    public int Batch, Channels, H, W, Queries, MH, MW;
    /// <summary>A <see cref="MaskType"/>.</summary>
    public int Type;
    /// <summary>Gate threshold and denominator eps.</summary>
    public float Threshold, Eps;
}

/// <summary>
/// <c>mask_pool</c>, ILGPU, two kernels. The first builds the weight planes [B,Q,H,W] with the bilinear resize
/// computed inside it (four taps per cell, no resized mask tensor). The second is one thread per (b,q,c), neighbouring
/// threads on neighbouring channels, accumulating Σ x·w and Σ w over the cells.
/// </summary>
internal static class MaskPoolIlgpu
{
    /// <summary>Weights; <paramref name="i"/> runs over B·Q·H·W.</summary>
    [GpuKernel]
    public static void WeightKernel(Index1D i, ArrayView<float> masks, ArrayView<float> weights, MaskPoolParams q)
    {
        int w = i % q.W, rest = i / q.W, h = rest % q.H;
        long bq = rest / q.H;
        long mBase = bq * q.MH * q.MW;
        float v;
        if (q.MH == q.H && q.MW == q.W) v = masks[mBase + (long)h * q.MW + w];
        else
        {
            Bilinear.Taps(h, q.MH, q.H, out int h0, out int h1, out float lh);
            Bilinear.Taps(w, q.MW, q.W, out int w0, out int w1, out float lw);
            v = (1 - lh) * ((1 - lw) * masks[mBase + h0 * q.MW + w0] + lw * masks[mBase + h0 * q.MW + w1])
                + lh * ((1 - lw) * masks[mBase + h1 * q.MW + w0] + lw * masks[mBase + h1 * q.MW + w1]);
        }
        weights[i] = Bilinear.Weight(v, q.Type, q.Threshold);
    }

    /// <summary>Pooling; <paramref name="i"/> runs over B·Q·C.</summary>
    [GpuKernel]
    public static void PoolKernel(Index1D i, ArrayView<float> x, ArrayView<float> weights, ArrayView<float> output, MaskPoolParams q)
    {
        int c = i % q.Channels;
        long bq = i / q.Channels;
        int b = (int)(bq / q.Queries);
        int hw = q.H * q.W;
        long xBase = ((long)b * q.Channels + c) * hw, wBase = bq * hw;
        float s = 0, ws = 0;
        for (int k = 0; k < hw; k++)
        {
            float wt = weights[wBase + k];
            s += x[xBase + k] * wt;
            ws += wt;
        }
        float denom = ws + q.Eps;
        output[i] = denom == 0 ? 0 : s / denom;
    }

    /// <summary>Enqueues both kernels; the weight planes live in a temporary from <paramref name="temp"/> (the caller's scope
    /// frees it after the stream is idle).</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> masks,
        ArrayView<float> output,
        MaskPoolParams q, Func<long, ArrayView<float>> temp)
    {
        long outCount = (long)q.Batch * q.Queries * q.Channels, wCount = (long)q.Batch * q.Queries * q.H * q.W;
        if (outCount == 0) return;
        var weights = temp(Math.Max(wCount, 1));
        if (wCount > 0)
        {
            var wk = KernelCache.Get(accelerator, WeightKernel,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, MaskPoolParams>(WeightKernel));
            wk(stream, checked((int)wCount), masks, weights, q);
        }
        var pk = KernelCache.Get(accelerator, PoolKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, MaskPoolParams>(PoolKernel));
        pk(stream, checked((int)outCount), x, weights, output, q);
    }
}
