using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>Scalar parameters of the MCB kernels.</summary>
internal struct McbParams
{
    /// <summary>Batch, input widths, output width d, 1 for the signed square root.</summary>
    public int Batch, Dx, Dy, D, SignedSqrt;
}

/// <summary>
/// <c>compact_bilinear_pool</c>, ILGPU: (1) one thread per (row, bin) gathers its count-sketch bins (the host inverts
/// hx/hy into bin lists, so no atomics and a deterministic sum): re = sketch_x, im = sketch_y; (2) the shared batched
/// FFT (<see cref="FftIlgpu"/>); (3) one thread per (row, k) forms X_k·Y_k from Z_k and Z_{-k} and conjugates it;
/// (4) the FFT again (= inverse up to conjugation and 1/d); (5) scale, signed square root; then row normalization.
/// </summary>
internal static class CompactBilinearIlgpu
{
    /// <summary>Sketch gather; <paramref name="i"/> runs over B·d. binsX: offsets [d+1] then members [Dx] (ints).</summary>
    [GpuKernel]
    public static void SketchKernel(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<int> binsX, ArrayView<int> binsY,
        ArrayView<float> sx, ArrayView<float> sy, ArrayView<float> re, ArrayView<float> im, McbParams p)
    {
        int b = i / p.D, c = i % p.D;
        if (b >= p.Batch) return;
        float a = 0, e = 0;
        for (int k = binsX[c]; k < binsX[c + 1]; k++) { int f = binsX[p.D + 1 + k]; a += sx[f] * x[(long)b * p.Dx + f]; }
        for (int k = binsY[c]; k < binsY[c + 1]; k++) { int f = binsY[p.D + 1 + k]; e += sy[f] * y[(long)b * p.Dy + f]; }
        re[i] = a; im[i] = e;
    }

    /// <summary>q = conj(X_k·Y_k) from the joint spectrum z; <paramref name="i"/> runs over B·d.</summary>
    [GpuKernel]
    public static void ProductKernel(Index1D i, ArrayView<float> zr, ArrayView<float> zi, ArrayView<float> qr, ArrayView<float> qi,
        McbParams p)
    {
        int b = i / p.D, k = i % p.D;
        if (b >= p.Batch) return;
        long km = (long)b * p.D + (k == 0 ? 0 : p.D - k);
        float a = zr[i], bb = zi[i], c = zr[km], e = zi[km];
        float xr = 0.5f * (a + c), xi = 0.5f * (bb - e), yr = 0.5f * (bb + e), yi = 0.5f * (c - a);
        qr[i] = xr * yr - xi * yi; qi[i] = -(xr * yi + xi * yr);
    }

    /// <summary>out = Re(F)/d (the real circular convolution), then the signed square root; <paramref name="i"/> over B·d.</summary>
    [GpuKernel]
    public static void FinishKernel(Index1D i, ArrayView<float> fr, ArrayView<float> output, McbParams p)
    {
        if (i >= (long)p.Batch * p.D) return;
        float z = fr[i] / p.D;
        if (p.SignedSqrt != 0) z = z < 0 ? -XMath.Sqrt(-z) : XMath.Sqrt(z);
        output[i] = z;
    }

    /// <summary>The bin lists of a hash: offsets [d+1] then the feature ids sorted by bin (stable), as one int array.</summary>
    public static int[] Bins(ReadOnlySpan<long> h, int d)
    {
        var r = new int[d + 1 + h.Length];
        foreach (long v in h) r[v + 1]++;
        for (int c = 0; c < d; c++) r[c + 1] += r[c];
        var fill = new int[d];
        for (int f = 0; f < h.Length; f++) r[d + 1 + r[h[f]] + fill[h[f]]++] = f;
        return r;
    }

    /// <summary>Runs the whole pipeline on validated inputs (binsX/binsY from <see cref="Bins"/>, on the device).</summary>
    public static void Launch(Accelerator a, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> y, ArrayView<int> binsX,
        ArrayView<int> binsY,
        ArrayView<float> sx, ArrayView<float> sy, ArrayView<float> output, McbParams p, bool normalize, Func<long, ArrayView<float>> temp)
    {
        if (p.Batch == 0) return;
        var plan = FftDevicePlan.Get(a, p.D);
        long sz = (long)p.Batch * p.D;
        long big = plan.Inner is null ? 1 : 4L * p.Batch * plan.Inner.Plan.Length;
        var v = temp(4 * sz + big); // freed by the caller's scope once the stream is idle
        ArrayView<float> re = v.SubView(0, sz), im = v.SubView(sz, sz), r2 = v.SubView(2 * sz, sz), i2 = v.SubView(3 * sz, sz),
            bigView = v.SubView(4 * sz, big);
        var sketch = KernelCache.Get(a, SketchKernel, acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>,
            ArrayView<int>,
            ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, McbParams>(SketchKernel));
        var product = KernelCache.Get(a, ProductKernel, acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>,
            ArrayView<float>,
            ArrayView<float>, McbParams>(ProductKernel));
        var finish = KernelCache.Get(a, FinishKernel, acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>,
            McbParams>(FinishKernel));
        sketch(stream, (int)sz, x, y, binsX, binsY, sx, sy, re, im, p);
        FftIlgpu.Forward(a, stream, plan, re, im, r2, i2, bigView, p.Batch);
        product(stream, (int)sz, re, im, r2, i2, p);
        FftIlgpu.Forward(a, stream, plan, r2, i2, re, im, bigView, p.Batch);
        finish(stream, (int)sz, r2, output, p);
        if (normalize) Sequence.SequencePoolIlgpu.NormalizeRows(a, stream, output, p.Batch, p.D, p.D);
    }
}
