using System.Collections.Concurrent;
using System.Numerics;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>
/// A complex FFT of any length n, O(n log n), shared by every backend (the ILGPU stage kernel reads the same
/// radices and twiddle table). Forward transform X_q = Σ_t x_t·exp(-2πi·tq/n), split real/imaginary arrays.
/// <para>Mixed-radix Stockham autosort (no bit reversal): n is factored into radices 4, 2, 3, 5, 7, ..., 61; stage
/// s with radix R and Ns = product of the earlier radices maps butterfly j (inputs j + r·n/R, twiddled by
/// w^{(j mod Ns)·r·n/(Ns·R)}) through an R-point DFT to outputs (j/Ns)·Ns·R + (j mod Ns) + q·Ns (Govindaraju et al.,
/// "High performance discrete Fourier transforms on graphics processors", 2008). Stages with Ns ≥ the vector
/// width run with <see cref="Vector{T}"/> over j mod Ns, with per-stage contiguous twiddles; radix 2 and 4 have
/// their own butterflies, other radices a direct R-point DFT.</para>
/// <para>A length with a prime factor above 61 goes through Bluestein's chirp-z transform: a circular convolution
/// of length m = 2^⌈log₂(2n-1)⌉ done with the power-of-two plan, still O(n log n).</para>
/// Twiddles are computed in double and stored as float; plans are immutable and cached per length.
/// </summary>
internal sealed class FftPlan
{
    /// <summary>Largest prime handled by a direct DFT stage; larger prime factors use Bluestein.</summary>
    public const int MaxRadix = 61;
    private static readonly ConcurrentDictionary<int, FftPlan> Cache = new();

    /// <summary>The (cached) plan for length <paramref name="n"/> (>= 1).</summary>
    public static FftPlan Get(int n) => Cache.GetOrAdd(n, k => new FftPlan(k));

    /// <summary>Transform length.</summary>
    public int Length { get; }
    /// <summary>Stage radices, first stage first (empty for length 1 or Bluestein).</summary>
    public int[] Radices { get; }
    /// <summary>w^t = exp(-2πi·t/n) for t &lt; n: real and imaginary parts.</summary>
    public float[] TwiddleRe { get; }
    /// <inheritdoc cref="TwiddleRe"/>
    public float[] TwiddleIm { get; }
    /// <summary>The power-of-two plan of a Bluestein length, else null.</summary>
    public FftPlan? Inner { get; }
    /// <summary>Bluestein chirp exp(-πi·t²/n), t &lt; n (null otherwise).</summary>
    public float[]? ChirpRe { get; }
    /// <inheritdoc cref="ChirpRe"/>
    public float[]? ChirpIm { get; }
    /// <summary>Bluestein: the transform of the conjugate chirp, zero-padded to the inner length (null otherwise).</summary>
    public float[]? KernelRe { get; }
    /// <inheritdoc cref="KernelRe"/>
    public float[]? KernelIm { get; }

    private readonly float[][] _stageRe, _stageIm;

    /// <summary>Floats of scratch <see cref="Forward"/> needs.</summary>
    public int ScratchLength => Inner is null ? 2 * Length : 2 * Inner.Length + Inner.ScratchLength;

