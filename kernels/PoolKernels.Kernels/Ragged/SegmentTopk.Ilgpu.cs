using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Ragged;

/// <summary>
/// <c>segment_topk</c>, ILGPU, two exact and deterministic ways chosen by the longest segment:
/// <list type="bullet">
/// <item>short segments (all &lt;= <see cref="RankLimit"/>): one thread per entry finds its segment (binary search over
/// offsets) and its rank there by counting the entries that rank before it, and writes itself to
/// index[outOffsets[s] + rank] when rank &lt; keep_s; O(n_s) per entry, one launch.</item>
/// <item>otherwise a segmented merge sort, so one huge segment costs O(N log² N) like any other split: entries are
/// ordered by (segment, NaN first, score descending, lower index) — unique keys, so the order is total — with log₂N
/// bottom-up merge passes, one thread per entry each (its output position = its place in its run + the number of
/// entries of the partner run before it, by binary search); then the first keep_s of each segment are written.</item>
/// </list>
/// No shared memory, atomics or warp operations: portable to every ILGPU backend.
/// </summary>
internal static class SegmentTopkIlgpu
{
    /// <summary>Longest segment ranked by counting; longer ones go through the merge sort.</summary>
    public const int RankLimit = 32;

    private static bool Before(ArrayView<float> scores, ArrayView<int> seg, long a, long b)
    {
        int sa = seg[a], sb = seg[b];
        if (sa != sb) return sa < sb;
        float u = scores[a], v = scores[b];
        bool un = float.IsNaN(u), vn = float.IsNaN(v);
        if (un != vn) return un;
        if (!un && u != v) return u > v;
        return a < b;
    }

