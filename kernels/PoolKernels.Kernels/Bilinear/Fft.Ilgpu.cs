using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>Parameters of one Stockham stage.</summary>
internal struct FftStageParams
{
    /// <summary>Length, radix, product of the earlier radices, rows.</summary>
    public int N, Radix, Ns, Rows;
}

/// <summary>An <see cref="FftPlan"/>'s tables on one accelerator (cached per accelerator and length).</summary>
internal sealed class FftDevicePlan
{
    /// <summary>The host plan.</summary>
    public FftPlan Plan { get; }
    internal readonly MemoryBuffer1D<float, Stride1D.Dense> TwRe, TwIm;
    internal readonly MemoryBuffer1D<float, Stride1D.Dense>? ChirpRe, ChirpIm, KernelRe, KernelIm;
    internal readonly FftDevicePlan? Inner;

    private FftDevicePlan(Accelerator a, FftPlan plan)
    {
        Plan = plan;
        TwRe = a.Allocate1D(plan.TwiddleRe); TwIm = a.Allocate1D(plan.TwiddleIm);
        if (plan.Inner is null) return;
        Inner = Get(a, plan.Inner.Length);
        ChirpRe = a.Allocate1D(plan.ChirpRe!); ChirpIm = a.Allocate1D(plan.ChirpIm!);
        KernelRe = a.Allocate1D(plan.KernelRe!); KernelIm = a.Allocate1D(plan.KernelIm!);
    }

    /// <summary>The plan of length <paramref name="n"/> on <paramref name="accelerator"/>.</summary>
    public static FftDevicePlan Get(Accelerator accelerator, int n) =>
        KernelCache.State(accelerator, n, a => new FftDevicePlan(a, FftPlan.Get(n)));
}

/// <summary>
/// The shared FFT on ILGPU: one launch per Stockham stage, one thread per (row, butterfly), batched over rows
/// ([rows, n] split re/im buffers). A butterfly computes its R outputs as direct sums whose twiddle and DFT root are
/// one power of w = exp(-2πi/n): output q of butterfly j takes Σ_r x_{j + r·n/R}·w^{(j mod Ns)·r·n/(Ns·R) + (qr mod R)·n/R}.
/// Lengths with a prime factor above 61 use Bluestein with the same stages at the power-of-two length. The kernel
/// boundaries order the stages, so no device-wide barrier is needed.
/// </summary>
internal static class FftIlgpu
{
    /// <summary>One stage; <paramref name="i"/> runs over Rows·N/Radix.</summary>
    [GpuKernel]
    public static void StageKernel(Index1D i, ArrayView<float> sr, ArrayView<float> si, ArrayView<float> dr, ArrayView<float> di,
        ArrayView<float> twr, ArrayView<float> twi, FftStageParams p)
    {
        int m = p.N / p.Radix;
        int row = i / m, j = i % m;
        if (row >= p.Rows) return;
        int jj = j % p.Ns, blk = j / p.Ns, tstep = p.N / (p.Ns * p.Radix);
        long bs = (long)row * p.N;
        long od = bs + (long)blk * p.Ns * p.Radix + jj;
        for (int q = 0; q < p.Radix; q++)
        {
            float accR = 0, accI = 0;
            for (int r = 0; r < p.Radix; r++)
            {
                float xr = sr[bs + j + r * m], xi = si[bs + j + r * m];
                int e = (int)(((long)jj * r * tstep + (long)(q * r % p.Radix) * m) % p.N);
                float cr = twr[e], ci = twi[e];
                accR += xr * cr - xi * ci; accI += xr * ci + xi * cr;
            }
            dr[od + (long)q * p.Ns] = accR; di[od + (long)q * p.Ns] = accI;
        }
    }

    /// <summary>Bluestein in: a[t] = x[t]·chirp[t] for t &lt; n, 0 up to m; <paramref name="i"/> over rows·m.</summary>
    [GpuKernel]
    public static void ChirpInKernel(Index1D i, ArrayView<float> xr, ArrayView<float> xi, ArrayView<float> ar, ArrayView<float> ai,
        ArrayView<float> cr, ArrayView<float> ci, int n, int m, int rows)
    {
        int row = i / m, t = i % m;
        if (row >= rows) return;
        float vr = 0, vi = 0;
        if (t < n)
        {
            float a = xr[(long)row * n + t], b = xi[(long)row * n + t];
            vr = a * cr[t] - b * ci[t]; vi = a * ci[t] + b * cr[t];
        }
        ar[i] = vr; ai[i] = vi;
    }

