using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Ragged;

/// <summary>Scalar parameters of the segment kernels.</summary>
internal struct SegmentPoolParams
{
    /// <summary>Feature width D.</summary>
    public int Dim;
    /// <summary><see cref="SegmentPoolMode"/> as int.</summary>
    public int Mode;
    /// <summary>1 when entries are gathered through index / weighted.</summary>
    public int HasIndex, HasWeights;
}

/// <summary>
/// <c>segment_pool</c> / <c>gather_segment_pool</c>, ILGPU. The host builds a <see cref="SegmentPlan"/> (it has
/// the offsets already, for validation), so the work is split by rows: one thread per (item, feature), neighbouring
/// threads reading neighbouring features of the same row (coalesced). Whole-segment items write finished rows;
/// pieces of long segments write partial rows that <see cref="FixupKernel"/> (one thread per (long segment,
/// feature), at most a few hundred pieces each) combines and finishes.
/// </summary>
internal static class SegmentPoolIlgpu
{
    /// <summary>The main pass; <paramref name="i"/> runs over items·Dim.</summary>
    [GpuKernel(typeof(long), typeof(I64Index), typeof(long), typeof(I64Index))]
    [GpuKernel(typeof(int), typeof(I32Index), typeof(int), typeof(I32Index))]
    public static void PassKernel<TOff, TOffOp, TIdx, TIdxOp>(Index1D i, ArrayView<SegmentItem> items, ArrayView<TOff> offsets,
        ArrayView<TIdx> index, ArrayView<float> weights, ArrayView<float> values, ArrayView<float> output, ArrayView<float> partials,
        SegmentPoolParams prm)
        where TOff : unmanaged where TOffOp : struct, IIndexReader<TOff>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        int item = i / prm.Dim, d = i % prm.Dim;
        if (item >= items.IntLength) return;
        var it = items[item];
        if (it.Slot >= 0)
        {
            partials[(long)it.Slot * prm.Dim + d] = Reduce<TIdx, TIdxOp>(index, weights, values, it.Start, it.End, d, prm);
            return;
        }
        for (int s = it.Seg0; s < it.Seg1; s++)
        {
            long a = default(TOffOp).Get(offsets[s]), b = default(TOffOp).Get(offsets[s + 1]);
            float v = 0;
            if (b > a)
            {
                v = Reduce<TIdx, TIdxOp>(index, weights, values, a, b, d, prm);
                if (prm.Mode == (int)SegmentPoolMode.Mean) v /= b - a;
            }
            output[(long)s * prm.Dim + d] = v;
        }
    }

    /// <summary>Combines the pieces of long segments; <paramref name="i"/> runs over longs·Dim.</summary>
    [GpuKernel(typeof(long), typeof(I64Index))]
    [GpuKernel(typeof(int), typeof(I32Index))]
    public static void FixupKernel<TOff, TOffOp>(Index1D i, ArrayView<LongSegment> longs, ArrayView<TOff> offsets,
        ArrayView<float> partials, ArrayView<float> output, SegmentPoolParams prm)
        where TOff : unmanaged where TOffOp : struct, IIndexReader<TOff>
    {
        int l = i / prm.Dim, d = i % prm.Dim;
        if (l >= longs.IntLength) return;
        var ls = longs[l];
        float acc = partials[(long)ls.Slot0 * prm.Dim + d];
        for (int p = 1; p < ls.Pieces; p++) acc = Combine(acc, partials[(long)(ls.Slot0 + p) * prm.Dim + d], prm.Mode);
        if (prm.Mode == (int)SegmentPoolMode.Mean)
            acc /= default(TOffOp).Get(offsets[ls.Seg + 1]) - default(TOffOp).Get(offsets[ls.Seg]);
        output[(long)ls.Seg * prm.Dim + d] = acc;
    }

    private static float Combine(float acc, float v, int mode) =>
        mode == (int)SegmentPoolMode.Max ? Numerics.MaxNaN(acc, v) : mode == (int)SegmentPoolMode.Min ? Numerics.MinNaN(acc, v) : acc + v;

    /// <summary>Raw reduction of feature d over entries [a, b), b &gt; a.</summary>
    private static float Reduce<TIdx, TIdxOp>(ArrayView<TIdx> index, ArrayView<float> weights, ArrayView<float> values, long a, long b,
        int d,
        SegmentPoolParams prm) where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        float acc = 0;
        for (long k = a; k < b; k++)
        {
            long row = prm.HasIndex != 0 ? default(TIdxOp).Get(index[k]) : k;
            float v = values[row * prm.Dim + d];
            if (prm.HasWeights != 0) v *= weights[k];
            acc = k == a ? v : Combine(acc, v, prm.Mode);
        }
        return acc;
    }

    /// <summary>Launches both kernels for a <paramref name="plan"/> built on the host from the validated offsets whose device
    /// bytes are <paramref name="offsets"/>; enqueues only. <paramref name="items"/> and <paramref name="longs"/> are the
    /// plan's items and long segments on the device, <paramref name="partials"/> a temporary of max(1, Slots·Dim) floats.</summary>
    public static void Launch<TOff, TOffOp, TIdx, TIdxOp>(Accelerator accelerator, AcceleratorStream stream, SegmentPlan plan,
        ArrayView<byte> offsets, ArrayView<byte> index, ArrayView<float> weights, ArrayView<float> values, ArrayView<float> output,
        SegmentPoolParams prm, ArrayView<SegmentItem> items, ArrayView<LongSegment> longs, ArrayView<float> partials)
        where TOff : unmanaged where TOffOp : struct, IIndexReader<TOff>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        if (plan.ItemCount == 0 || prm.Dim == 0) return;
        var pass = KernelCache.Get(accelerator, PassKernel<TOff, TOffOp, TIdx, TIdxOp>,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<SegmentItem>, ArrayView<TOff>, ArrayView<TIdx>, ArrayView<float>,
                ArrayView<float>,
                ArrayView<float>, ArrayView<float>, SegmentPoolParams>(PassKernel<TOff, TOffOp, TIdx, TIdxOp>));
        pass(stream, (int)((long)plan.ItemCount * prm.Dim), items, offsets.Cast<TOff>(), index.Cast<TIdx>(), weights, values, output,
            partials, prm);
        if (plan.LongCount > 0)
        {
            var fix = KernelCache.Get(accelerator, FixupKernel<TOff, TOffOp>,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<LongSegment>, ArrayView<TOff>, ArrayView<float>, ArrayView<float>,
                    SegmentPoolParams>(
                    FixupKernel<TOff, TOffOp>));
            fix(stream, plan.LongCount * prm.Dim, longs, offsets.Cast<TOff>(), partials, output, prm);
        }
    }
}

/// <summary>Signature of <see cref="SegmentPoolIlgpu.Launch{TOff, TOffOp, TIdx, TIdxOp}"/> once its types are closed.</summary>
internal delegate void SegmentPoolLaunch(Accelerator accelerator, AcceleratorStream stream, SegmentPlan plan, ArrayView<byte> offsets,
    ArrayView<byte> index, ArrayView<float> weights, ArrayView<float> values, ArrayView<float> output, SegmentPoolParams prm,
    ArrayView<SegmentItem> items, ArrayView<LongSegment> longs, ArrayView<float> partials);
