using PoolKernels.Kernels;

namespace PoolKernels.Kernels.Sequence;

/// <summary>
/// <c>sequence_pool</c>, scalar reference: the oracle. Accumulates in double. For each batch row b,
/// V_b = the positions with mask != 0 in order, minus the first prefix_len[b]; each mode reduces
/// x[b, V_b, :]; the modes' vectors are concatenated, cut to <c>dims</c>, optionally L2-normalized.
/// An empty V_b gives zeros for every mode. GGeM: with p_groups [G] given, feature d of the gem block uses
/// p = p_groups[d / (D/G)] instead of p.
/// </summary>
internal static class SequencePoolReference
{
    /// <summary>Runs the operation; row b of the result starts at output[b·outStride] (default dims).
    /// Arguments are assumed validated (see PoolKernels.SequencePooling); <paramref name="pGroups"/> empty = plain GeM.</summary>
    public static void Run<T, TMask, TIdx>(ReadOnlySpan<T> hidden, ReadOnlySpan<TMask> mask, ReadOnlySpan<TIdx> prefixLen,
        Span<float> output, int batch, int seqLen, int dim, ReadOnlySpan<SequencePoolMode> modes, float p, float eps, int dims,
        bool normalize, int outStride = -1, ReadOnlySpan<float> pGroups = default)
    {
        if (outStride < 0) outStride = dims;
        var acc = new double[modes.Length * dim];
        for (int b = 0; b < batch; b++)
        {
            long skip = prefixLen.IsEmpty ? 0 : Elements.ToInt64(prefixLen[b]);
            var kept = new List<int>();
            long seen = 0;
            for (int t = 0; t < seqLen; t++)
                if (Elements.Keep(mask[b * seqLen + t]) && seen++ >= skip) kept.Add(t);

            Array.Clear(acc);
            if (kept.Count > 0)
            {
                for (int m = 0; m < modes.Length; m++)
                    for (int d = 0; d < dim; d++)
                        acc[m * dim + d] = Reduce(hidden, b, seqLen, dim, d, kept, modes[m],
                            pGroups.IsEmpty ? p : pGroups[d / (dim / pGroups.Length)], eps);
            }
            var row = output.Slice(b * outStride, dims);
            double norm = 0;
            for (int f = 0; f < dims; f++) norm += acc[f] * acc[f];
            double scale = normalize ? 1.0 / Math.Max(Math.Sqrt(norm), 1e-12) : 1.0;
            for (int f = 0; f < dims; f++) row[f] = (float)(acc[f] * scale);
        }
    }

    private static double Reduce<T>(ReadOnlySpan<T> x, int b, int seqLen, int dim, int d, List<int> kept, SequencePoolMode mode, float p,
        float eps)
    {
        switch (mode)
        {
            case SequencePoolMode.Cls: return At(x, b, seqLen, dim, d, kept[0]);
            case SequencePoolMode.LastToken: return At(x, b, seqLen, dim, d, kept[^1]);
            case SequencePoolMode.Max:
                double mx = double.NegativeInfinity;
                foreach (int t in kept) mx = Math.Max(mx, At(x, b, seqLen, dim, d, t));
                return mx;
            case SequencePoolMode.WeightedMean:
                double ws = 0, w = 0;
                foreach (int t in kept) { ws += (t + 1) * At(x, b, seqLen, dim, d, t); w += t + 1; }
                return ws / w;
            case SequencePoolMode.Gem:
                double g = 0;
                foreach (int t in kept) g += Math.Pow(Math.Max(At(x, b, seqLen, dim, d, t), eps), p);
                return Math.Pow(g / kept.Count, 1.0 / p);
            default:
                double s = 0;
                foreach (int t in kept) s += At(x, b, seqLen, dim, d, t);
                return mode == SequencePoolMode.Mean ? s / kept.Count : s / Math.Sqrt(kept.Count);
        }
    }

    private static double At<T>(ReadOnlySpan<T> x, int b, int seqLen, int dim, int d,
        int t) => Elements.ToFloat(x[(int)(((long)b * seqLen + t) * dim + d)]);
}