    /// <summary>Bluestein middle: a = conj(a·K) (the conjugation turns the next forward pass into an inverse).</summary>
    [GpuKernel]
    public static void KernelMulKernel(Index1D i, ArrayView<float> ar, ArrayView<float> ai, ArrayView<float> kr, ArrayView<float> ki, int m,
        int rows)
    {
        if (i >= (long)rows * m) return;
        int t = i % m;
        float a = ar[i], b = ai[i];
        ar[i] = a * kr[t] - b * ki[t]; ai[i] = -(a * ki[t] + b * kr[t]);
    }

    /// <summary>Bluestein out: x[t] = conj(a[t])/m · chirp[t] for t &lt; n; <paramref name="i"/> over rows·n.</summary>
    [GpuKernel]
    public static void ChirpOutKernel(Index1D i, ArrayView<float> ar, ArrayView<float> ai, ArrayView<float> xr, ArrayView<float> xi,
        ArrayView<float> cr, ArrayView<float> ci, int n, int m, int rows)
    {
        int row = i / n, t = i % n;
        if (row >= rows) return;
        float a = ar[(long)row * m + t] / m, b = -ai[(long)row * m + t] / m;
        xr[i] = a * cr[t] - b * ci[t]; xi[i] = a * ci[t] + b * cr[t];
    }

    /// <summary>Forward FFT of each of <paramref name="rows"/> rows of (re, im) in place; (sr, si) are scratch of the same
    /// size; <paramref name="big"/> is Bluestein scratch (4·rows·m floats, unused otherwise).</summary>
    public static void Forward(Accelerator a, AcceleratorStream stream, FftDevicePlan plan, ArrayView<float> re, ArrayView<float> im,
        ArrayView<float> sr, ArrayView<float> si, ArrayView<float> big, int rows)
    {
        int n = plan.Plan.Length;
        if (n == 1 || rows == 0) return;
        if (plan.Inner is { } inner)
        {
            int m = inner.Plan.Length;
            long sz = (long)rows * m;
            var ar = big.SubView(0, sz); var ai = big.SubView(sz, sz); var br = big.SubView(2 * sz, sz); var bi = big.SubView(3 * sz, sz);
            var cin = KernelCache.Get(a, ChirpInKernel, acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>,
                ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(ChirpInKernel));
            var mul = KernelCache.Get(a, KernelMulKernel, acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>,
                ArrayView<float>,
                ArrayView<float>, int, int>(KernelMulKernel));
            var cout = KernelCache.Get(a, ChirpOutKernel, acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>,
                ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(ChirpOutKernel));
            cin(stream, (int)sz, re, im, ar, ai, plan.ChirpRe!.View, plan.ChirpIm!.View, n, m, rows);
            Forward(a, stream, inner, ar, ai, br, bi, default, rows);
            mul(stream, (int)sz, ar, ai, plan.KernelRe!.View, plan.KernelIm!.View, m, rows);
            Forward(a, stream, inner, ar, ai, br, bi, default, rows);
            cout(stream, rows * n, ar, ai, re, im, plan.ChirpRe.View, plan.ChirpIm.View, n, m, rows);
            return;
        }
        var stage = KernelCache.Get(a, StageKernel, acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>,
            ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, FftStageParams>(StageKernel));
        ArrayView<float> xr = re, xi = im, yr = sr, yi = si;
        int ns = 1;
        foreach (int radix in plan.Plan.Radices)
        {
            stage(stream, rows * (n / radix), xr, xi, yr, yi, plan.TwRe.View, plan.TwIm.View, new FftStageParams
            {
                N = n,
                Radix = radix,
                Ns = ns,
                Rows = rows
            });
            ns *= radix;
            (xr, yr) = (yr, xr); (xi, yi) = (yi, xi);
        }
        if (plan.Plan.Radices.Length % 2 == 1) { xr.CopyTo(stream, re); xi.CopyTo(stream, im); }
    }
}
