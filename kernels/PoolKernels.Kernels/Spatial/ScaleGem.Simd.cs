using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>scale_gem</c>, managed: γ (finite p) by one TensorPrimitives.Min over x; then one work item per batch row
/// accumulates its S rows vector-wise (power of the shifted row, or the row scaled by its inverse norm for p = inf).
/// </summary>
public static unsafe class ScaleGemSimd
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
            job.Gamma = float.IsPositiveInfinity(p) ? 0 : TensorPrimitives.Min(x);
            if (job.Scratch is null || job.Scratch.Length < pool.Workers) job.Scratch = new float[pool.Workers][];
            for (int w = 0; w < pool.Workers; w++)
                if (job.Scratch[w] is null || job.Scratch[w].Length < 2 * dim) job.Scratch[w] = new float[2 * dim];
            pool.Run(job, batch);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Out; internal int S, B, D; internal float P, Gamma;
        internal float[][]? Scratch;

        public void Execute(int b, int worker)
        {
            var dst = new Span<float>(Out + (long)b * D, D);
            var tmp = Scratch![worker].AsSpan(0, D); var sq = Scratch[worker].AsSpan(D, D);
            bool inf = float.IsPositiveInfinity(P);
            if (inf) dst.Fill(float.NegativeInfinity); else dst.Clear();
            for (int s = 0; s < S; s++)
            {
                var row = new ReadOnlySpan<float>(X + ((long)s * B + b) * D, D);
                if (inf)
                {
                    TensorPrimitives.Multiply(row, 1f / MathF.Max(TensorPrimitives.Norm(row), 1e-12f), tmp);
                    TensorPrimitives.Max(dst, tmp, dst);
                    continue;
                }
                TensorPrimitives.Subtract(row, Gamma, tmp);
                if (P == 3f) { TensorPrimitives.Multiply(tmp, tmp, sq); TensorPrimitives.Multiply(sq, tmp, tmp); }
                else if (P == 2f) TensorPrimitives.Multiply(tmp, tmp, tmp);
                else if (P != 1f) VectorMath.Pow(tmp, P, tmp);
                TensorPrimitives.Add(dst, tmp, dst);
            }
            if (inf) return;
            TensorPrimitives.Multiply(dst, 1f / S, dst);
            VectorMath.Pow(dst, 1f / P, dst);
            TensorPrimitives.Add(dst, Gamma, dst);
        }
    }
}
