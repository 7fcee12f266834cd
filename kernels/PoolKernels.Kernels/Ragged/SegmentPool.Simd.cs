using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Ragged;

/// <summary>
/// <c>segment_pool</c> / <c>gather_segment_pool</c>, managed SIMD. The work is split by rows through a
/// <see cref="SegmentPlan"/> (runs of short segments grouped, long segments cut into pieces), so one huge segment
/// beside many empty ones still uses every core. Each item streams its entries' rows once with TensorPrimitives
/// (Add / MultiplyAdd / Max / Min on whole rows), accumulating in float straight into the output row (or a
/// partial row for a piece); the caller then combines the pieces of long segments. Plan, partials and job are
/// cached per thread, so the steady state allocates nothing.
/// </summary>
internal static unsafe class SegmentPoolSimd
{
    /// <summary>The built-in floats per work item (the tunable <c>item</c>).</summary>
    public const int DefaultItemFloats = 32768;

    [ThreadStatic] private static SegmentPlan? t_plan;
    [ThreadStatic] private static float[]? t_partials;
    [ThreadStatic] private static float[]? t_scratch;

    /// <summary>Runs on validated arguments; output is [S, dim]. <paramref name="index"/> empty: entries are rows;
    /// <paramref name="weights"/> empty: weight 1. <paramref name="itemFloats"/>: the floats of values one work item streams
    /// (rows per item = max(1, itemFloats / dim)); any positive value is correct, the default is L2-sized.</summary>
    public static void Run<TOff, TIdx>(ReadOnlySpan<float> values, int dim, ReadOnlySpan<TIdx> index, ReadOnlySpan<float> weights,
        ReadOnlySpan<TOff> offsets, Span<float> output, SegmentPoolMode mode, WorkerPool? pool = null, int itemFloats = DefaultItemFloats)
        where TOff : unmanaged where TIdx : unmanaged
    {
        int segs = offsets.Length - 1;
        if (segs <= 0 || dim == 0) return;
        pool ??= WorkerPool.Shared;
        // Items of ~32K floats (L2-sized), at most 64 segments each; a long segment in at most 16 pieces per worker.
        long rowsPerItem = Math.Max(1, Math.Max(1, itemFloats) / dim);
        var plan = t_plan ??= new SegmentPlan();
        plan.Build(offsets, rowsPerItem, 64, 16 * pool.Workers);
        int partialLen = plan.Slots * dim, scratchLen = pool.Workers * dim;
        if ((t_partials?.Length ?? 0) < partialLen) t_partials = new float[partialLen];
        if ((t_scratch?.Length ?? 0) < scratchLen) t_scratch = new float[scratchLen];
        fixed (float* v = values) fixed (TIdx* ix = index) fixed (float* w = weights) fixed (TOff* off = offsets) fixed (float* o = output)
        fixed (float* part = t_partials) fixed (float* scr = t_scratch) fixed (SegmentItem* items = plan.Items)
        {
            var job = Job<TOff, TIdx>.Cached ??= new();
            job.Values = v; job.Index = index.IsEmpty ? null : ix; job.Weights = weights.IsEmpty ? null : w; job.Offsets = off;
            job.Out = o; job.Partials = part; job.Scratch = scr; job.Items = items; job.Dim = dim; job.Mode = mode;
            pool.Run(job, plan.ItemCount);
            for (int l = 0; l < plan.LongCount; l++)
            {
                var ls = plan.Longs[l];
                var dst = new Span<float>(o + (long)ls.Seg * dim, dim);
                new Span<float>(part + (long)ls.Slot0 * dim, dim).CopyTo(dst);
                for (int p = 1; p < ls.Pieces; p++) Combine(dst, new ReadOnlySpan<float>(part + (long)(ls.Slot0 + p) * dim, dim), mode);
                if (mode == SegmentPoolMode.Mean)
                    TensorPrimitives.Multiply(dst, (float)(1.0 / (Elements.ToInt64(off[ls.Seg + 1]) - Elements.ToInt64(off[ls.Seg]))), dst);
            }
            job.Values = null; job.Out = null;
        }
    }

