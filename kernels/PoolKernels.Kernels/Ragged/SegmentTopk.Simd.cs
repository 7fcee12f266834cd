namespace PoolKernels.Kernels.Ragged;

/// <summary>
/// <c>segment_topk</c>, managed: segments are sorted independently, in parallel over groups of segments. Each entry
/// becomes one 64-bit key — high half the score mapped to an unsigned integer whose ascending order is the op's order
/// (descending score, NaN first, -0 = +0), low half the position in the segment (ties to the lower index) — and the
/// keys are sorted as plain integers (Span&lt;ulong&gt;.Sort), with no comparer calls or score lookups. Per-worker key
/// buffers are cached. Sorting positions with a comparer that read both scores per comparison took twice as long
/// (poolkernels bench, segments of ~256, ratio 0.5: N = 65536 4.5 -> 2.9 ms, 1M 61 -> 30 ms, 4M 255 -> 119 ms). The
/// sort was then the cost (Span&lt;ulong&gt;.Sort ~39 ns per entry on 256-entry runs, one thread), so the kept keys are
/// first selected (quickselect, O(n)) and only they are sorted.
/// </summary>
internal static unsafe class SegmentTopkSimd
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

    /// <summary>The score as an unsigned key whose ascending order is descending score with NaN first (every NaN 0)
    /// and -0 equal to +0.</summary>
    internal static uint Key(float x)
    {
        if (float.IsNaN(x)) return 0;
        if (x == 0) x = 0; // -0 → +0
        uint u = BitConverter.SingleToUInt32Bits(x);
        u = (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u; // ascending order of x
        return ~u; // descending; NaN's 0 stays below (no number maps to 0: that would be the NaN 0x7FFFFFFF)
    }

    /// <summary>Reorders <paramref name="keys"/> so that its <paramref name="k"/> smallest come first, in any order
    /// (quickselect: Hoare partitions around a median of three, then the side holding position k; keys are distinct, as
    /// each holds its position).</summary>
    internal static void SelectSmallest(Span<ulong> keys, int k)
    {
        int lo = 0, hi = keys.Length - 1;
        while (hi - lo > 16)
        {
            int mid = lo + (hi - lo) / 2;
            if (keys[mid] < keys[lo]) (keys[mid], keys[lo]) = (keys[lo], keys[mid]);
            if (keys[hi] < keys[lo]) (keys[hi], keys[lo]) = (keys[lo], keys[hi]);
            if (keys[hi] < keys[mid]) (keys[hi], keys[mid]) = (keys[mid], keys[hi]);
            ulong pivot = keys[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (keys[i] < pivot) i++;
                while (keys[j] > pivot) j--;
                if (i <= j) { (keys[i], keys[j]) = (keys[j], keys[i]); i++; j--; }
            }
            // [lo, j] ≤ pivot ≤ [i, hi]; position k - 1 (the last kept) decides the side
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else return;
        }
        keys[lo..(hi + 1)].Sort(); // a short range: sorted whole, so its first k - lo are its smallest
    }

    private sealed class Job<TOff> : IParallelJob where TOff : unmanaged
    {
        [ThreadStatic] internal static Job<TOff>? Cached;
        internal ulong[]?[] Buffers = [];
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
                if (buf is null || buf.Length < n) Buffers[worker] = buf = new ulong[Math.Max(n, 64)];
                var keys = buf.AsSpan(0, n);
                float* sc = Scores + a;
                for (int i = 0; i < n; i++) keys[i] = (ulong)Key(sc[i]) << 32 | (uint)i;
                if (keep < n) SelectSmallest(keys, (int)keep); // the kept keys first (any order), then only they are sorted
                keys[..(int)keep].Sort();
                long* dst = Index + OutOffsets[s];
                for (int r = 0; r < keep; r++) dst[r] = a + (long)(keys[r] & 0xFFFFFFFFu);
            }
        }
    }
}
