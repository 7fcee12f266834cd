using ILGPU;
using ILGPU.Runtime;
using PoolKernels.Kernels.Retrieval;

namespace PoolKernels.Kernels.Quantized;

/// <summary>Parameters of the <see cref="HammingTopkIlgpu"/> kernels.</summary>
internal struct HammingParams
{
    /// <summary>db rows, bytes per row, how many to keep (1..N), distance bins (8W + 1).</summary>
    public int N, W, K, Bins;
    /// <summary>1 when W is a multiple of 4: rows are read as 32-bit words.</summary>
    public int Words4;
}

/// <summary>
/// <c>hamming_topk</c>, ILGPU, one group per query, streaming the db twice and materializing nothing per row. Distances are
/// integers in [0, 8W], so pass 1 builds the query's distance histogram in shared memory (atomic adds); one thread turns it
/// into bin start slots and finds the cut distance T (fewer than k rows nearer, at least k at most T). Pass 2 walks the db
/// in blocks of one row per thread, in index order: a row nearer than T, or at T while T's quota lasts, goes to slot
/// start[d] + (rows of its distance already placed) + (lower threads of the block with its distance), which is exactly
/// its rank by (distance, index); the pass stops once k rows are placed. Popcount is the hardware instruction
/// (<c>popc</c> on PTX) through <see cref="IntrinsicMath.BitOperations"/>. Rows wider than 1024 bytes (more bins than
/// shared memory holds) use k selection rounds instead, each finding the nearest row after the previous pick.
/// </summary>
internal static class HammingTopkIlgpu
{
    /// <summary>Most distance bins the histogram kernel holds (W &lt;= 1024 bytes): 32 KB of shared memory.</summary>
    public const int MaxBins = 8193;

    private static int Dist(ArrayView<byte> q, ArrayView<byte> db, ArrayView<uint> q4, ArrayView<uint> db4, long qo, long ro,
        HammingParams p)
    {
        int d = 0;
        if (p.Words4 != 0)
        {
            long qw = qo / 4, rw = ro / 4;
            for (int i = 0; i < p.W / 4; i++) d += IntrinsicMath.BitOperations.PopCount(q4[qw + i] ^ db4[rw + i]);
        }
        else
            for (int i = 0; i < p.W; i++) d += IntrinsicMath.BitOperations.PopCount((uint)(q[qo + i] ^ db[ro + i]));
        return d;
    }

    /// <summary>Histogram selection: grid = queries, group = a power of two &lt;= <see cref="GroupReduce.MaxGroup"/>.</summary>
    [GpuKernel]
    public static void HistogramKernel(ArrayView<byte> query, ArrayView<byte> db, ArrayView<uint> query4, ArrayView<uint> db4,
        ArrayView<long> outIndex, ArrayView<int> outDist, HammingParams p)
    {
        var hist = SharedMemory.Allocate<int>(MaxBins);
        var sd = SharedMemory.Allocate<int>(GroupReduce.MaxGroup);
        var info = SharedMemory.Allocate<int>(2);
        int q = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        long qo = (long)q * p.W, oo = (long)q * p.K;
        for (int b = tid; b < p.Bins; b += g) hist[b] = 0;
        Group.Barrier();
        for (int r = tid; r < p.N; r += g) Atomic.Add(ref hist[Dist(query, db, query4, db4, qo, (long)r * p.W, p)], 1);
        Group.Barrier();
        if (tid == 0)
        {
            int cum = 0, cut = p.Bins - 1;
            for (int b = 0; b < p.Bins; b++)
            {
                int c = hist[b];
                hist[b] = cum; // from here on: the next free slot of bin b
                if (cum + c >= p.K) { cut = b; break; }
                cum += c;
            }
            info[0] = cut; info[1] = 0;
        }
        Group.Barrier();
        int t = info[0];
        for (int start = 0; start < p.N; start += g)
        {
            int r = start + tid, d = -1;
            if (r < p.N)
            {
                d = Dist(query, db, query4, db4, qo, (long)r * p.W, p);
                if (d > t || (d == t && hist[t] >= p.K)) d = -1;
            }
            sd[tid] = d;
            Group.Barrier();
            if (d >= 0)
            {
                int rank = 0;
                for (int j = 0; j < tid; j++) if (sd[j] == d) rank++;
                int slot = hist[d] + rank;
                if (d < t || slot < p.K)
                {
                    outIndex[oo + slot] = r; outDist[oo + slot] = d;
                    Atomic.Add(ref info[1], 1);
                }
            }
            Group.Barrier();
            if (d >= 0) Atomic.Add(ref hist[d], 1);
            Group.Barrier();
            if (info[1] >= p.K) break;
        }
    }

    /// <summary>Selection rounds for wide rows: round t finds the nearest row after round t−1's pick in (distance, index) order.</summary>
    [GpuKernel]
    public static void RoundsKernel(ArrayView<byte> query, ArrayView<byte> db, ArrayView<uint> query4, ArrayView<uint> db4,
        ArrayView<long> outIndex, ArrayView<int> outDist, HammingParams p)
    {
        var sdist = SharedMemory.Allocate<int>(GroupReduce.MaxGroup);
        var srow = SharedMemory.Allocate<int>(GroupReduce.MaxGroup);
        int q = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        long qo = (long)q * p.W, oo = (long)q * p.K;
        int prevD = -1, prevR = -1;
        for (int t = 0; t < p.K; t++)
        {
            int bd = int.MaxValue, br = int.MaxValue;
            for (int r = tid; r < p.N; r += g)
            {
                int d = Dist(query, db, query4, db4, qo, (long)r * p.W, p);
                bool after = d > prevD || (d == prevD && r > prevR);
                if (after && (d < bd || (d == bd && r < br))) { bd = d; br = r; }
            }
            sdist[tid] = bd; srow[tid] = br;
            Group.Barrier();
            for (int h = g / 2; h > 0; h >>= 1)
            {
                if (tid < h && (sdist[tid + h] < sdist[tid] || (sdist[tid + h] == sdist[tid] && srow[tid + h] < srow[tid])))
                {
                    sdist[tid] = sdist[tid + h]; srow[tid] = srow[tid + h];
                }
                Group.Barrier();
            }
            prevD = sdist[0]; prevR = srow[0];
            if (tid == 0) { outIndex[oo + t] = prevR; outDist[oo + t] = prevD; }
            Group.Barrier();
        }
    }

