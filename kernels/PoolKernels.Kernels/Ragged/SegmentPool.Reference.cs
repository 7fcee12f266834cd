namespace PoolKernels.Kernels.Ragged;

/// <summary>
/// <c>segment_pool</c> and <c>gather_segment_pool</c>, scalar reference: the oracle, in double. Segment s holds
/// the entries k in [offsets[s], offsets[s+1]); entry k is row index[k] of values (row k when index is empty)
/// times weights[k] (1 when weights is empty). mean divides by the entry count; an empty segment gives 0.
/// </summary>
internal static class SegmentPoolReference
{
    /// <summary>Runs on validated arguments; output is [S, dim].</summary>
    public static void Run<TOff, TIdx>(ReadOnlySpan<float> values, int dim, ReadOnlySpan<TIdx> index, ReadOnlySpan<float> weights,
        ReadOnlySpan<TOff> offsets, Span<float> output, SegmentPoolMode mode) where TOff : unmanaged where TIdx : unmanaged
    {
        int segs = offsets.Length - 1;
        for (int s = 0; s < segs; s++)
        {
            long a = Elements.ToInt64(offsets[s]), b = Elements.ToInt64(offsets[s + 1]);
            for (int d = 0; d < dim; d++)
            {
                double acc = mode switch
                {
                    SegmentPoolMode.Max => double.NegativeInfinity,
                    SegmentPoolMode.Min => double.PositiveInfinity,
                    _ => 0
                };
                for (long k = a; k < b; k++)
                {
                    long row = index.IsEmpty ? k : Elements.ToInt64(index[(int)k]);
                    double v = (double)values[(int)(row * dim + d)] * (weights.IsEmpty ? 1.0 : weights[(int)k]);
                    acc = mode switch { SegmentPoolMode.Max => Math.Max(acc, v), SegmentPoolMode.Min => Math.Min(acc, v), _ => acc + v };
                }
                if (b == a) acc = 0;
                else if (mode == SegmentPoolMode.Mean) acc /= b - a;
                output[s * dim + d] = (float)acc;
            }
        }
    }
}
