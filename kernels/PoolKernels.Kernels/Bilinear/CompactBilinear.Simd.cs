using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>
/// <c>compact_bilinear_pool</c>, managed SIMD with the shared <see cref="FftPlan"/>, O(d log d) per row for any d.
/// Both count sketches of a row are real, so one complex FFT of (sketch_x + i·sketch_y) gives both spectra
/// (X_k = (Z_k + conj Z_{-k})/2, Y_k = (Z_k - conj Z_{-k})/2i); and the circular convolutions of two rows are real,
/// so one inverse FFT of P_a + i·P_b returns both. Per pair of rows: two forward FFTs and one inverse, i.e. 1.5
/// complex FFTs of length d per row. Pairs of rows run in parallel; per-worker buffers are cached.
/// </summary>
internal static unsafe class CompactBilinearSimd
{
    /// <summary>See <see cref="CompactBilinearReference.Run"/>.</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<long> hx, ReadOnlySpan<float> sx,
        ReadOnlySpan<long> hy,
        ReadOnlySpan<float> sy, Span<float> output, int batch, int d, bool signedSqrt, bool normalize, WorkerPool? pool = null)
    {
        if (batch == 0) return;
        pool ??= WorkerPool.Shared;
        var plan = FftPlan.Get(d);
        fixed (float* xp = x) fixed (float* yp = y) fixed (long* hxp = hx) fixed (float* sxp = sx) fixed (long* hyp = hy) fixed (float* syp
            = sy) fixed (float* op = output)
        {
            var job = Job.Cached ??= new();
            int per = 6 * d + plan.ScratchLength;
            pool.EnsureScratch(ref job.Buffers, per);
            job.X = xp; job.Y = yp; job.Hx = hxp; job.Sx = sxp; job.Hy = hyp; job.Sy = syp; job.Out = op;
            job.Dx = hx.Length; job.Dy = hy.Length; job.D = d; job.Batch = batch; job.Plan = plan;
            job.SignedSqrt = signedSqrt; job.Normalize = normalize;
            pool.Run(job, (batch + 1) / 2);
            job.X = job.Y = job.Out = null; job.Plan = null;
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float[]?[] Buffers = [];
        internal float* X, Y, Sx, Sy, Out;
        internal long* Hx, Hy;
        internal int Dx, Dy, D, Batch;
        internal FftPlan? Plan;
        internal bool SignedSqrt, Normalize;

        public void Execute(int item, int worker)
        {
            var buf = Buffers[worker]!;
            int d = D, b0 = 2 * item;
            bool two = b0 + 1 < Batch;
            var s = buf.AsSpan();
            Span<float> z0r = s[..d], z0i = s.Slice(d, d), z1r = s.Slice(2 * d, d), z1i = s.Slice(3 * d, d), qr = s.Slice(4 * d, d),
                qi = s.Slice(5 * d, d);
            var scratch = s.Slice(6 * d, Plan!.ScratchLength);
            Sketch(b0, z0r, z0i);
            Plan.Forward(z0r, z0i, scratch);
            if (two) { Sketch(b0 + 1, z1r, z1i); Plan.Forward(z1r, z1i, scratch); }
            float inv = 1f / d;
            // A NaN or infinity in a row's sketch reaches its DC bin (a plain sum); paired, it would reach the other row
            // through the shared inverse FFT, so such a pair is inverted one row at a time (rows stay independent).
            if (two && float.IsFinite(z0r[0]) && float.IsFinite(z0i[0]) && float.IsFinite(z1r[0]) && float.IsFinite(z1i[0]))
            {
                Combine(z0r, z0i, z1r, z1i, true, qr, qi, d);
                Plan.Forward(qr, qi, scratch);
                Finish(new Span<float>(Out + (long)b0 * d, d), qr, inv, z0r);
                TensorPrimitives.Negate(qi, qi);
                Finish(new Span<float>(Out + (long)(b0 + 1) * d, d), qi, inv, z0r);
                return;
            }
            Combine(z0r, z0i, default, default, false, qr, qi, d);
            Plan.Forward(qr, qi, scratch);
            Finish(new Span<float>(Out + (long)b0 * d, d), qr, inv, z0r);
            if (!two) return;
            Combine(z1r, z1i, default, default, false, qr, qi, d);
            Plan.Forward(qr, qi, scratch);
            Finish(new Span<float>(Out + (long)(b0 + 1) * d, d), qr, inv, z0r);
        }

        /// <summary>Q = conj(P_0 + i·P_1) (P_1 = 0 unless <paramref name="two"/>): the inverse FFT is then
        /// conj(FFT(conj Q'))/d with Q' = P_0 + i P_1, row 0 in its real part and row 1 in minus its imaginary part.</summary>
        private static void Combine(Span<float> z0r, Span<float> z0i, Span<float> z1r, Span<float> z1i, bool two, Span<float> qr,
            Span<float> qi, int d)
        {
            for (int k = 0; k < d; k++)
            {
                int km = k == 0 ? 0 : d - k;
                Product(z0r[k], z0i[k], z0r[km], z0i[km], out float p0r, out float p0i);
                float p1r = 0, p1i = 0;
                if (two) Product(z1r[k], z1i[k], z1r[km], z1i[km], out p1r, out p1i);
                qr[k] = p0r - p1i;          // Re(P0 + i P1)
                qi[k] = -(p0i + p1r);       // -Im(P0 + i P1)
            }
        }

        /// <summary>re = sketch of x row b, im = sketch of y row b.</summary>
        private void Sketch(int b, Span<float> re, Span<float> im)
        {
            re.Clear(); im.Clear();
            float* xr = X + (long)b * Dx, yr = Y + (long)b * Dy;
            for (int i = 0; i < Dx; i++) re[(int)Hx[i]] += Sx[i] * xr[i];
            for (int j = 0; j < Dy; j++) im[(int)Hy[j]] += Sy[j] * yr[j];
        }

        /// <summary>X_k·Y_k from Z_k = (a, b) and Z_{-k} = (c, e): X = ((a+c)/2, (b-e)/2), Y = ((b+e)/2, (c-a)/2).</summary>
        private static void Product(float a, float b, float c, float e, out float pr, out float pi)
        {
            float xr = 0.5f * (a + c), xi = 0.5f * (b - e), yr = 0.5f * (b + e), yi = 0.5f * (c - a);
            pr = xr * yr - xi * yi; pi = xr * yi + xi * yr;
        }

        private void Finish(Span<float> dst, ReadOnlySpan<float> src, float inv, Span<float> tmp)
        {
            TensorPrimitives.Multiply(src, inv, dst);
            if (SignedSqrt) BilinearPoolSimd.SignedSqrt(dst, tmp[..dst.Length]);
            if (Normalize) Sequence.SequencePoolSimd.NormalizeInPlace(dst);
        }
    }
}
