using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>scale_gem</c>, managed: γ (finite p) by a parallel TensorPrimitives.Min over x; then one work item per batch row
/// accumulates its S rows vector-wise (power of the shifted row, or the row scaled by its inverse norm for p = inf).
/// </summary>
internal static unsafe class ScaleGemSimd
{
    /// <summary>Runs into output [B,D].</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, int scales, int batch, int dim, float p, WorkerPool pool)
    {
        if (batch == 0 || dim == 0) return;
        if (scales == 0) { output.Clear(); return; }
        fixed (float* px = x) fixed (float* po = output)
        {
            var job = Job.Cached ??= new();
            job.X = px; job.Out = po; job.S = scales; job.B = batch; job.D = dim; job.P = p;
            job.Gamma = float.IsPositiveInfinity(p) ? 0 : ParallelMin(px, (long)scales * batch * dim, pool);
            pool.EnsureScratch(ref job.Scratch, dim);
            pool.Run(job, batch);
        }
    }

    private const int MinChunk = 1 << 18;

    /// <summary>min over n floats (NaN if any is NaN), chunks of 256K floats spread over the pool: a single-threaded
    /// TensorPrimitives.Min over [3,4096,2048] was a whole extra pass at one core's bandwidth.</summary>
    private static float ParallelMin(float* x, long n, WorkerPool pool)
    {
        var job = MinJob.Cached ??= new();
        int chunks = (int)((n + MinChunk - 1) / MinChunk);
        if (job.Partial.Length < chunks) job.Partial = new float[chunks];
        job.X = x; job.N = n;
        pool.Run(job, chunks);
        float m = job.Partial[0];
        for (int i = 1; i < chunks; i++) m = Numerics.MinNaN(m, job.Partial[i]);
        return m;
    }

    private sealed class MinJob : IParallelJob
    {
        [ThreadStatic] internal static MinJob? Cached;
        internal float* X; internal long N; internal float[] Partial = [];

        public void Execute(int item, int worker)
        {
            long at = (long)item * MinChunk;
            Partial[item] = TensorPrimitives.Min(new ReadOnlySpan<float>(X + at, (int)Math.Min(MinChunk, N - at)));
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Out; internal int S, B, D; internal float P, Gamma;
        internal float[]?[] Scratch = [];

        public void Execute(int b, int worker)
        {
            var dst = new Span<float>(Out + (long)b * D, D);
            var tmp = Scratch[worker]!.AsSpan(0, D);
            bool inf = float.IsPositiveInfinity(P);
            int d0 = 0;
            if (!inf && (P == 3f || P == 2f) && Vector512.IsHardwareAccelerated)
            {
                // Σ_s (x_s - γ)^p for 16 columns at a time in one register, all S rows read once (one pass instead of four per row)
                var g = Vector512.Create(Gamma);
                bool cube = P == 3f;
                for (; d0 + 16 <= D; d0 += 16)
                {
                    var acc = Vector512<float>.Zero;
                    for (int s = 0; s < S; s++)
                    {
                        var t = Vector512.Load(X + ((long)s * B + b) * D + d0) - g;
                        acc += cube ? t * t * t : t * t;
                    }
                    acc.Store(Out + (long)b * D + d0);
                }
            }
            if (inf) dst.Fill(float.NegativeInfinity); else dst[d0..].Clear();
            for (int s = 0; s < S && d0 < D; s++)
            {
                var row = new ReadOnlySpan<float>(X + ((long)s * B + b) * D + d0, D - d0);
                if (inf)
                {
                    TensorPrimitives.Multiply(row, 1f / MathF.Max(TensorPrimitives.Norm(row), 1e-12f), tmp);
                    TensorPrimitives.Max(dst, tmp, dst);
                    continue;
                }
                var t = tmp[..row.Length];
                TensorPrimitives.Subtract(row, Gamma, t);
                VectorMath.Pow(t, P, t);
                TensorPrimitives.Add(dst[d0..], t, dst[d0..]);
            }
            if (inf) return;
            TensorPrimitives.Multiply(dst, 1f / S, dst);
            VectorMath.Pow(dst, 1f / P, dst);
            TensorPrimitives.Add(dst, Gamma, dst);
        }
    }
}