    /// <summary>Runs into index [Q,k] and distance [Q,k]; <paramref name="dummy"/> is any small buffer (the word views when
    /// W is not a multiple of 4).</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> query, ArrayView<byte> db,
        ArrayView<long> index,
        ArrayView<int> distance, ArrayView<byte> dummy, int queries, int n, int w, int k)
    {
        if (queries == 0 || k == 0) return;
        var p = new HammingParams { N = n, W = w, K = k, Bins = 8 * w + 1, Words4 = w % 4 == 0 ? 1 : 0 };
        var q4 = p.Words4 != 0 ? query.Cast<uint>() : dummy.Cast<uint>();
        var d4 = p.Words4 != 0 ? db.Cast<uint>() : dummy.Cast<uint>();
        bool hist = p.Bins <= MaxBins;
        var kernel = KernelCache.Get(accelerator, hist ? (Delegate)HistogramKernel : RoundsKernel,
            a => a.LoadKernel<ArrayView<byte>, ArrayView<byte>, ArrayView<uint>, ArrayView<uint>, ArrayView<long>, ArrayView<int>,
                HammingParams>(
                hist ? HistogramKernel : RoundsKernel));
        kernel(stream, new KernelConfig(queries, GroupReduce.GroupSize(accelerator)), query, db, q4, d4, index, distance, p);
    }
}

/// <summary>
/// <c>binary_search</c>, ILGPU: the query bits are packed on the device (the quantize packing kernel, XOR 0x80 per byte
/// for an I8 db), <see cref="HammingTopkIlgpu"/> finds the min(N, k·multiplier) candidates, then either a rescoring kernel
/// (one thread per candidate: Σ_d ±query_d in float32, dimension order) and <see cref="SelectIlgpu"/> (tie ids = db rows)
/// keep the k best, or a copy kernel takes the first k candidates with score D − 2·distance.
/// </summary>
internal static class BinarySearchIlgpu
{
    /// <summary>Rescoring: scores[i] = Σ_d query[q,d]·(2·bit_d − 1) for candidate i of query q = i / c.</summary>
    [GpuKernel]
    public static void RescoreKernel(Index1D i, ArrayView<float> query, ArrayView<byte> db, ArrayView<long> cand, ArrayView<float> scores,
        int c, int dim, int w, int flip)
    {
        long q = i / c, r = cand[i];
        float s = 0;
        for (int d = 0; d < dim; d++)
        {
            int b = (db[r * w + d / 8] ^ flip) >> (7 - d % 8);
            float x = query[q * dim + d];
            s += (b & 1) != 0 ? x : -x;
        }
        scores[i] = s;
    }

    /// <summary>No rescoring: the first k of c candidates, score = D − 2·distance.</summary>
    [GpuKernel]
    public static void FirstKernel(Index1D i, ArrayView<long> cand, ArrayView<int> dist, ArrayView<long> index, ArrayView<float> score,
        int c, int k, int dim)
    {
        long q = i / k, j = i % k;
        index[i] = cand[q * c + j];
        score[i] = dim - 2 * dist[q * c + j];
    }

    /// <summary>Enqueues the whole search into index [Q,k] (long) and score [Q,k]; the packed queries, candidates and their
    /// scores live in temporaries of <paramref name="temp"/> bytes (the caller's scope frees them once the stream is idle).</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> query, ArrayView<byte> db, bool dbSigned,
        ArrayView<long> index, ArrayView<float> score, ArrayView<byte> dummy, int queries, int n, int dim, int k, int multiplier,
            bool rescore, Func<long, ArrayView<byte>> temp)
    {
        if (queries == 0 || k == 0) return;
        int w = (dim + 7) / 8;
        int c = (int)Math.Min(n, (long)k * multiplier);
        var packed = temp(Math.Max((long)queries * w, 8));
        var cand = temp(8L * queries * c).Cast<long>();
        var dist = temp(4L * queries * c).Cast<int>();
        QuantizeIlgpu.Launch(accelerator, stream, query, default, packed, queries, dim, pack: true, signed: dbSigned);
        HammingTopkIlgpu.Launch(accelerator, stream, packed.SubView(0, (long)queries * w), db, cand, dist, dummy, queries, n, w, c);
        if (!rescore)
        {
            var fk = KernelCache.Get(accelerator, FirstKernel,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<long>, ArrayView<int>, ArrayView<long>, ArrayView<float>, int, int,
                    int>(FirstKernel));
            fk(stream, queries * k, cand, dist, index, score, c, k, dim);
            return;
        }
        var scores = temp(4L * queries * c).Cast<float>();
        var rk = KernelCache.Get(accelerator, RescoreKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<byte>, ArrayView<long>, ArrayView<float>, int, int, int,
                int>(RescoreKernel));
        rk(stream, queries * c, query, db, cand, scores, c, dim, w, dbSigned ? 0x80 : 0);
        SelectIlgpu.Launch(accelerator, stream, queries, scores, cand, index, score, dummy.Cast<int>(),
            new SelectParams { L = c, K = k, HasIds = 1, IdsDiv = 1 });
    }
}
