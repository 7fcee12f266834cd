using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PoolKernels.Kernels.Quantized;

/// <summary>A bounded "keep the k nearest" max-heap over (distance, row) pairs in caller-owned memory: the root is the
/// worst kept pair (largest distance, then largest row), so equal distances keep the lower row.</summary>
internal static unsafe class NearHeap
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool After(int da, int ra, int db, int rb) => da > db || (da == db && ra > rb);

    /// <summary>Offers (d, r) to the heap of capacity k holding count entries.</summary>
    public static void Offer(int* hd, int* hr, ref int count, int k, int d, int r)
    {
        int i;
        if (count < k)
        {
            i = count++;
            while (i > 0)
            {
                int p = (i - 1) >> 1;
                if (!After(d, r, hd[p], hr[p])) break;
                hd[i] = hd[p]; hr[i] = hr[p]; i = p;
            }
            hd[i] = d; hr[i] = r;
            return;
        }
        if (!After(hd[0], hr[0], d, r)) return;
        SiftDown(hd, hr, count, d, r);
    }

    private static void SiftDown(int* hd, int* hr, int n, int d, int r)
    {
        int i = 0;
        while (true)
        {
            int l = 2 * i + 1;
            if (l >= n) break;
            int c = l + 1 < n && After(hd[l + 1], hr[l + 1], hd[l], hr[l]) ? l + 1 : l;
            if (!After(hd[c], hr[c], d, r)) break;
            hd[i] = hd[c]; hr[i] = hr[c]; i = c;
        }
        hd[i] = d; hr[i] = r;
    }

    /// <summary>Sorts the count kept pairs nearest first, in place (heap sort).</summary>
    public static void Sort(int* hd, int* hr, int count)
    {
        for (int end = count - 1; end > 0; end--)
        {
            int d = hd[end], r = hr[end];
            hd[end] = hd[0]; hr[end] = hr[0];
            SiftDown(hd, hr, end, d, r);
        }
    }
}

/// <summary>
/// <c>hamming_topk</c>, managed. Queries are copied once into zero-padded 64-bit words; a db row is read as W/8 unaligned
/// 64-bit words plus one tail word (its last W mod 8 bytes), so every distance is a sum of <see cref="BitOperations.PopCount(ulong)"/>
/// (the popcnt instruction) over ceil(W/8) words. The register micro-kernel scores 2 db rows × 4 queries per pass (6 loads per
/// 8 popcounts), over a tile of db rows that stays in L1 while every query passes over it. Work items are db tiles, each worker
/// keeping a bounded heap per query (rows arrive in increasing order, so a row merely equal to the worst kept one is dropped at
/// once); the heaps are merged per query at the end (the order is total, so any split gives the same answer). When Q·k per
/// worker is large the work items are blocks of queries instead, each streaming the db. No Q×N distance matrix, memory O(Q·k)
/// per worker; allocation only when a call needs more scratch than any before it.
/// </summary>
internal static unsafe class HammingTopkSimd
{
    private const int QBlock = 32;

    /// <summary>Above this many heap entries (Q·k·workers) the query-block path runs. Settable so tests reach both paths.</summary>
    public static long TileHeapLimit { get; set; } = 1 << 22;

    /// <summary>Runs into index [Q,k] (long) and distance [Q,k] (int).</summary>
    public static void Run(ReadOnlySpan<byte> query, ReadOnlySpan<byte> db, Span<long> index, Span<int> distance, int queries, int n,
        int w, int k, WorkerPool pool)
    {
        fixed (byte* pq = query) fixed (byte* pd = db) fixed (long* pi = index) fixed (int* pdist = distance)
            Run(pq, pd, pi, pdist, queries, n, w, k, pool);
    }

