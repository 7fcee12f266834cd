namespace PoolKernels.Kernels.Ragged;

/// <summary>
/// <c>segment_topk</c> (HyperDrop's per-graph selection), scalar reference: each segment's entries sorted by score
/// descending (NaN ranks above every number, as torch.sort), ties to the lower index; the first keep_s are written
/// at index[outOffsets[s] ..], as global positions. The keep counts (outOffsets) are computed by the caller.
/// </summary>
internal static class SegmentTopkReference
{
    /// <summary>True when entry a (score sa) ranks before entry b (score sb).</summary>
    public static bool Before(float sa, long a, float sb, long b)
    {
        bool na = float.IsNaN(sa), nb = float.IsNaN(sb);
        if (na != nb) return na;
        if (!na && sa != sb) return sa > sb;
        return a < b;
    }

    /// <summary>Runs on validated arguments.</summary>
    public static void Run<TOff>(ReadOnlySpan<float> scores, ReadOnlySpan<TOff> offsets, ReadOnlySpan<long> outOffsets,
        Span<long> index) where TOff : unmanaged
    {
        for (int s = 0; s + 1 < offsets.Length; s++)
        {
            long a = Elements.ToInt64(offsets[s]), b = Elements.ToInt64(offsets[s + 1]);
            var members = new List<long>();
            for (long k = a; k < b; k++) members.Add(k);
            var arr = members.ToArray();
            var keys = new float[arr.Length];
            for (int i = 0; i < arr.Length; i++) keys[i] = scores[(int)arr[i]];
            // insertion sort: the oracle favours obviousness over speed
            for (int i = 1; i < arr.Length; i++)
            {
                long k = arr[i]; float v = keys[i]; int j = i - 1;
                while (j >= 0 && Before(v, k, keys[j], arr[j])) { arr[j + 1] = arr[j]; keys[j + 1] = keys[j]; j--; }
                arr[j + 1] = k; keys[j + 1] = v;
            }
            long keep = outOffsets[s + 1] - outOffsets[s];
            for (long r = 0; r < keep; r++) index[(int)(outOffsets[s] + r)] = arr[r];
        }
    }
}
