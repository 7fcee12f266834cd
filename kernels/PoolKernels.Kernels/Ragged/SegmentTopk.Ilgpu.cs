using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Ragged;

/// <summary>
/// <c>segment_topk</c>, ILGPU: one thread per entry finds its segment (binary search over offsets) and its rank
/// there by counting the segment's entries that rank before it (NaN first, score descending, lower index first),
/// then writes itself to index[outOffsets[s] + rank] when rank &lt; keep_s. Ranks are distinct, so every slot is
/// written once and the result is exact and deterministic. O(n_s) per entry: meant for graph-sized segments
/// (HyperDrop pools graphs of up to a few thousand nodes); the simd backend sorts in O(n log n).
/// </summary>
public static class SegmentTopkIlgpu
{
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

    /// <summary>Launches the ranking over <paramref name="entries"/> entries.</summary>
    public static void Launch<TOff, TOffOp>(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> scores, ArrayView<byte> offsets,
        ArrayView<long> outOffsets, ArrayView<long> index, int entries, int segs) where TOff : unmanaged where TOffOp : struct, IIndexReader<TOff>
    {
        if (entries == 0 || segs == 0) return;
        var k = KernelCache.Get(accelerator, typeof(Action<SegmentItem, TOff, TOffOp, long>),
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<TOff>, ArrayView<long>, ArrayView<long>, int>(RankKernel<TOff, TOffOp>));
        k(stream, entries, scores, offsets.Cast<TOff>(), outOffsets, index, segs);
    }
}

/// <summary>Signature of <see cref="SegmentTopkIlgpu.Launch{TOff, TOffOp}"/> once closed.</summary>
public delegate void SegmentTopkLaunch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> scores, ArrayView<byte> offsets,
    ArrayView<long> outOffsets, ArrayView<long> index, int entries, int segs);
