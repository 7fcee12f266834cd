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
internal static unsafe class SimilarityTopkSimd
{
    private const int QBlock = 64, RTile = 128;

    /// <summary>The db-tile path keeps Q·k heap entries per worker; above this many (Q·k·workers) the query-block path
    /// runs instead. Settable so tests can exercise both paths.</summary>
    public static long TileHeapLimit { get; set; } = 1 << 22;

    /// <summary>Runs into index [Q,k] and score [Q,k].</summary>
    public static void Run(ReadOnlySpan<float> query, ReadOnlySpan<float> db, Span<long> index, Span<float> score, int queries, int n,
        int dim, int k, bool cosine, WorkerPool pool)
        => Run(query, System.Runtime.InteropServices.MemoryMarshal.AsBytes(db), DbElements.F32, index, score, queries, n, dim, k, cosine,
            pool);

    [ThreadStatic] private static float[]? _wide;

    /// <summary>Runs over a db stored as <paramref name="kind"/> (<see cref="DbElements"/>). The db-tile path widens each
    /// 32-row tile to float32 while transposing it (once per tile, for every query), so a 1-byte corpus streams a quarter of
    /// the bytes; the query-block path widens the db once into scratch.</summary>
    public static void Run(ReadOnlySpan<float> query, ReadOnlySpan<byte> dbRaw, int kind, Span<long> index, Span<float> score, int queries,
        int n, int dim, int k, bool cosine, WorkerPool pool)
    {
        if (queries == 0 || k == 0) return;
        bool tiles = Vector512.IsHardwareAccelerated && (long)queries * k * pool.Workers <= TileHeapLimit;
        if (kind != DbElements.F32 && !tiles)
        {
            long count = (long)n * dim;
            var wide = _wide is { } w0 && w0.Length >= count ? w0 : (_wide = new float[count]);
            fixed (byte* raw = dbRaw) fixed (float* pw = wide) DbElements.Widen(raw, kind, 0, checked((int)count), pw);
            Run(query, new ReadOnlySpan<float>(wide, 0, (int)count), index, score, queries, n, dim, k, cosine, pool);
            return;
        }
        var db = kind == DbElements.F32 ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(dbRaw) : default;
        fixed (float* pq = query) fixed (float* pd = db) fixed (byte* praw = dbRaw) fixed (long* pi = index) fixed (float* ps = score)
        {
            var job = Job.Cached ??= new();
            job.Q = pq; job.Db = pd; job.Index = pi; job.Score = ps; job.Queries = queries; job.N = n; job.D = dim; job.K = k; job.Cosine
                = cosine;
            if (cosine)
            {
                if (job.InvNorm.Length < n) job.InvNorm = new float[n];
                if (kind == DbElements.F32)
                    for (int i = 0; i < n; i++) job.InvNorm[i] = 1f / MathF.Max(TensorPrimitives.Norm(db.Slice(i * dim, dim)), 1e-12f);
                else
                {
                    if (job.Row.Length < dim) job.Row = new float[dim];
                    fixed (float* row = job.Row)
                        for (int i = 0; i < n; i++)
                        {
                            DbElements.Widen(praw, kind, (long)i * dim, dim, row);
                            job.InvNorm[i] = 1f / MathF.Max(TensorPrimitives.Norm(new ReadOnlySpan<float>(row, dim)), 1e-12f);
                        }
                }
            }
            if (tiles)
            {
                RunTiles(pq, pd, praw, kind, index, score, queries, n, dim, k, cosine, pool, job.InvNorm);
                return;
            }
            // large k: fewer queries per block, so the heaps stay small
            job.QB = k <= 1024 ? QBlock : 4;
            pool.EnsureScratch(ref job.HeapS, (long)job.QB * k);
            pool.EnsureScratch(ref job.HeapP, (long)job.QB * k);
            pool.Run(job, (queries + job.QB - 1) / job.QB);
        }
    }

    private const int Tile = 32;