    /// <summary>acc = Σ of <paramref name="count"/> (>= 1) contiguous rows. Blocks of 128 features stay in eight Vector512
    /// registers while the rows stream by, so the loop is one load and one add per 16 floats (the per-row call of
    /// TensorPrimitives.Add would store and reload the accumulator each row).</summary>
    internal static void SumRows(float* rows, long count, int dim, float* acc)
    {
        int d = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; d + 128 <= dim; d += 128)
            {
                float* p = rows + d;
                Vector512<float> a0 = Vector512.Load(p), a1 = Vector512.Load(p + 16), a2 = Vector512.Load(p + 32),
                    a3 = Vector512.Load(p + 48),
                    a4 = Vector512.Load(p + 64), a5 = Vector512.Load(p + 80), a6 = Vector512.Load(p + 96), a7 = Vector512.Load(p + 112);
                for (long k = 1; k < count; k++)
                {
                    p += dim;
                    a0 += Vector512.Load(p); a1 += Vector512.Load(p + 16); a2 += Vector512.Load(p + 32); a3 += Vector512.Load(p + 48);
                    a4 += Vector512.Load(p + 64); a5 += Vector512.Load(p + 80); a6 += Vector512.Load(p + 96); a7 += Vector512.Load(p + 112);
                }
                a0.Store(acc + d); a1.Store(acc + d + 16); a2.Store(acc + d + 32); a3.Store(acc + d + 48);
                a4.Store(acc + d + 64); a5.Store(acc + d + 80); a6.Store(acc + d + 96); a7.Store(acc + d + 112);
            }
            for (; d + 16 <= dim; d += 16)
            {
                float* p = rows + d;
                var a0 = Vector512.Load(p);
                for (long k = 1; k < count; k++) { p += dim; a0 += Vector512.Load(p); }
                a0.Store(acc + d);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; d + 32 <= dim; d += 32)
            {
                float* p = rows + d;
                Vector256<float> a0 = Vector256.Load(p), a1 = Vector256.Load(p + 8), a2 = Vector256.Load(p + 16),
                    a3 = Vector256.Load(p + 24);
                for (long k = 1; k < count; k++)
                {
                    p += dim;
                    a0 += Vector256.Load(p); a1 += Vector256.Load(p + 8); a2 += Vector256.Load(p + 16); a3 += Vector256.Load(p + 24);
                }
                a0.Store(acc + d); a1.Store(acc + d + 8); a2.Store(acc + d + 16); a3.Store(acc + d + 24);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            // NEON / SSE4: 32 features in eight Vector128 accumulators
            for (; d + 32 <= dim; d += 32)
            {
                float* p = rows + d;
                Vector128<float> a0 = Vector128.Load(p), a1 = Vector128.Load(p + 4), a2 = Vector128.Load(p + 8),
                    a3 = Vector128.Load(p + 12), a4 = Vector128.Load(p + 16), a5 = Vector128.Load(p + 20),
                    a6 = Vector128.Load(p + 24), a7 = Vector128.Load(p + 28);
                for (long k = 1; k < count; k++)
                {
                    p += dim;
                    a0 += Vector128.Load(p); a1 += Vector128.Load(p + 4); a2 += Vector128.Load(p + 8); a3 += Vector128.Load(p + 12);
                    a4 += Vector128.Load(p + 16); a5 += Vector128.Load(p + 20); a6 += Vector128.Load(p + 24); a7 += Vector128.Load(p + 28);
                }
                a0.Store(acc + d); a1.Store(acc + d + 4); a2.Store(acc + d + 8); a3.Store(acc + d + 12);
                a4.Store(acc + d + 16); a5.Store(acc + d + 20); a6.Store(acc + d + 24); a7.Store(acc + d + 28);
            }
        }
        for (; d < dim; d++)
        {
            float s = 0;
            for (long k = 0; k < count; k++) s += rows[k * dim + d];
            acc[d] = s;
        }
    }

    private static void Combine(Span<float> acc, ReadOnlySpan<float> x, SegmentPoolMode mode)
    {
        switch (mode)
        {
            case SegmentPoolMode.Max: TensorPrimitives.Max(acc, x, acc); break;
            case SegmentPoolMode.Min: TensorPrimitives.Min(acc, x, acc); break;
            default: TensorPrimitives.Add(acc, x, acc); break;
        }
    }

    private sealed class Job<TOff, TIdx> : IParallelJob where TOff : unmanaged where TIdx : unmanaged
    {
        [ThreadStatic] internal static Job<TOff, TIdx>? Cached;
        internal float* Values, Weights, Out, Partials, Scratch;
        internal TIdx* Index;
        internal TOff* Offsets;
        internal SegmentItem* Items;
        internal int Dim;
        internal SegmentPoolMode Mode;

        public void Execute(int item, int worker)
        {
            var it = Items[item];
            var tmp = new Span<float>(Scratch + (long)worker * Dim, Dim);
            if (it.Slot >= 0)
            {
                Reduce(new Span<float>(Partials + (long)it.Slot * Dim, Dim), it.Start, it.End, tmp);
                return;
            }
            for (int s = it.Seg0; s < it.Seg1; s++)
            {
                long a = Elements.ToInt64(Offsets[s]), b = Elements.ToInt64(Offsets[s + 1]);
                var dst = new Span<float>(Out + (long)s * Dim, Dim);
                if (a == b) { dst.Clear(); continue; }
                Reduce(dst, a, b, tmp);
                if (Mode == SegmentPoolMode.Mean) TensorPrimitives.Multiply(dst, (float)(1.0 / (b - a)), dst);
            }
        }

        /// <summary>acc = the raw reduction (no mean scaling) of entries [a, b), b &gt; a.</summary>
        private void Reduce(Span<float> acc, long a, long b, Span<float> tmp)
        {
            int dim = Dim;
            if (Index == null && Weights == null && Mode is SegmentPoolMode.Sum or SegmentPoolMode.Mean)
            {
                fixed (float* o = acc) SumRows(Values + a * dim, b - a, dim, o);
                return;
            }
            Row(a, dim, tmp).CopyTo(acc);
            for (long k = a + 1; k < b; k++)
            {
                float* row = Values + (Index == null ? k : Elements.ToInt64(Index[k])) * dim;
                var x = new ReadOnlySpan<float>(row, dim);
                if (Weights != null)
                {
                    if (Mode is SegmentPoolMode.Sum or SegmentPoolMode.Mean)
                    {
                        TensorPrimitives.MultiplyAdd(x, Weights[k], acc,
                        acc); continue;
                    }
                    TensorPrimitives.Multiply(x, Weights[k], tmp);
                    x = tmp;
                }
                Combine(acc, x, Mode);
            }
        }

        /// <summary>Entry k's weighted row (in <paramref name="tmp"/> when weighted).</summary>
        private ReadOnlySpan<float> Row(long k, int dim, Span<float> tmp)
        {
            var x = new ReadOnlySpan<float>(Values + (Index == null ? k : Elements.ToInt64(Index[k])) * dim, dim);
            if (Weights == null) return x;
            TensorPrimitives.Multiply(x, Weights[k], tmp);
            return tmp;
        }
    }
}
