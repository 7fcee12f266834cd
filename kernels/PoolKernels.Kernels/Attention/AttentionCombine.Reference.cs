namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>attention_combine</c>, scalar reference (double): N partial attention results over disjoint key sets, per row r
/// (of R = B·Hq·Tq rows): lse = ln Σ_n e^{lse_n}, out = Σ_n e^{lse_n - lse}·out_n. A partial with lse_n = -inf weighs 0
/// whatever its out holds (it is skipped); every lse_n = -inf gives out 0 and lse -inf. Layout: outs [N, R, Ev], lses
/// [N, R]; out [R, Ev], lse [R].
/// </summary>
internal static class AttentionCombineReference
{
    /// <summary>Runs the operation. Arguments are assumed validated.</summary>
    public static void Run(ReadOnlySpan<float> outs, ReadOnlySpan<float> lses, Span<float> output, Span<float> lse, int n, int rows, int ev)
    {
        for (int r = 0; r < rows; r++)
        {
            double m = double.NegativeInfinity;
            for (int i = 0; i < n; i++) m = Math.Max(m, lses[i * rows + r]);
            if (double.IsNaN(m) || double.IsPositiveInfinity(m))
            {
                // e^{inf - inf} and NaN poison the row, as PyTorch's logsumexp-weighted sum does
                lse[r] = float.NaN;
                for (int d = 0; d < ev; d++) output[r * ev + d] = float.NaN;
                continue;
            }
            if (double.IsNegativeInfinity(m))
            {
                lse[r] = float.NegativeInfinity;
                for (int d = 0; d < ev; d++) output[r * ev + d] = 0f;
                continue;
            }
            double s = 0;
            for (int i = 0; i < n; i++)
            {
                double l = lses[i * rows + r];
                if (!double.IsNegativeInfinity(l)) s += Math.Exp(l - m);
            }
            for (int d = 0; d < ev; d++)
            {
                double acc = 0;
                for (int i = 0; i < n; i++)
                {
                    double l = lses[i * rows + r];
                    if (!double.IsNegativeInfinity(l)) acc += Math.Exp(l - m) * outs[(int)(((long)i * rows + r) * ev + d)];
                }
                output[r * ev + d] = (float)(acc / s);
            }
            lse[r] = (float)(m + Math.Log(s));
        }
    }
}
