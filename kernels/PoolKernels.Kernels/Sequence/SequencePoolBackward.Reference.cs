using System.Buffers.Binary;
using PoolKernels.Kernels.Spatial;

namespace PoolKernels.Kernels.Sequence;

/// <summary>
/// <c>sequence_pool_backward</c> (and <c>spatial_pool_backward</c>, the same math over cells), scalar reference: the
/// oracle, in double. For each (b, d) column the kept set V_b (mask != 0, minus the first prefix_len[b]) is reduced again
/// by every mode (the forward), the gradient of the row's normalization and truncation gives g = dL/dy for each mode's
/// feature, and that is routed back: cls / last_token to the first / last of V_b, max to the first maximal position
/// (NaN counts as maximal), mean g/|V|, mean_sqrt_len g/√|V|, weighted_mean g·(t+1)/Σ(t+1), gem
/// g·(max(x,eps)/y)^(p-1)/|V| where x >= eps (clamp_min's gradient) and dy/dp = y·(−ln A/p² + Σc^p ln c/(p·Σc^p)),
/// A = Σc^p/|V|. Positions outside V_b and empty sets get 0. Element (b, t, d) of x lives at
/// b·StrideB + t·StrideT + d·StrideD (sequence [B,T,D]; spatial NHWC = [B,HW,C]; NCHW strides (C·HW, 1, HW)).
/// </summary>
internal static class SequencePoolBackwardReference
{
    /// <summary>Runs the operation: dx has x's layout (fully written), dPGroups [G] when p_groups is given.
    /// <paramref name="mask"/>: raw mask bytes of MaskSize each (MaskSize 0 = every position kept); <paramref name="prefix"/>:
    /// raw I64/I32 of PrefixSize each (0 = none). Arguments are assumed validated.</summary>
    public static void Run<T>(ReadOnlySpan<T> x, ReadOnlySpan<byte> mask, ReadOnlySpan<byte> prefix, ReadOnlySpan<float> dOut,
        ReadOnlySpan<float> pGroups, Span<float> dx, Span<float> dPGroups, in PoolBackwardParams q)
    {
        int B = q.Batch, len = q.Len, D = q.Dim, M = q.ModeCount;
        var y = new double[M * D];
        var g = new double[M * D];
        var dp = new double[pGroups.Length];
        var kept = new List<int>();
        var col = new double[len];
        for (int b = 0; b < B; b++)
        {
            kept.Clear();
            long skip = Math.Max(0, PoolBackwardCommon.Prefix(prefix, q.PrefixSize, b)), seen = 0;
            for (int t = 0; t < len; t++)
                if ((q.MaskSize == 0 || MaskBytes.Keep(mask, q.MaskSize, (long)b * len + t)) && seen++ >= skip) kept.Add(t);
            for (int d = 0; d < D; d++)
                for (int m = 0; m < M; m++)
                    y[m * D + d] = kept.Count == 0 ? 0 : Forward(x, q, b, d, kept, PoolBackwardCommon.Mode(q, m), P(q, pGroups, d));
            // dL/dy of the truncated (and normalized) row
            Array.Clear(g);
            double norm = 0, dot = 0;
            for (int f = 0; f < q.Dims; f++) { norm += y[f] * y[f]; dot += y[f] * dOut[b * q.Dims + f]; }
            norm = Math.Sqrt(norm);
            for (int f = 0; f < q.Dims; f++)
            {
                double go = dOut[b * q.Dims + f];
                g[f] = q.Normalize == 0 ? go : norm > 1e-12 ? go / norm - y[f] * dot / (norm * norm * norm) : go / 1e-12;
            }
            for (int d = 0; d < D; d++)
            {
                Array.Clear(col);
                if (kept.Count != 0) Column(x, q, pGroups, b, d, kept, y, g, dp, col);
                for (int t = 0; t < len; t++) dx[(int)At(q, b, t, d)] = (float)col[t];
            }
        }
        for (int i = 0; i < dPGroups.Length; i++) dPGroups[i] = (float)dp[i];
    }

