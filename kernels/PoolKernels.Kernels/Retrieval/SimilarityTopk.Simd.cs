using System.Numerics.Tensors;
using PoolKernels.Kernels.Spatial;

namespace PoolKernels.Kernels.Retrieval;

/// <summary>
/// <c>similarity_topk</c>, managed. A work item is a block of 64 queries; it streams the database once in tiles of 128
/// rows (which stay in L2 while the block's queries pass over them), scoring 4 queries × 4 rows at a time with the
/// <see cref="DotTile"/> register micro-kernel, and offers each score to its query's bounded heap
/// (<see cref="TopK"/>): no score row is ever materialized, memory is O(k) per query. Every score comes from the same
/// micro-kernel arithmetic (short tiles repeat a row), so exact ties stay exact. Cosine uses inverse norms computed once
/// per call. Allocation happens only when a call needs larger scratch than any before it.
/// </summary>
public static unsafe class SimilarityTopkSimd
{
    private const int QBlock = 64, RTile = 128;

    /// <summary>Runs into index [Q,k] and score [Q,k].</summary>
    public static void Run(ReadOnlySpan<float> query, ReadOnlySpan<float> db, Span<long> index, Span<float> score, int queries, int n, int dim, int k, bool cosine, WorkerPool pool)
    {
        if (queries == 0 || k == 0) return;
        fixed (float* pq = query) fixed (float* pd = db) fixed (long* pi = index) fixed (float* ps = score)
        {
            var job = Job.Cached ??= new();
            job.Q = pq; job.Db = pd; job.Index = pi; job.Score = ps; job.Queries = queries; job.N = n; job.D = dim; job.K = k; job.Cosine = cosine;
            if (cosine)
            {
                if (job.InvNorm.Length < n) job.InvNorm = new float[n];
                for (int i = 0; i < n; i++) job.InvNorm[i] = 1f / MathF.Max(TensorPrimitives.Norm(db.Slice(i * dim, dim)), 1e-12f);
            }
            // large k: fewer queries per block, so the heaps stay small
            job.QB = k <= 1024 ? QBlock : 4;
            if (job.HeapS.Length < pool.Workers) { job.HeapS = new float[pool.Workers][]; job.HeapP = new int[pool.Workers][]; }
            for (int w = 0; w < pool.Workers; w++)
                if (job.HeapS[w] is null || job.HeapS[w].Length < job.QB * k) { job.HeapS[w] = new float[job.QB * k]; job.HeapP[w] = new int[job.QB * k]; }
            pool.Run(job, (queries + job.QB - 1) / job.QB);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* Q, Db, Score; internal long* Index; internal int Queries, N, D, K, QB; internal bool Cosine;
        internal float[] InvNorm = [];
        internal float[][] HeapS = []; internal int[][] HeapP = [];

        private float* QRow(int q) => Q + (long)q * D;
        private float* DbRow(int r) => Db + (long)r * D;

        public void Execute(int item, int worker)
        {
            int q0 = item * QB, nq = Math.Min(QB, Queries - q0);
            Span<float> qscale = stackalloc float[QBlock];
            for (int j = 0; j < nq; j++)
            {
                var qv = new ReadOnlySpan<float>(Q + (long)(q0 + j) * D, D);
                qscale[j] = Cosine ? 1f / MathF.Max(TensorPrimitives.Norm(qv), 1e-12f) : 1f;
            }
            var hs = HeapS[worker]; var hp = HeapP[worker];
            Span<int> counts = stackalloc int[QBlock];
            counts.Clear();
            // each heap's worst kept score: a candidate that does not beat it is dropped without touching the heap
            // (a full heap of NaN has threshold NaN, which lets every candidate through to the exact test)
            Span<float> worst = stackalloc float[QBlock];
            worst.Fill(float.NaN);
            float* t = stackalloc float[16];
            for (int r0 = 0; r0 < N; r0 += RTile)
            {
                int nr = Math.Min(RTile, N - r0);
                for (int qi = 0; qi < nq; qi += 4)
                {
                    float* a0 = QRow(q0 + qi), a1 = QRow(q0 + Math.Min(qi + 1, nq - 1)), a2 = QRow(q0 + Math.Min(qi + 2, nq - 1)), a3 = QRow(q0 + Math.Min(qi + 3, nq - 1));
                    int mi = Math.Min(4, nq - qi);
                    for (int ri = 0; ri < nr; ri += 4)
                    {
                        int rb = r0 + ri, mj = Math.Min(4, nr - ri);
                        DotTile.Dot4x4(a0, a1, a2, a3, DbRow(rb), DbRow(rb + Math.Min(1, mj - 1)), DbRow(rb + Math.Min(2, mj - 1)), DbRow(rb + Math.Min(3, mj - 1)), D, t);
                        for (int a = 0; a < mi; a++)
                        {
                            int j = qi + a;
                            for (int b = 0; b < mj; b++)
                            {
                                float s = t[a * 4 + b];
                                if (Cosine) s = s * qscale[j] * InvNorm[rb + b];
                                if (!(s > worst[j]) && !float.IsNaN(worst[j])) continue; // ties lose to the lower index already kept
                                TopK.Offer(hs.AsSpan(j * K, K), hp.AsSpan(j * K, K), ref counts[j], K, s, rb + b);
                                if (counts[j] == K) worst[j] = hs[j * K];
                            }
                        }
                    }
                }
            }
            for (int j = 0; j < nq; j++)
            {
                TopK.SortBestFirst(hs.AsSpan(j * K, K), hp.AsSpan(j * K, K), counts[j]);
                long o = (long)(q0 + j) * K;
                for (int e = 0; e < counts[j]; e++) { Index[o + e] = hp[j * K + e]; Score[o + e] = hs[j * K + e]; }
            }
        }
    }
}