    /// <summary>Pointer form (binary_search calls it with its packed queries and candidate scratch).</summary>
    public static void Run(byte* query, byte* db, long* index, int* distance, int queries, int n, int w, int k, WorkerPool pool)
    {
        if (queries == 0 || k == 0) return;
        var job = Job.Cached ??= new();
        int nf = w / 8, tail = w % 8, nw = nf + (tail > 0 ? 1 : 0);
        job.Db = db; job.N = n; job.W = w; job.Nf = nf; job.Tail = tail; job.Nw = nw; job.K = k; job.Queries = queries;
        job.Index = index; job.Distance = distance;
        job.TileRows = Math.Clamp(16384 / Math.Max(w, 1), 16, 1024) & ~1;
        if (job.QWords.Length < (long)(queries + 3) * nw) job.QWords = GC.AllocateUninitializedArray<ulong>((queries + 3) * nw,
            pinned: true);
        fixed (ulong* qw = job.QWords)
        {
            for (int q = 0; q < queries; q++)
            {
                byte* src = query + (long)q * w;
                for (int i = 0; i < nf; i++) qw[(long)q * nw + i] = Unsafe.ReadUnaligned<ulong>(src + 8 * i);
                if (tail > 0) qw[(long)q * nw + nf] = TailWord(src, w, tail);
            }
            job.QW = qw;
            int workers = pool.Workers;
            if ((long)queries * k * workers <= TileHeapLimit)
            {
                job.ByQueries = false;
                job.Ensure(workers, queries, k);
                for (int i = 0; i < workers; i++) new Span<int>(job.CountsPtr(i), queries).Clear();
                pool.Run(job, (n + job.TileRows - 1) / job.TileRows);
                job.Merge(workers);
            }
            else
            {
                job.ByQueries = true;
                job.Ensure(workers, QBlock, k);
                pool.Run(job, (queries + QBlock - 1) / QBlock);
            }
            job.QW = null;
        }
    }