    /// <summary>Adds every mode's gradient for column (b, d) into col [T] (and gem's dy/dp into dp).</summary>
    private static void Column<T>(ReadOnlySpan<T> x, in PoolBackwardParams q, ReadOnlySpan<float> pGroups, int b, int d, List<int> kept,
        double[] y, double[] g, double[] dp, double[] col)
    {
        int D = q.Dim;
        double p = P(q, pGroups, d), n = kept.Count;
        for (int m = 0; m < q.ModeCount; m++)
        {
            if (m * D + d >= q.Dims) break;
            double gm = g[m * D + d];
            switch (PoolBackwardCommon.Mode(q, m))
            {
                case SequencePoolMode.Cls: Add(col, kept[0], gm); break;
                case SequencePoolMode.LastToken: Add(col, kept[^1], gm); break;
                case SequencePoolMode.Mean: foreach (int t in kept) Add(col, t, gm / n); break;
                case SequencePoolMode.MeanSqrtLen: foreach (int t in kept) Add(col, t, gm / Math.Sqrt(n)); break;
                case SequencePoolMode.WeightedMean:
                    double w = 0;
                    foreach (int t in kept) w += t + 1;
                    foreach (int t in kept) Add(col, t, gm * (t + 1) / w);
                    break;
                case SequencePoolMode.Max:
                    double mx = y[m * D + d];
                    foreach (int t in kept)
                    {
                        double v = X(x, q, b, t, d);
                        if (v == mx || (double.IsNaN(mx) && double.IsNaN(v))) { Add(col, t, gm); break; }
                    }
                    break;
                default:
                    double yg = y[m * D + d], s = 0, sl = 0;
                    foreach (int t in kept)
                    {
                        double v = X(x, q, b, t, d), c = Math.Max(v, q.Eps), cp = Math.Pow(c, p);
                        s += cp; sl += cp * Math.Log(c);
                        if (v >= q.Eps) Add(col, t, gm * Math.Pow(c / yg, p - 1) / n);
                    }
                    if (dp.Length != 0) dp[d / q.GroupSize] += gm * yg * (-Math.Log(s / n) / (p * p) + sl / (p * s));
                    break;
            }
        }
    }

    private static double P(in PoolBackwardParams q, ReadOnlySpan<float> pGroups, int d) =>
        pGroups.IsEmpty ? q.P : pGroups[d / q.GroupSize];

    private static double Forward<T>(ReadOnlySpan<T> x, in PoolBackwardParams q, int b, int d, List<int> kept, SequencePoolMode mode,
        double p)
    {
        switch (mode)
        {
            case SequencePoolMode.Cls: return X(x, q, b, kept[0], d);
            case SequencePoolMode.LastToken: return X(x, q, b, kept[^1], d);
            case SequencePoolMode.Max:
                double mx = double.NegativeInfinity;
                foreach (int t in kept) { double v = X(x, q, b, t, d); if (v > mx || double.IsNaN(v)) mx = double.IsNaN(mx) ? mx : v; }
                return mx;
            case SequencePoolMode.WeightedMean:
                double ws = 0, w = 0;
                foreach (int t in kept) { ws += (t + 1) * X(x, q, b, t, d); w += t + 1; }
                return ws / w;
            case SequencePoolMode.Gem:
                double s = 0;
                foreach (int t in kept) s += Math.Pow(Math.Max(X(x, q, b, t, d), q.Eps), p);
                return Math.Pow(s / kept.Count, 1.0 / p);
            default:
                double sum = 0;
                foreach (int t in kept) sum += X(x, q, b, t, d);
                return mode == SequencePoolMode.Mean ? sum / kept.Count : sum / Math.Sqrt(kept.Count);
        }
    }

    private static long At(in PoolBackwardParams q, int b, int t, int d) => b * q.StrideB + t * q.StrideT + d * q.StrideD;

    private static double X<T>(ReadOnlySpan<T> x, in PoolBackwardParams q, int b, int t, int d) => Elements.ToFloat(x[(int)At(q, b, t, d)]);

    private static void Add(double[] col, int t, double v) => col[t] += v;
}

/// <summary>Decoding shared by the three forms of the pooling backward kernels.</summary>
internal static class PoolBackwardCommon
{
    /// <summary>Mode <paramref name="m"/> of the packed list (4 bits each, first in the low bits).</summary>
    public static SequencePoolMode Mode(in PoolBackwardParams q, int m) => (SequencePoolMode)((q.Modes >> (4 * m)) & 15);

    /// <summary>prefix_len[b] from raw little-endian I64 (size 8) or I32 (size 4) bytes; 0 when size is 0.</summary>
    public static long Prefix(ReadOnlySpan<byte> prefix, int size, int b) => size switch
    {
        8 => BinaryPrimitives.ReadInt64LittleEndian(prefix.Slice(b * 8, 8)),
        4 => BinaryPrimitives.ReadInt32LittleEndian(prefix.Slice(b * 4, 4)),
        _ => 0,
    };
}
