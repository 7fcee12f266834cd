using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Retrieval;

/// <summary>
/// <c>similarity_topk</c>, managed. A work item is a block of 8 queries; it streams the database once, each db row
/// dotted with the 8 queries while it sits in L1 (TensorPrimitives.Dot), each score offered to that query's bounded
/// heap (<see cref="TopK"/>): no score row is ever materialized, memory is O(k) per query. Cosine uses inverse norms
/// computed once per call. Allocation happens only when a call needs larger scratch than any before it.
/// </summary>
public static unsafe class SimilarityTopkSimd
{
    private const int QBlock = 8;

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
            if (job.HeapS.Length < pool.Workers) { job.HeapS = new float[pool.Workers][]; job.HeapP = new int[pool.Workers][]; }
            for (int w = 0; w < pool.Workers; w++)
                if (job.HeapS[w] is null || job.HeapS[w].Length < QBlock * k) { job.HeapS[w] = new float[QBlock * k]; job.HeapP[w] = new int[QBlock * k]; }
            pool.Run(job, (queries + QBlock - 1) / QBlock);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* Q, Db, Score; internal long* Index; internal int Queries, N, D, K; internal bool Cosine;
        internal float[] InvNorm = [];
        internal float[][] HeapS = []; internal int[][] HeapP = [];

        public void Execute(int item, int worker)
        {
            int q0 = item * QBlock, nq = Math.Min(QBlock, Queries - q0);
            Span<float> qscale = stackalloc float[QBlock];
            for (int j = 0; j < nq; j++)
            {
                var qv = new ReadOnlySpan<float>(Q + (long)(q0 + j) * D, D);
                qscale[j] = Cosine ? 1f / MathF.Max(TensorPrimitives.Norm(qv), 1e-12f) : 1f;
            }
            var hs = HeapS[worker]; var hp = HeapP[worker];
            Span<int> counts = stackalloc int[QBlock];
            counts.Clear();
            for (int i = 0; i < N; i++)
            {
                var row = new ReadOnlySpan<float>(Db + (long)i * D, D);
                float inv = Cosine ? InvNorm[i] : 1f;
                for (int j = 0; j < nq; j++)
                {
                    float s = TensorPrimitives.Dot(new ReadOnlySpan<float>(Q + (long)(q0 + j) * D, D), row);
                    if (Cosine) s = s * qscale[j] * inv;
                    TopK.Offer(hs.AsSpan(j * K, K), hp.AsSpan(j * K, K), ref counts[j], K, s, i);
                }
            }
            for (int j = 0; j < nq; j++)
            {
                TopK.SortBestFirst(hs.AsSpan(j * K, K), hp.AsSpan(j * K, K), counts[j]);
                long o = (long)(q0 + j) * K;
                for (int t = 0; t < counts[j]; t++) { Index[o + t] = hp[j * K + t]; Score[o + t] = hs[j * K + t]; }
            }
        }
    }
}