    private FftPlan(int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "FFT length must be >= 1.");
        Length = n;
        TwiddleRe = new float[n]; TwiddleIm = new float[n];
        for (int t = 0; t < n; t++)
        {
            double a = -2 * Math.PI * t / n;
            TwiddleRe[t] = (float)Math.Cos(a); TwiddleIm[t] = (float)Math.Sin(a);
        }
        var radices = Factor(n);
        if (radices is null)
        {
            Radices = [];
            int m = 1;
            while (m < 2 * n - 1) m <<= 1;
            Inner = Get(m);
            ChirpRe = new float[n]; ChirpIm = new float[n];
            var kr = new float[m]; var ki = new float[m];
            for (int t = 0; t < n; t++)
            {
                long sq = (long)t * t % (2L * n); // exp(-πi t²/n) has period 2n in t²
                double a = -Math.PI * sq / n;
                ChirpRe[t] = (float)Math.Cos(a); ChirpIm[t] = (float)Math.Sin(a);
                kr[t] = ChirpRe[t]; ki[t] = -ChirpIm[t];
                if (t > 0) { kr[m - t] = ChirpRe[t]; ki[m - t] = -ChirpIm[t]; }
            }
            Inner.Forward(kr, ki, new float[Inner.ScratchLength]);
            KernelRe = kr; KernelIm = ki;
            _stageRe = _stageIm = [];
            return;
        }
        Radices = radices;
        _stageRe = new float[radices.Length][]; _stageIm = new float[radices.Length][];
        int ns = 1;
        for (int s = 0; s < radices.Length; s++)
        {
            int r = radices[s], step = n / (ns * r);
            var sr = new float[(r - 1) * ns]; var si = new float[(r - 1) * ns];
            for (int q = 1; q < r; q++)
                for (int jj = 0; jj < ns; jj++)
                {
                    int t = (int)((long)jj * q * step % n);
                    sr[(q - 1) * ns + jj] = TwiddleRe[t]; si[(q - 1) * ns + jj] = TwiddleIm[t];
                }
            _stageRe[s] = sr; _stageIm[s] = si;
            ns *= r;
        }
    }

    /// <summary>Radices 4, 2, 3, 5, ... ≤ <see cref="MaxRadix"/> whose product is n, or null when n has a larger prime factor.</summary>
    public static int[]? Factor(int n)
    {
        var r = new List<int>();
        while (n % 4 == 0) { r.Add(4); n /= 4; }
        while (n % 2 == 0) { r.Add(2); n /= 2; }
        for (int p = 3; p <= MaxRadix && n > 1; p += 2)
            while (n % p == 0) { r.Add(p); n /= p; }
        return n == 1 ? r.ToArray() : null;
    }

    /// <summary>In-place forward transform of (re, im), each of <see cref="Length"/> floats; <paramref name="scratch"/> holds
    /// at least <see cref="ScratchLength"/> floats. Allocates nothing.</summary>
    public void Forward(Span<float> re, Span<float> im, Span<float> scratch)
    {
        int n = Length;
        if (n == 1) return;
        if (Inner is not null) { Bluestein(re, im, scratch); return; }
        Span<float> ar = re, ai = im, br = scratch[..n], bi = scratch.Slice(n, n);
        int ns = 1;
        for (int s = 0; s < Radices.Length; s++)
        {
            Stage(ar, ai, br, bi, Radices[s], ns, _stageRe[s], _stageIm[s]);
            ns *= Radices[s];
            Span<float> tr = ar, ti = ai;
            ar = br; ai = bi; br = tr; bi = ti;
        }
        if (Radices.Length % 2 == 1) { ar.CopyTo(re); ai.CopyTo(im); }
    }

    /// <summary>In-place inverse transform (scaled by 1/n): conj ∘ forward ∘ conj.</summary>
    public void Inverse(Span<float> re, Span<float> im, Span<float> scratch)
    {
        System.Numerics.Tensors.TensorPrimitives.Negate(im, im);
        Forward(re, im, scratch);
        float inv = 1f / Length;
        System.Numerics.Tensors.TensorPrimitives.Multiply(re, inv, re);
        System.Numerics.Tensors.TensorPrimitives.Multiply(im, -inv, im);
    }

    private void Bluestein(Span<float> re, Span<float> im, Span<float> scratch)
    {
        int n = Length, m = Inner!.Length;
        Span<float> ar = scratch[..m], ai = scratch.Slice(m, m), rest = scratch[(2 * m)..];
        ar.Clear(); ai.Clear();
        for (int t = 0; t < n; t++)
        {
            float cr = ChirpRe![t], ci = ChirpIm![t];
            ar[t] = re[t] * cr - im[t] * ci; ai[t] = re[t] * ci + im[t] * cr;
        }
        Inner.Forward(ar, ai, rest);
        for (int t = 0; t < m; t++)
        {
            float xr = ar[t], xi = ai[t], kr = KernelRe![t], ki = KernelIm![t];
            ar[t] = xr * kr - xi * ki; ai[t] = xr * ki + xi * kr;
        }
        Inner.Inverse(ar, ai, rest);
        for (int t = 0; t < n; t++)
        {
            float cr = ChirpRe![t], ci = ChirpIm![t];
            re[t] = ar[t] * cr - ai[t] * ci; im[t] = ar[t] * ci + ai[t] * cr;
        }
    }

    private void Stage(ReadOnlySpan<float> sr, ReadOnlySpan<float> si, Span<float> dr, Span<float> di, int radix, int ns, float[] twr,
        float[] twi)
    {
        int n = Length, m = n / radix, w = Vector<float>.Count;
        int vecEnd = ns >= w ? ns - ns % w : 0;
        Span<float> vr = stackalloc float[radix], vi = stackalloc float[radix];
        for (int blk = 0; blk < m / ns; blk++)
        {
            int jb = blk * ns, ob = blk * ns * radix;
            int jj = 0;
            for (; jj < vecEnd; jj += w) VectorButterflies(sr, si, dr, di, radix, ns, jb + jj, ob + jj, jj, m, twr, twi);
            for (; jj < ns; jj++)
            {
                int j = jb + jj;
                vr[0] = sr[j]; vi[0] = si[j];
                for (int r = 1; r < radix; r++)
                {
                    float xr = sr[j + r * m], xi = si[j + r * m], cr = twr[(r - 1) * ns + jj], ci = twi[(r - 1) * ns + jj];
                    vr[r] = xr * cr - xi * ci; vi[r] = xr * ci + xi * cr;
                }
                int o = ob + jj;
                switch (radix)
                {
                    case 2:
                        dr[o] = vr[0] + vr[1]; di[o] = vi[0] + vi[1];
                        dr[o + ns] = vr[0] - vr[1]; di[o + ns] = vi[0] - vi[1];
                        break;
                    case 4:
                        {
                            float t0r = vr[0] + vr[2], t0i = vi[0] + vi[2], t1r = vr[0] - vr[2], t1i = vi[0] - vi[2];
                            float t2r = vr[1] + vr[3], t2i = vi[1] + vi[3], t3r = vr[1] - vr[3], t3i = vi[1] - vi[3];
                            dr[o] = t0r + t2r; di[o] = t0i + t2i;
                            dr[o + ns] = t1r + t3i; di[o + ns] = t1i - t3r;
                            dr[o + 2 * ns] = t0r - t2r; di[o + 2 * ns] = t0i - t2i;
                            dr[o + 3 * ns] = t1r - t3i; di[o + 3 * ns] = t1i + t3r;
                            break;
                        }
                    default:
                        for (int q = 0; q < radix; q++)
                        {
                            float accR = 0, accI = 0;
                            for (int r = 0; r < radix; r++)
                            {
                                int t = q * r % radix * m; // w^(qr n/R)
                                float cr = TwiddleRe[t], ci = TwiddleIm[t];
                                accR += vr[r] * cr - vi[r] * ci; accI += vr[r] * ci + vi[r] * cr;
                            }
                            dr[o + q * ns] = accR; di[o + q * ns] = accI;
                        }
                        break;
                }
            }
        }
    }

    private void VectorButterflies(ReadOnlySpan<float> sr, ReadOnlySpan<float> si, Span<float> dr, Span<float> di, int radix, int ns, int j,
        int o, int jj, int m,
        float[] twr, float[] twi)
    {
        Span<Vector<float>> vr = stackalloc Vector<float>[radix], vi = stackalloc Vector<float>[radix];
        vr[0] = new Vector<float>(sr[j..]); vi[0] = new Vector<float>(si[j..]);
        for (int r = 1; r < radix; r++)
        {
            var xr = new Vector<float>(sr[(j + r * m)..]); var xi = new Vector<float>(si[(j + r * m)..]);
            var cr = new Vector<float>(twr.AsSpan((r - 1) * ns + jj)); var ci = new Vector<float>(twi.AsSpan((r - 1) * ns + jj));
            vr[r] = xr * cr - xi * ci; vi[r] = xr * ci + xi * cr;
        }
        switch (radix)
        {
            case 2:
                (vr[0] + vr[1]).CopyTo(dr[o..]); (vi[0] + vi[1]).CopyTo(di[o..]);
                (vr[0] - vr[1]).CopyTo(dr[(o + ns)..]); (vi[0] - vi[1]).CopyTo(di[(o + ns)..]);
                break;
            case 4:
                {
                    var t0r = vr[0] + vr[2]; var t0i = vi[0] + vi[2]; var t1r = vr[0] - vr[2]; var t1i = vi[0] - vi[2];
                    var t2r = vr[1] + vr[3]; var t2i = vi[1] + vi[3]; var t3r = vr[1] - vr[3]; var t3i = vi[1] - vi[3];
                    (t0r + t2r).CopyTo(dr[o..]); (t0i + t2i).CopyTo(di[o..]);
                    (t1r + t3i).CopyTo(dr[(o + ns)..]); (t1i - t3r).CopyTo(di[(o + ns)..]);
                    (t0r - t2r).CopyTo(dr[(o + 2 * ns)..]); (t0i - t2i).CopyTo(di[(o + 2 * ns)..]);
                    (t1r - t3i).CopyTo(dr[(o + 3 * ns)..]); (t1i + t3r).CopyTo(di[(o + 3 * ns)..]);
                    break;
                }
            default:
                for (int q = 0; q < radix; q++)
                {
                    Vector<float> accR = Vector<float>.Zero, accI = Vector<float>.Zero;
                    for (int r = 0; r < radix; r++)
                    {
                        int t = q * r % radix * m;
                        float cr = TwiddleRe[t], ci = TwiddleIm[t];
                        accR += vr[r] * cr - vi[r] * ci; accI += vr[r] * ci + vi[r] * cr;
                    }
                    accR.CopyTo(dr[(o + q * ns)..]); accI.CopyTo(di[(o + q * ns)..]);
                }
                break;
        }
    }
}
