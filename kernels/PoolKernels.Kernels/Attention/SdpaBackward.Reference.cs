namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>sdpa_backward</c> / <c>sdpa_varlen_backward</c>, scalar reference in double: the oracle. For every query row i of
/// head h it takes the allowed keys j (as <see cref="SdpaReference"/>: causal/window range, key_padding_mask, attn_mask
/// false or -inf), s_ij = scale·q_i·k_j + bias_ij, lse_i = ln Σ_j e^{s_ij}, P_ij = e^{s_ij - lse_i},
/// dP_ij = dO_i·v_j, D_i = Σ_j P_ij·dP_ij (= rowsum(dO_i ∘ O_i)), dS_ij = P_ij·(dP_ij - D_i), and accumulates
/// dQ_i += scale·dS_ij·k_j, dK_j += scale·dS_ij·q_i, dV_j += P_ij·dO_i (GQA: the key/value head of h). A row with no
/// allowed key contributes nothing. Memory O(T) per row; no score matrix exists.
/// </summary>
internal static class SdpaBackwardReference
{
    /// <summary>Runs the operation. Arguments are assumed validated; no score modifier is set in <paramref name="p"/>.
    /// d_out has out's strides, d_q/d_k/d_v those of q/k/v.</summary>
    public static void Run<T, TBias, TMask, TIdx>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<TBias> attnMask,
        ReadOnlySpan<TMask> keyPadding, ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK, ReadOnlySpan<float> dOut, Span<float> dq,
        Span<float> dk, Span<float> dv, in SdpaParams p) where TIdx : unmanaged
    {
        var gq = new double[dq.Length];
        var gk = new double[dk.Length];
        var gv = new double[dv.Length];
        if (p.Hkv != 0)
        {
            int group = p.Group;
            var s = new double[Math.Max(p.Tk, 0)];
            var dp = new double[Math.Max(p.Tk, 0)];
            for (int b = 0; b < p.Batch; b++)
            {
                SdpaHost.Sequence(p, cuQ, cuK, b, out int tq, out int tk, out long qb, out long kb, out long vb, out long ob, out _);
                for (int h = 0; h < p.Hq; h++)
                {
                    int hk = h / group;
                    for (int i = 0; i < tq; i++)
                    {
                        long qr = qb + p.QHead * h + p.QRow * i, or = ob + p.OHead * h + p.ORow * i;
                        p.KeyRange(i, tq, tk, out int lo, out int hi);
                        double m = double.NegativeInfinity;
                        for (int j = lo; j <= hi; j++)
                        {
                            s[j] = double.NegativeInfinity;
                            if (p.HasKeyPadding != 0 && !Elements.Keep(keyPadding[b * tk + j])) continue;
                            double bias = 0;
                            if (p.HasAttnMask != 0)
                            {
                                bias = SdpaHost.Bias(attnMask[(int)(p.MaskBatch * b + p.MaskHead * h + (long)i * tk + j)]);
                                if (double.IsNegativeInfinity(bias)) continue;
                            }
                            long kr = kb + p.KHead * hk + p.KRow * j;
                            double dot = 0;
                            for (int e = 0; e < p.E; e++)
                                dot += (double)Elements.ToFloat(q[(int)(qr + e)]) * Elements.ToFloat(k[(int)(kr + e)]);
                            s[j] = p.Scale * dot + bias;
                            if (!(s[j] <= m)) m = double.IsNaN(m) ? m : s[j];
                        }
                        if (double.IsNegativeInfinity(m)) continue; // no allowed key: d_q = 0, nothing to d_k, d_v
                        double sum = 0;
                        for (int j = lo; j <= hi; j++) sum += Math.Exp(s[j] - m);
                        double lse = m + Math.Log(sum), d = 0;
                        for (int j = lo; j <= hi; j++)
                        {
                            if (double.IsNegativeInfinity(s[j])) { s[j] = 0; continue; }
                            s[j] = Math.Exp(s[j] - lse); // P
                            long vr = vb + p.VHead * hk + p.VRow * j;
                            double x = 0;
                            for (int e = 0; e < p.Ev; e++) x += (double)dOut[(int)(or + e)] * Elements.ToFloat(v[(int)(vr + e)]);
                            dp[j] = x;
                            d += s[j] * x;
                        }
                        for (int j = lo; j <= hi; j++)
                        {
                            if (s[j] == 0) continue;
                            double ds = s[j] * (dp[j] - d) * p.Scale;
                            long kr = kb + p.KHead * hk + p.KRow * j, vr = vb + p.VHead * hk + p.VRow * j;
                            for (int e = 0; e < p.E; e++)
                            {
                                gq[qr + e] += ds * Elements.ToFloat(k[(int)(kr + e)]);
                                gk[kr + e] += ds * Elements.ToFloat(q[(int)(qr + e)]);
                            }
                            for (int e = 0; e < p.Ev; e++) gv[vr + e] += s[j] * dOut[(int)(or + e)];
                        }
                    }
                }
            }
        }
        for (int i = 0; i < dq.Length; i++) dq[i] = (float)gq[i];
        for (int i = 0; i < dk.Length; i++) dk[i] = (float)gk[i];
        for (int i = 0; i < dv.Length; i++) dv[i] = (float)gv[i];
    }
}
