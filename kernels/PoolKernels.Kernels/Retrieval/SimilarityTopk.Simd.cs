using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
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

    /// <summary>The db-tile path keeps Q·k heap entries per worker; above this many (Q·k·workers) the query-block path
    /// runs instead. Settable so tests can exercise both paths.</summary>
    public static long TileHeapLimit { get; set; } = 1 << 22;

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
            if (Vector512.IsHardwareAccelerated && (long)queries * k * pool.Workers <= TileHeapLimit)
            {
                RunTiles(pq, pd, index, score, queries, n, dim, k, cosine, pool, job.InvNorm);
                return;
            }
            // large k: fewer queries per block, so the heaps stay small
            job.QB = k <= 1024 ? QBlock : 4;
            if (job.HeapS.Length < pool.Workers) { job.HeapS = new float[pool.Workers][]; job.HeapP = new int[pool.Workers][]; }
            for (int w = 0; w < pool.Workers; w++)
                if (job.HeapS[w] is null || job.HeapS[w].Length < job.QB * k) { job.HeapS[w] = new float[job.QB * k]; job.HeapP[w] = new int[job.QB * k]; }
            pool.Run(job, (queries + job.QB - 1) / job.QB);
        }
    }

    private const int Tile = 128;

    // The db-tile path (AVX-512): work items are tiles of 128 db rows; a worker transposes its tile once into
    // [D][128] scratch, then every query is scored against it two at a time by broadcasting query elements over the
    // tile's columns (8 + 8 accumulators, 16 FMAs per 8 loads: FMA-bound, no horizontal sums). Each worker keeps a
    // bounded heap per query for the rows it saw (in increasing order, so a candidate equal to the heap's worst already
    // loses the tie); the heaps are merged per query at the end. Memory: Q·k per worker, never a score row.
    private static void RunTiles(float* q, float* db, Span<long> index, Span<float> score, int queries, int n, int dim, int k, bool cosine, WorkerPool pool, float[] invNorm)
    {
        var job = TileJob.Cached ??= new();
        int w = pool.Workers;
        job.Q = q; job.Db = db; job.Queries = queries; job.N = n; job.D = dim; job.K = k; job.Cosine = cosine; job.InvNorm = invNorm;
        if (job.QScale.Length < queries) job.QScale = new float[queries];
        for (int i = 0; i < queries; i++)
            job.QScale[i] = cosine ? 1f / MathF.Max(TensorPrimitives.Norm(new ReadOnlySpan<float>(q + (long)i * dim, dim)), 1e-12f) : 1f;
        if (job.HS.Length < w) { job.HS = new float[w][]; job.HP = new int[w][]; job.Counts = new int[w][]; job.Worst = new float[w][]; job.TileT = new float[w][]; }
        for (int i = 0; i < w; i++)
        {
            if (job.HS[i] is null || job.HS[i].Length < queries * k) { job.HS[i] = new float[queries * k]; job.HP[i] = new int[queries * k]; }
            if (job.Counts[i] is null || job.Counts[i].Length < queries) { job.Counts[i] = new int[queries]; job.Worst[i] = new float[queries]; }
            if (job.TileT[i] is null || job.TileT[i].Length < dim * Tile) job.TileT[i] = new float[dim * Tile];
            job.Counts[i].AsSpan(0, queries).Clear();
            job.Worst[i].AsSpan(0, queries).Fill(float.NaN);
        }
        pool.Run(job, (n + Tile - 1) / Tile);
        if (job.MS.Length < k) { job.MS = new float[k]; job.MP = new int[k]; }
        for (int qi = 0; qi < queries; qi++)
        {
            int count = 0;
            for (int i = 0; i < w; i++)
                for (int e = 0; e < job.Counts[i][qi]; e++)
                    TopK.Offer(job.MS, job.MP, ref count, k, job.HS[i][qi * k + e], job.HP[i][qi * k + e]);
            TopK.SortBestFirst(job.MS, job.MP, count);
            for (int e = 0; e < count; e++) { index[qi * k + e] = job.MP[e]; score[qi * k + e] = job.MS[e]; }
        }
    }

    private sealed class TileJob : IParallelJob
    {
        [ThreadStatic] internal static TileJob? Cached;
        internal float* Q, Db; internal int Queries, N, D, K; internal bool Cosine;
        internal float[] InvNorm = [], QScale = [], MS = [];
        internal int[] MP = [];
        internal float[][] HS = [], Worst = [], TileT = [];
        internal int[][] HP = [], Counts = [];

        public void Execute(int item, int worker)
        {
            int r0 = item * Tile, nr = Math.Min(Tile, N - r0);
            fixed (float* tt = TileT[worker])
            {
                for (int r = 0; r < Tile; r++)
                {
                    if (r < nr) { float* src = Db + (long)(r0 + r) * D; for (int d = 0; d < D; d++) tt[d * Tile + r] = src[d]; }
                    else for (int d = 0; d < D; d++) tt[d * Tile + r] = 0;
                }
                float* sc = stackalloc float[2 * Tile];
                var hs = HS[worker]; var hp = HP[worker]; var counts = Counts[worker]; var worst = Worst[worker];
                for (int qa = 0; qa < Queries; qa += 2)
                {
                    int qb = Math.Min(qa + 1, Queries - 1);
                    Score2(Q + (long)qa * D, Q + (long)qb * D, tt, D, sc);
                    for (int a = 0; a < (qb == qa ? 1 : 2); a++)
                    {
                        int qi = qa + a;
                        float* row = sc + a * Tile;
                        float qs = QScale[qi];
                        for (int r = 0; r < nr; r++)
                        {
                            float s = row[r];
                            if (Cosine) s = s * qs * InvNorm[r0 + r];
                            if (!(s > worst[qi]) && !float.IsNaN(worst[qi])) continue;
                            TopK.Offer(hs.AsSpan(qi * K, K), hp.AsSpan(qi * K, K), ref counts[qi], K, s, r0 + r);
                            if (counts[qi] == K) worst[qi] = hs[qi * K];
                        }
                    }
                }
            }
        }

        private static void Score2(float* qa, float* qb, float* tt, int dim, float* sc)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
            for (int d = 0; d < dim; d++)
            {
                var x = Vector512.Create(qa[d]); var y = Vector512.Create(qb[d]);
                float* t = tt + d * Tile;
                var t0 = Vector512.Load(t); var t1 = Vector512.Load(t + 16); var t2 = Vector512.Load(t + 32); var t3 = Vector512.Load(t + 48);
                var t4 = Vector512.Load(t + 64); var t5 = Vector512.Load(t + 80); var t6 = Vector512.Load(t + 96); var t7 = Vector512.Load(t + 112);
                a0 = Vector512.FusedMultiplyAdd(x, t0, a0); a1 = Vector512.FusedMultiplyAdd(x, t1, a1); a2 = Vector512.FusedMultiplyAdd(x, t2, a2); a3 = Vector512.FusedMultiplyAdd(x, t3, a3);
                a4 = Vector512.FusedMultiplyAdd(x, t4, a4); a5 = Vector512.FusedMultiplyAdd(x, t5, a5); a6 = Vector512.FusedMultiplyAdd(x, t6, a6); a7 = Vector512.FusedMultiplyAdd(x, t7, a7);
                b0 = Vector512.FusedMultiplyAdd(y, t0, b0); b1 = Vector512.FusedMultiplyAdd(y, t1, b1); b2 = Vector512.FusedMultiplyAdd(y, t2, b2); b3 = Vector512.FusedMultiplyAdd(y, t3, b3);
                b4 = Vector512.FusedMultiplyAdd(y, t4, b4); b5 = Vector512.FusedMultiplyAdd(y, t5, b5); b6 = Vector512.FusedMultiplyAdd(y, t6, b6); b7 = Vector512.FusedMultiplyAdd(y, t7, b7);
            }
            a0.Store(sc); a1.Store(sc + 16); a2.Store(sc + 32); a3.Store(sc + 48); a4.Store(sc + 64); a5.Store(sc + 80); a6.Store(sc + 96); a7.Store(sc + 112);
            b0.Store(sc + 128); b1.Store(sc + 144); b2.Store(sc + 160); b3.Store(sc + 176); b4.Store(sc + 192); b5.Store(sc + 208); b6.Store(sc + 224); b7.Store(sc + 240);
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
