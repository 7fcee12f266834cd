namespace PoolKernels.Kernels.Ragged;

/// <summary>
/// <c>segment_topk</c>, managed: segments are sorted independently (introsort of positions with a struct comparer,
/// O(n log n) per segment), in parallel over groups of segments. Per-worker position buffers are cached.
/// </summary>
public static unsafe class SegmentTopkSimd
{
    /// <summary>Runs on validated arguments (see <see cref="SegmentTopkReference"/>).</summary>
    public static void Run<TOff>(ReadOnlySpan<float> scores, ReadOnlySpan<TOff> offsets, ReadOnlySpan<long> outOffsets, Span<long> index,
        WorkerPool? pool = null) where TOff : unmanaged
    {
        int segs = offsets.Length - 1;
        if (segs <= 0) return;
        pool ??= WorkerPool.Shared;
        fixed (float* sc = scores) fixed (TOff* off = offsets) fixed (long* oo = outOffsets) fixed (long* ix = index)
        {
            var job = Job<TOff>.Cached ??= new();
            if (job.Buffers.Length < pool.Workers) Array.Resize(ref job.Buffers, pool.Workers);
            job.Scores = sc; job.Offsets = off; job.OutOffsets = oo; job.Index = ix; job.Segs = segs;
            job.PerItem = Math.Max(1, segs / (8 * pool.Workers));
            pool.Run(job, (segs + job.PerItem - 1) / job.PerItem);
            job.Scores = null;
        }
    }

    private readonly struct ByScore(float* scores) : IComparer<long>
    {
        public int Compare(long a, long b) => a == b ? 0 : SegmentTopkReference.Before(scores[a], a, scores[b], b) ? -1 : 1;
    }

    private sealed class Job<TOff> : IParallelJob where TOff : unmanaged
    {
        [ThreadStatic] internal static Job<TOff>? Cached;
        internal long[]?[] Buffers = [];
        internal float* Scores;
        internal TOff* Offsets;
        internal long* OutOffsets, Index;
        internal int Segs, PerItem;

        public void Execute(int item, int worker)
        {
            int s1 = Math.Min(Segs, (item + 1) * PerItem);
            for (int s = item * PerItem; s < s1; s++)
            {
                long a = Elements.ToInt64(Offsets[s]), b = Elements.ToInt64(Offsets[s + 1]);
                long keep = OutOffsets[s + 1] - OutOffsets[s];
                if (keep == 0) continue;
                int n = (int)(b - a);
                var buf = Buffers[worker];
                if (buf is null || buf.Length < n) Buffers[worker] = buf = new long[Math.Max(n, 64)];
                var span = buf.AsSpan(0, n);
                for (int i = 0; i < n; i++) span[i] = a + i;
                span.Sort(new ByScore(Scores));
                span[..(int)keep].CopyTo(new Span<long>(Index + OutOffsets[s], (int)keep));
            }
        }
    }
}