    // The db-tile path (AVX-512): work items are tiles of 32 db rows; a worker transposes its tile once into
    // [D][32] scratch (32 KB at D = 256: it stays in L1), then every query is scored against it eight at a time by
    // broadcasting query elements over the tile's 32 columns (16 register accumulators, 16 FMAs per 2 tile loads and
    // 8 broadcasts; no horizontal sums). Each worker keeps a
    // bounded heap per query for the rows it saw (in increasing order, so a candidate equal to the heap's worst already
    // loses the tie); the heaps are merged per query at the end. Memory: Q·k per worker, never a score row.
    private static void RunTiles(float* q, float* db, byte* raw, int kind, Span<long> index, Span<float> score, int queries, int n, int dim,
        int k, bool cosine, WorkerPool pool, float[] invNorm)
    {
        var job = TileJob.Cached ??= new();
        int w = pool.Workers;
        job.Raw = raw; job.Kind = kind;
        job.Q = q; job.Db = db; job.Queries = queries; job.N = n; job.D = dim; job.K = k; job.Cosine = cosine; job.InvNorm = invNorm;
        if (job.QScale.Length < queries) job.QScale = new float[queries];
        for (int i = 0; i < queries; i++)
            job.QScale[i] = cosine ? 1f / MathF.Max(TensorPrimitives.Norm(new ReadOnlySpan<float>(q + (long)i * dim, dim)), 1e-12f) : 1f;
        if (job.HS.Length < w)
        {
            job.HS = new float[w][]; job.HP = new int[w][]; job.Counts = new int[w][]; job.Worst
            = new float[w][]; job.TileT = new float[w][];
        }
        for (int i = 0; i < w; i++)
        {
            if (job.HS[i] is null || job.HS[i].Length < queries * k)
            {
                job.HS[i] = new float[queries * k]; job.HP[i]
                = new int[queries * k];
            }
            if (job.Counts[i] is null || job.Counts[i].Length < queries)
            {
                job.Counts[i] = new int[queries]; job.Worst[i]
                = new float[queries];
            }
            if (job.TileT[i] is null || job.TileT[i].Length < dim * (Tile + 1)) job.TileT[i] = new float[dim * (Tile + 1)];
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
        internal float* Q, Db; internal byte* Raw; internal int Kind; internal int Queries, N, D, K; internal bool Cosine;
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
                    if (r < nr && Kind != DbElements.F32)
                    {
                        // widen the row once (vectorized), then transpose it as an F32 row
                        float* wide = tt + (long)D * Tile;
                        DbElements.Widen(Raw, Kind, (long)(r0 + r) * D, D, wide);
                        for (int d = 0; d < D; d++) tt[d * Tile + r] = wide[d];
                    }
                    else if (r < nr) { float* src = Db + (long)(r0 + r) * D; for (int d = 0; d < D; d++) tt[d * Tile + r] = src[d]; }
                    else for (int d = 0; d < D; d++) tt[d * Tile + r] = 0;
                }
                float* sc = stackalloc float[8 * Tile];
                var hs = HS[worker]; var hp = HP[worker]; var counts = Counts[worker]; var worst = Worst[worker];
                for (int qa = 0; qa < Queries; qa += 8)
                {
                    int nq = Math.Min(8, Queries - qa);
                    Score8(Q + (long)qa * D, D, nq, tt, D, sc);
                    for (int a = 0; a < nq; a++)
                    {
                        int qi = qa + a;
                        float* row = sc + a * Tile;
                        float qs = QScale[qi];
                        if (nr == Tile)
                        {
                            var lo = Vector512.Load(row); var hi = Vector512.Load(row + 16);
                            if (Cosine)
                            {
                                fixed (float* inv = &InvNorm[r0])
                                {
                                    lo = lo * qs * Vector512.Load(inv); hi = hi * qs * Vector512.Load(inv + 16);
                                }
                                lo.Store(row); hi.Store(row + 16);
                            }
                            // a full heap drops a whole tile row at once when no score beats its worst entry
                            float wq = worst[qi];
                            if (!float.IsNaN(wq))
                            {
                                var wv = Vector512.Create(wq);
                                if ((Vector512.GreaterThan(lo, wv) | Vector512.GreaterThan(hi, wv)) == Vector512<float>.Zero) continue;
                            }
                        }
                        else if (Cosine)
                            for (int r = 0; r < nr; r++) row[r] = row[r] * qs * InvNorm[r0 + r];
                        for (int r = 0; r < nr; r++)
                        {
                            float s = row[r];
                            if (!(s > worst[qi]) && !float.IsNaN(worst[qi])) continue;
                            TopK.Offer(hs.AsSpan(qi * K, K), hp.AsSpan(qi * K, K), ref counts[qi], K, s, r0 + r);
                            if (counts[qi] == K) worst[qi] = hs[qi * K];
                        }
                    }
                }
            }
        }

        // sc[a·32 + r] = q_a · tile row r for the first nq of 8 queries (rows of the query block repeat when nq < 8)
        private static void Score8(float* q, int stride, int nq, float* tt, int dim, float* sc)
        {
            float* p0 = q, p1 = q + Math.Min(1, nq - 1) * stride, p2 = q + Math.Min(2, nq - 1) * stride, p3 = q + Math.Min(3,
                nq - 1) * stride;
            float* p4 = q + Math.Min(4, nq - 1) * stride, p5 = q + Math.Min(5, nq - 1) * stride, p6 = q + Math.Min(6, nq - 1) * stride,
                p7 = q + Math.Min(7, nq - 1) * stride;
            Vector512<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
            Vector512<float> a4 = default, b4 = default, a5 = default, b5 = default, a6 = default, b6 = default, a7 = default, b7 = default;
            for (int d = 0; d < dim; d++)
            {
                float* t = tt + d * Tile;
                var t0 = Vector512.Load(t); var t1 = Vector512.Load(t + 16);
                var x = Vector512.Create(p0[d]); a0 = Vector512.FusedMultiplyAdd(x, t0, a0); b0 = Vector512.FusedMultiplyAdd(x, t1, b0);
                x = Vector512.Create(p1[d]); a1 = Vector512.FusedMultiplyAdd(x, t0, a1); b1 = Vector512.FusedMultiplyAdd(x, t1, b1);
                x = Vector512.Create(p2[d]); a2 = Vector512.FusedMultiplyAdd(x, t0, a2); b2 = Vector512.FusedMultiplyAdd(x, t1, b2);
                x = Vector512.Create(p3[d]); a3 = Vector512.FusedMultiplyAdd(x, t0, a3); b3 = Vector512.FusedMultiplyAdd(x, t1, b3);
                x = Vector512.Create(p4[d]); a4 = Vector512.FusedMultiplyAdd(x, t0, a4); b4 = Vector512.FusedMultiplyAdd(x, t1, b4);
                x = Vector512.Create(p5[d]); a5 = Vector512.FusedMultiplyAdd(x, t0, a5); b5 = Vector512.FusedMultiplyAdd(x, t1, b5);
                x = Vector512.Create(p6[d]); a6 = Vector512.FusedMultiplyAdd(x, t0, a6); b6 = Vector512.FusedMultiplyAdd(x, t1, b6);
                x = Vector512.Create(p7[d]); a7 = Vector512.FusedMultiplyAdd(x, t0, a7); b7 = Vector512.FusedMultiplyAdd(x, t1, b7);
            }
            a0.Store(sc); b0.Store(sc + 16); a1.Store(sc + 32); b1.Store(sc + 48); a2.Store(sc + 64); b2.Store(sc + 80); a3.Store(sc
                + 96); b3.Store(sc + 112);
            a4.Store(sc + 128); b4.Store(sc + 144); a5.Store(sc + 160); b5.Store(sc + 176); a6.Store(sc + 192); b6.Store(sc
                + 208); a7.Store(sc + 224); b7.Store(sc + 240);
        }

    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* Q, Db, Score; internal long* Index; internal int Queries, N, D, K, QB; internal bool Cosine;
        internal float[] InvNorm = [], Row = [];
        internal float[]?[] HeapS = []; internal int[]?[] HeapP = [];

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
            var hs = HeapS[worker]!; var hp = HeapP[worker]!;
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
                    float* a0 = QRow(q0 + qi), a1 = QRow(q0 + Math.Min(qi + 1, nq - 1)), a2 = QRow(q0 + Math.Min(qi + 2, nq - 1)),
                        a3 = QRow(q0 + Math.Min(qi + 3, nq - 1));
                    int mi = Math.Min(4, nq - qi);
                    for (int ri = 0; ri < nr; ri += 4)
                    {
                        int rb = r0 + ri, mj = Math.Min(4, nr - ri);
                        DotTile.Dot4x4(a0, a1, a2, a3, DbRow(rb), DbRow(rb + Math.Min(1, mj - 1)), DbRow(rb + Math.Min(2, mj - 1)),
                            DbRow(rb + Math.Min(3, mj - 1)), D, t);
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