    // the last `tail` bytes of a row as the low bytes of a word (the same for query and db rows, so XOR lines up)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong TailWord(byte* row, int w, int tail)
    {
        if (w >= 8) return Unsafe.ReadUnaligned<ulong>(row + w - 8) >> (8 * (8 - tail));
        ulong v = 0;
        for (int i = 0; i < tail; i++) v |= (ulong)row[i] << (8 * i);
        return v;
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal byte* Db; internal ulong* QW; internal long* Index; internal int* Distance;
        internal int N, W, Nf, Tail, Nw, K, Queries, TileRows; internal bool ByQueries;
        internal ulong[] QWords = [];
        // per worker: heap distances and rows [slots·k], counts and worst distance [slots]
        private int[][] _hd = [], _hr = [], _counts = [], _worst = [];
        private int[] _md = [], _mr = [];

        internal int* CountsPtr(int worker) => (int*)Unsafe.AsPointer(ref _counts[worker][0]);

        internal void Ensure(int workers, int slots, int k)
        {
            if (_hd.Length < workers)
            {
                Array.Resize(ref _hd, workers); Array.Resize(ref _hr, workers); Array.Resize(ref _counts,
                workers); Array.Resize(ref _worst, workers);
            }
            for (int i = 0; i < workers; i++)
            {
                if (_hd[i] is null || _hd[i].Length < (long)slots * k)
                {
                    _hd[i] = GC.AllocateUninitializedArray<int>(checked(slots * k), pinned: true);
                    _hr[i] = GC.AllocateUninitializedArray<int>(slots * k, pinned: true);
                }
                if (_counts[i] is null || _counts[i].Length < slots)
                {
                    _counts[i] = GC.AllocateUninitializedArray<int>(Math.Max(slots, 1), pinned: true);
                    _worst[i] = GC.AllocateUninitializedArray<int>(Math.Max(slots, 1), pinned: true);
                }
            }
            if (_md.Length < k)
            {
                _md = GC.AllocateUninitializedArray<int>(k,
                pinned: true); _mr = GC.AllocateUninitializedArray<int>(k, pinned: true);
            }
        }

        public void Execute(int item, int worker)
        {
            int* hd = (int*)Unsafe.AsPointer(ref _hd[worker][0]), hr = (int*)Unsafe.AsPointer(ref _hr[worker][0]);
            int* counts = (int*)Unsafe.AsPointer(ref _counts[worker][0]), worst = (int*)Unsafe.AsPointer(ref _worst[worker][0]);
            if (!ByQueries)
            {
                int r0 = item * TileRows, r1 = Math.Min(N, r0 + TileRows);
                SetWorst(counts, worst, hd, Queries);
                Tile(r0, r1, 0, Queries, hd, hr, counts, worst);
                return;
            }
            int q0 = item * QBlock, nq = Math.Min(QBlock, Queries - q0);
            new Span<int>(counts, nq).Clear();
            SetWorst(counts, worst, hd, nq);
            for (int r0 = 0; r0 < N; r0 += TileRows) Tile(r0, Math.Min(N, r0 + TileRows), q0, nq, hd, hr, counts, worst);
            for (int j = 0; j < nq; j++)
            {
                int* d = hd + (long)j * K, r = hr + (long)j * K;
                NearHeap.Sort(d, r, counts[j]);
                long o = (long)(q0 + j) * K;
                for (int e = 0; e < counts[j]; e++) { Index[o + e] = r[e]; Distance[o + e] = d[e]; }
            }
        }

        private void SetWorst(int* counts, int* worst, int* hd, int slots)
        {
            for (int j = 0; j < slots; j++) worst[j] = counts[j] == K ? hd[(long)j * K] : int.MaxValue;
        }

        // distances of rows [r0, r1) to queries [q0, q0 + nq); heap slot j belongs to query q0 + j
        private void Tile(int r0, int r1, int q0, int nq, int* hd, int* hr, int* counts, int* worst)
        {
            if (Avx512BW.IsSupported && W % 64 == 0) { Tile512(r0, r1, q0, nq, hd, hr, counts, worst); return; }
            int nf = Nf, nw = Nw;
            bool tail = Tail > 0;
            int* dd = stackalloc int[8];
            for (int r = r0; r < r1; r += 2)
            {
                int rb = Math.Min(r + 1, r1 - 1);
                byte* a = Db + (long)r * W, b = Db + (long)rb * W;
                ulong ta = tail ? TailWord(a, W, Tail) : 0, tb = tail ? TailWord(b, W, Tail) : 0;
                for (int qa = 0; qa < nq; qa += 4)
                {
                    int m = Math.Min(4, nq - qa);
                    ulong* p0 = QW + (long)(q0 + qa) * nw, p1 = QW + (long)(q0 + qa + Math.Min(1, m - 1)) * nw;
                    ulong* p2 = QW + (long)(q0 + qa + Math.Min(2, m - 1)) * nw, p3 = QW + (long)(q0 + qa + Math.Min(3, m - 1)) * nw;
                    int a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
                    for (int i = 0; i < nf; i++)
                    {
                        ulong x = Unsafe.ReadUnaligned<ulong>(a + 8 * i), y = Unsafe.ReadUnaligned<ulong>(b + 8 * i);
                        ulong w0 = p0[i], w1 = p1[i], w2 = p2[i], w3 = p3[i];
                        a0 += BitOperations.PopCount(x ^ w0); b0 += BitOperations.PopCount(y ^ w0);
                        a1 += BitOperations.PopCount(x ^ w1); b1 += BitOperations.PopCount(y ^ w1);
                        a2 += BitOperations.PopCount(x ^ w2); b2 += BitOperations.PopCount(y ^ w2);
                        a3 += BitOperations.PopCount(x ^ w3); b3 += BitOperations.PopCount(y ^ w3);
                    }
                    if (tail)
                    {
                        ulong w0 = p0[nf], w1 = p1[nf], w2 = p2[nf], w3 = p3[nf];
                        a0 += BitOperations.PopCount(ta ^ w0); b0 += BitOperations.PopCount(tb ^ w0);
                        a1 += BitOperations.PopCount(ta ^ w1); b1 += BitOperations.PopCount(tb ^ w1);
                        a2 += BitOperations.PopCount(ta ^ w2); b2 += BitOperations.PopCount(tb ^ w2);
                        a3 += BitOperations.PopCount(ta ^ w3); b3 += BitOperations.PopCount(tb ^ w3);
                    }
                    dd[0] = a0; dd[1] = a1; dd[2] = a2; dd[3] = a3; dd[4] = b0; dd[5] = b1; dd[6] = b2; dd[7] = b3;
                    bool two = rb != r;
                    for (int j = 0; j < m; j++)
                    {
                        int s = qa + j;
                        // rows come in increasing order: equal to the worst kept distance already loses the tie
                        if (dd[j] < worst[s]) Keep(s, dd[j], r, hd, hr, counts, worst);
                        if (two && dd[4 + j] < worst[s]) Keep(s, dd[4 + j], rb, hd, hr, counts, worst);
                    }
                }
            }
        }

        // rows of a multiple of 64 bytes, AVX-512BW: popcount of 64 bytes at a time by nibble lookup (vpshufb), byte counts
        // summed per row (vpsadbw); four queries share each db load. Integer counts: exactly the scalar path's distances.
        private void Tile512(int r0, int r1, int q0, int nq, int* hd, int* hr, int* counts, int* worst)
        {
            int nv = W / 64, nw = Nw;
            var lut = Vector512.Create((byte)0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
            var low = Vector512.Create((byte)0x0F);
            for (int qa = 0; qa < nq; qa += 4)
            {
                int m = Math.Min(4, nq - qa);
                byte* p0 = (byte*)(QW + (long)(q0 + qa) * nw), p1 = (byte*)(QW + (long)(q0 + qa + Math.Min(1, m - 1)) * nw);
                byte* p2 = (byte*)(QW + (long)(q0 + qa + Math.Min(2, m - 1)) * nw), p3 = (byte*)(QW + (long)(q0 + qa + Math.Min(3,
                    m - 1)) * nw);
                if (m == 1) { Rows512(r0, r1, qa, p0, nv, lut, low, hd, hr, counts, worst); continue; }
                for (int r = r0; r < r1; r++)
                {
                    byte* a = Db + (long)r * W;
                    Vector512<ulong> s0 = default, s1 = default, s2 = default, s3 = default;
                    for (int v0 = 0; v0 < nv; v0 += 31) // byte counts stay <= 8·31 before they are summed
                    {
                        Vector512<byte> c0 = default, c1 = default, c2 = default, c3 = default;
                        for (int v = v0; v < Math.Min(nv, v0 + 31); v++)
                        {
                            var x = Vector512.Load(a + 64L * v);
                            c0 += Pop(x ^ Vector512.Load(p0 + 64L * v), lut, low);
                            c1 += Pop(x ^ Vector512.Load(p1 + 64L * v), lut, low);
                            c2 += Pop(x ^ Vector512.Load(p2 + 64L * v), lut, low);
                            c3 += Pop(x ^ Vector512.Load(p3 + 64L * v), lut, low);
                        }
                        s0 += Avx512BW.SumAbsoluteDifferences(c0, Vector512<byte>.Zero).AsUInt64();
                        s1 += Avx512BW.SumAbsoluteDifferences(c1, Vector512<byte>.Zero).AsUInt64();
                        s2 += Avx512BW.SumAbsoluteDifferences(c2, Vector512<byte>.Zero).AsUInt64();
                        s3 += Avx512BW.SumAbsoluteDifferences(c3, Vector512<byte>.Zero).AsUInt64();
                    }
                    // rows come in increasing order: equal to the worst kept distance already loses the tie
                    int d0 = (int)Vector512.Sum(s0);
                    if (d0 < worst[qa]) Keep(qa, d0, r, hd, hr, counts, worst);
                    if (m > 1) { int d1 = (int)Vector512.Sum(s1); if (d1 < worst[qa + 1]) Keep(qa + 1, d1, r, hd, hr, counts, worst); }
                    if (m > 2) { int d2 = (int)Vector512.Sum(s2); if (d2 < worst[qa + 2]) Keep(qa + 2, d2, r, hd, hr, counts, worst); }
                    if (m > 3) { int d3 = (int)Vector512.Sum(s3); if (d3 < worst[qa + 3]) Keep(qa + 3, d3, r, hd, hr, counts, worst); }
                }
            }
        }

        // one query (the last of a block, or Q = 1): four db rows per pass share each query load
        private void Rows512(int r0, int r1, int slot, byte* q, int nv, Vector512<byte> lut, Vector512<byte> low, int* hd, int* hr,
            int* counts, int* worst)
        {
            int r = r0;
            for (; r + 4 <= r1; r += 4)
            {
                byte* a = Db + (long)r * W;
                Vector512<ulong> s0 = default, s1 = default, s2 = default, s3 = default;
                for (int v0 = 0; v0 < nv; v0 += 31)
                {
                    Vector512<byte> c0 = default, c1 = default, c2 = default, c3 = default;
                    for (int v = v0; v < Math.Min(nv, v0 + 31); v++)
                    {
                        var y = Vector512.Load(q + 64L * v);
                        c0 += Pop(y ^ Vector512.Load(a + 64L * v), lut, low);
                        c1 += Pop(y ^ Vector512.Load(a + W + 64L * v), lut, low);
                        c2 += Pop(y ^ Vector512.Load(a + 2L * W + 64L * v), lut, low);
                        c3 += Pop(y ^ Vector512.Load(a + 3L * W + 64L * v), lut, low);
                    }
                    s0 += Avx512BW.SumAbsoluteDifferences(c0, Vector512<byte>.Zero).AsUInt64();
                    s1 += Avx512BW.SumAbsoluteDifferences(c1, Vector512<byte>.Zero).AsUInt64();
                    s2 += Avx512BW.SumAbsoluteDifferences(c2, Vector512<byte>.Zero).AsUInt64();
                    s3 += Avx512BW.SumAbsoluteDifferences(c3, Vector512<byte>.Zero).AsUInt64();
                }
                int d0 = (int)Vector512.Sum(s0), d1 = (int)Vector512.Sum(s1), d2 = (int)Vector512.Sum(s2), d3 = (int)Vector512.Sum(s3);
                if (d0 < worst[slot]) Keep(slot, d0, r, hd, hr, counts, worst);
                if (d1 < worst[slot]) Keep(slot, d1, r + 1, hd, hr, counts, worst);
                if (d2 < worst[slot]) Keep(slot, d2, r + 2, hd, hr, counts, worst);
                if (d3 < worst[slot]) Keep(slot, d3, r + 3, hd, hr, counts, worst);
            }
            for (; r < r1; r++)
            {
                byte* a = Db + (long)r * W;
                Vector512<ulong> s0 = default;
                for (int v0 = 0; v0 < nv; v0 += 31)
                {
                    Vector512<byte> c0 = default;
                    for (int v = v0; v < Math.Min(nv, v0 + 31); v++) c0 += Pop(Vector512.Load(q + 64L * v) ^ Vector512.Load(a + 64L * v),
                        lut, low);
                    s0 += Avx512BW.SumAbsoluteDifferences(c0, Vector512<byte>.Zero).AsUInt64();
                }
                int d0 = (int)Vector512.Sum(s0);
                if (d0 < worst[slot]) Keep(slot, d0, r, hd, hr, counts, worst);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<byte> Pop(Vector512<byte> x, Vector512<byte> lut, Vector512<byte> low) =>
            Avx512BW.Shuffle(lut, x & low) + Avx512BW.Shuffle(lut, Vector512.ShiftRightLogical(x.AsUInt16(), 4).AsByte() & low);

        private void Keep(int s, int d, int r, int* hd, int* hr, int* counts, int* worst)
        {
            int* h = hd + (long)s * K, hrow = hr + (long)s * K;
            NearHeap.Offer(h, hrow, ref counts[s], K, d, r);
            if (counts[s] == K) worst[s] = h[0];
        }

        internal void Merge(int workers)
        {
            fixed (int* md = _md) fixed (int* mr = _mr)
                for (int q = 0; q < Queries; q++)
                {
                    int count = 0;
                    for (int i = 0; i < workers; i++)
                    {
                        int c = _counts[i][q];
                        for (int e = 0; e < c; e++) NearHeap.Offer(md, mr, ref count, K, _hd[i][(long)q * K + e], _hr[i][(long)q * K + e]);
                    }
                    NearHeap.Sort(md, mr, count);
                    long o = (long)q * K;
                    for (int e = 0; e < count; e++) { Index[o + e] = mr[e]; Distance[o + e] = md[e]; }
                }
        }
    }
}