    /// <summary>seg[k] = the segment of entry k, order[k] = k; <paramref name="i"/> over N.</summary>
    [GpuKernel(typeof(long), typeof(I64Index))]
    [GpuKernel(typeof(int), typeof(I32Index))]
    public static void SegmentIdKernel<TOff, TOffOp>(Index1D i, ArrayView<TOff> offsets, ArrayView<int> seg, ArrayView<long> order,
        int segs)
        where TOff : unmanaged where TOffOp : struct, IIndexReader<TOff>
    {
        long k = i;
        int lo = 0, hi = segs - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            if (default(TOffOp).Get(offsets[mid]) <= k) lo = mid; else hi = mid - 1;
        }
        seg[k] = lo; order[k] = k;
    }

    /// <summary>One merge pass of runs of <paramref name="width"/>; <paramref name="i"/> over N.</summary>
    [GpuKernel]
    public static void MergePassKernel(Index1D i, ArrayView<float> scores, ArrayView<int> seg, ArrayView<long> src, ArrayView<long> dst,
        long width, long n)
    {
        long p = i;
        if (p >= n) return;
        long runStart = p / width * width;
        bool first = (p / width) % 2 == 0;
        long partner = first ? runStart + width : runStart - width;
        long plen = first ? (partner >= n ? 0 : (partner + width <= n ? width : n - partner)) : width;
        long e = src[p];
        long lo = 0, hi = plen; // number of partner entries before e
        while (lo < hi)
        {
            long mid = (lo + hi) >> 1;
            if (Before(scores, seg, src[partner + mid], e)) lo = mid + 1; else hi = mid;
        }
        long pairStart = first ? runStart : partner;
        dst[pairStart + (p - runStart) + lo] = e;
    }

    /// <summary>Writes the first keep_s sorted entries of each segment; <paramref name="i"/> over N sorted positions.</summary>
    [GpuKernel]
    public static void SelectKernel(Index1D i, ArrayView<long> sorted, ArrayView<int> seg, ArrayView<long> segStart,
        ArrayView<long> outOffsets, ArrayView<long> index)
    {
        long p = i;
        long e = sorted[p];
        int s = seg[e];
        long r = p - segStart[s];
        if (r < outOffsets[s + 1] - outOffsets[s]) index[outOffsets[s] + r] = e;
    }

    /// <summary>The ranking kernel; <paramref name="i"/> runs over N entries.</summary>
    [GpuKernel(typeof(long), typeof(I64Index))]
    [GpuKernel(typeof(int), typeof(I32Index))]
    public static void RankKernel<TOff, TOffOp>(Index1D i, ArrayView<float> scores, ArrayView<TOff> offsets, ArrayView<long> outOffsets,
        ArrayView<long> index, int segs) where TOff : unmanaged where TOffOp : struct, IIndexReader<TOff>
    {
        long k = i;
        // segment s: the last with offsets[s] <= k (empty segments before it share its start)
        int lo = 0, hi = segs - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            if (default(TOffOp).Get(offsets[mid]) <= k) lo = mid; else hi = mid - 1;
        }
        int s = lo;
        long a = default(TOffOp).Get(offsets[s]), b = default(TOffOp).Get(offsets[s + 1]);
        long keep = outOffsets[s + 1] - outOffsets[s];
        if (keep == 0) return;
        float v = scores[k];
        bool nan = float.IsNaN(v);
        long rank = 0;
        for (long j = a; j < b; j++)
        {
            float u = scores[j];
            bool un = float.IsNaN(u);
            bool before = un != nan ? un : (!un && u != v ? u > v : j < k);
            if (before) rank++;
        }
        if (rank < keep) index[outOffsets[s] + rank] = k;
    }

    /// <summary>Launches the ranking (short segments) or the merge sort over <paramref name="entries"/> entries;
    /// <paramref name="segStart"/> holds offsets[0..S) as I64 (used by the merge path). Enqueues only: the merge buffers come
    /// from <paramref name="temp"/> (bytes; the caller frees them once the stream is idle).</summary>
    public static void Launch<TOff, TOffOp>(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> scores,
        ArrayView<byte> offsets,
        ArrayView<long> outOffsets, ArrayView<long> index, int entries, int segs, long longest, ArrayView<long> segStart,
        Func<long, ArrayView<byte>> temp)
        where TOff : unmanaged where TOffOp : struct, IIndexReader<TOff>
    {
        if (entries == 0 || segs == 0) return;
        if (longest <= RankLimit)
        {
            var k = KernelCache.Get(accelerator, RankKernel<TOff, TOffOp>,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<TOff>, ArrayView<long>, ArrayView<long>,
                    int>(RankKernel<TOff, TOffOp>));
            k(stream, entries, scores, offsets.Cast<TOff>(), outOffsets, index, segs);
            return;
        }
        var ids = KernelCache.Get(accelerator, SegmentIdKernel<TOff, TOffOp>,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<TOff>, ArrayView<int>, ArrayView<long>, int>(SegmentIdKernel<TOff, TOffOp>));
        var merge = KernelCache.Get(accelerator, MergePassKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<long>, ArrayView<long>, long,
                long>(MergePassKernel));
        var select = KernelCache.Get(accelerator, SelectKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<long>, ArrayView<int>, ArrayView<long>, ArrayView<long>,
                ArrayView<long>>(SelectKernel));
        var seg = temp((long)entries * sizeof(int)).Cast<int>();
        ArrayView<long> src = temp((long)entries * sizeof(long)).Cast<long>(), dst = temp((long)entries * sizeof(long)).Cast<long>();
        ids(stream, entries, offsets.Cast<TOff>(), seg, src, segs);
        for (long w = 1; w < entries; w *= 2)
        {
            merge(stream, entries, scores, seg, src, dst, w, entries);
            (src, dst) = (dst, src);
        }
        select(stream, entries, src, seg, segStart, outOffsets, index);
    }
}

/// <summary>Signature of <see cref="SegmentTopkIlgpu.Launch{TOff, TOffOp}"/> once closed.</summary>
internal delegate void SegmentTopkLaunch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> scores,
    ArrayView<byte> offsets,
    ArrayView<long> outOffsets, ArrayView<long> index, int entries, int segs, long longest, ArrayView<long> segStart, Func<long,
        ArrayView<byte>> temp);
