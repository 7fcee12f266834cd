using System.Numerics;

namespace PoolKernels.Kernels.Training;

/// <summary>
/// <c>adamw_step</c>, managed SIMD: the rules of <see cref="AdamWReference"/> in float with <see cref="Vector{T}"/> lanes (the
/// widest the CPU accelerates), over chunks of 16K elements on the <see cref="WorkerPool"/>. Elementwise, so the bits do not
/// depend on the thread count; allocates nothing.
/// </summary>
internal static unsafe class AdamWSimd
{
    private const int Chunk = 16384;

    /// <summary>Runs the step on <paramref name="pool"/>. Arguments are assumed validated.</summary>
    public static void Run(Span<float> param, ReadOnlySpan<float> grad, Span<float> m, Span<float> v, in AdamWParams p, WorkerPool pool)
    {
        if (param.IsEmpty) return;
        fixed (float* x = param) fixed (float* g = grad) fixed (float* mm = m) fixed (float* vv = v)
        {
            var job = Job.Cached ??= new Job();
            job.X = x; job.G = g; job.M = mm; job.V = vv; job.Count = param.Length; job.P = p;
            pool.Run(job, (param.Length + Chunk - 1) / Chunk);
            job.X = null; job.G = null; job.M = null; job.V = null;
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, G, M, V;
        internal int Count;
        internal AdamWParams P;

        public void Execute(int item, int worker)
        {
            int i = item * Chunk, end = Math.Min(Count, i + Chunk), w = Vector<float>.Count;
            float decay = 1f - P.Lr * P.WeightDecay, b1 = P.Beta1, b2 = P.Beta2, step = P.Lr / P.Bc1, inv2 = 1f / P.Bc2Sqrt;
            var vDecay = new Vector<float>(decay); var vB1 = new Vector<float>(b1); var vB2 = new Vector<float>(b2);
            var v1B1 = new Vector<float>(1f - b1); var v1B2 = new Vector<float>(1f - b2);
            var vStep = new Vector<float>(step); var vInv2 = new Vector<float>(inv2); var vEps = new Vector<float>(P.Eps);
            for (; i + w <= end; i += w)
            {
                var g = Vector.Load(G + i);
                var m = vB1 * Vector.Load(M + i) + v1B1 * g;
                var v = vB2 * Vector.Load(V + i) + v1B2 * g * g;
                var x = Vector.Load(X + i) * vDecay - vStep * m / (Vector.SquareRoot(v) * vInv2 + vEps);
                x.Store(X + i); m.Store(M + i); v.Store(V + i);
            }
            for (; i < end; i++)
            {
                float g = G[i], m = b1 * M[i] + (1f - b1) * g, v = b2 * V[i] + (1f - b2) * g * g;
                X[i] = X[i] * decay - step * m / (MathF.Sqrt(v) * inv2 + P.Eps);
                M[i] = m; V[i] = v;
            }
        }
    }
}
