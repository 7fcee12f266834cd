using System.Runtime.CompilerServices;

namespace PoolKernels.Kernels.Attention;

/// <summary>Helpers shared by the managed <c>sdpa</c> kernels (reference and SIMD).</summary>
internal static unsafe class SdpaHost
{
    /// <summary>True when <typeparamref name="TBias"/> is an attn_mask element type: byte (BOOL/U8, nonzero = attend) or
    /// float/Half/BFloat16 (added to the scores; -inf = not allowed).</summary>
    public static bool IsBias<TBias>() => typeof(TBias) == typeof(byte) || typeof(TBias) == typeof(bool) || Elements.IsFloatInput<TBias>();

    /// <summary>The additive bias of one attn_mask element: a boolean false is -inf, true 0; a float is itself.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Bias<TBias>(TBias v)
    {
        if (typeof(TBias) == typeof(byte) || typeof(TBias) == typeof(bool))
            return Unsafe.As<TBias, byte>(ref v) != 0 ? 0f : float.NegativeInfinity;
        return Elements.ToFloat(v);
    }

    /// <summary>Where sequence b lives: its query/key counts and the element offsets of its (h = 0, row 0) in q, k, v,
    /// out and lse. For sdpa_varlen the offsets come from cu_seqlens (validated on the host).</summary>
    public static void Sequence<TIdx>(in SdpaParams p, ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK, int b,
        out int tq, out int tk, out long q, out long k, out long v, out long o, out long l) where TIdx : unmanaged
    {
        fixed (TIdx* cq = cuQ) fixed (TIdx* ck = cuK) Sequence(p, cq, ck, b, out tq, out tk, out q, out k, out v, out o, out l);
    }

    /// <summary><see cref="Sequence{TIdx}(in SdpaParams, ReadOnlySpan{TIdx}, ReadOnlySpan{TIdx}, int, out int, out int, out long,
    /// out long, out long, out long, out long)"/> over the kernels' pinned offsets (read only where the form needs them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Sequence<TIdx>(in SdpaParams p, TIdx* cuQ, TIdx* cuK, int b,
        out int tq, out int tk, out long q, out long k, out long v, out long o, out long l) where TIdx : unmanaged
    {
        if (p.Paged != 0)
        {
            tq = p.Tq; tk = (int)Elements.ToInt64(cuQ[b]); // cuQ = seq_lens; rows come from the block table (cuK)
            q = p.QBatch * b; k = 0; v = 0; o = p.OBatch * b; l = p.LBatch * b;
            return;
        }
        if (p.Varlen == 0)
        {
            tq = p.Tq; tk = p.Tk;
            q = p.QBatch * b; k = p.KBatch * b; v = p.VBatch * b; o = p.OBatch * b; l = p.LBatch * b;
            return;
        }
        long q0 = Elements.ToInt64(cuQ[b]), k0 = Elements.ToInt64(cuK[b]);
        tq = (int)(Elements.ToInt64(cuQ[b + 1]) - q0); tk = (int)(Elements.ToInt64(cuK[b + 1]) - k0);
        q = q0 * p.QRow; k = k0 * p.KRow; v = k0 * p.VRow; o = q0 * p.ORow; l = q0 * p.LRow;
    }
}

/// <summary>
/// <c>sdpa</c> / <c>sdpa_varlen</c>, scalar reference: the oracle. For every query row it visits only the keys that
/// causal and window bounds allow (<see cref="SdpaParams.KeyRange"/>), drops those that attn_mask (false or -inf) or
/// key_padding_mask (0) forbid, and runs an online softmax in double: running max m, sum s and Σ exp(x - m)·v rescaled
/// when m grows. Memory per row is O(Ev); no score matrix exists. A row with no allowed key gives out 0, lse -inf.
/// </summary>
internal static class SdpaReference
{
    /// <summary>Runs the operation. Arguments are assumed validated (see PoolKernels.Attention). mods is the modifier
    /// buffer: alibi_slopes from 0 (when p.HasAlibi), sinks from p.SinkBase (when p.HasSinks).</summary>
    public static void Run<T, TBias, TMask, TIdx>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<TBias> attnMask,
        ReadOnlySpan<TMask> keyPadding, ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK, ReadOnlySpan<float> mods, Span<float> output,
            Span<float> lse,
        in SdpaParams p) where TIdx : unmanaged
    {
        var acc = new double[p.Ev];
        if (p.Hkv == 0) return;
        int group = p.Group;
        for (int b = 0; b < p.Batch; b++)
        {
            SdpaHost.Sequence(p, cuQ, cuK, b, out int tq, out int tk, out long qb, out long kb, out long vb, out long ob, out long lb);
            for (int h = 0; h < p.Hq; h++)
            {
                int hk = h / group, o = p.Offset(tq, tk);
                double slope = p.HasAlibi != 0 ? mods[p.AlibiBatch * b + h] : 0;
                double sink = p.HasSinks != 0 ? mods[p.SinkBase + h] : double.NegativeInfinity;
                for (int i = 0; i < tq; i++)
                {
                    long qr = qb + p.QHead * h + p.QRow * i;
                    p.KeyRange(i, tq, tk, out int lo, out int hi);
                    double m = double.NegativeInfinity, s = 0;
                    Array.Clear(acc);
                    for (int j = lo; j <= hi; j++)
                    {
                        if (p.HasKeyPadding != 0 && !Elements.Keep(keyPadding[b * tk + j])) continue;
                        double bias = 0;
                        if (p.HasAttnMask != 0)
                        {
                            bias = SdpaHost.Bias(attnMask[(int)(p.MaskBatch * b + p.MaskHead * h + (long)i * tk + j)]);
                            if (double.IsNegativeInfinity(bias)) continue;
                        }
                        long jr = p.Paged != 0 ? p.PagedRow(Elements.ToInt64(cuK[b * p.TableStride + j / p.PageSize]), j) : j;
                        long kr = kb + p.KHead * hk + p.KRow * jr;
                        double dot = 0;
                        for (int e = 0; e < p.E; e++) dot += (double)Elements.ToFloat(q[(int)(qr + e)]) * Elements.ToFloat(k[(int)(kr
                            + e)]);
                        double x = (double)p.Scale * dot;
                        if (p.Softcap > 0) x = p.Softcap * Math.Tanh(x / p.Softcap);
                        x += bias - slope * Math.Abs((long)i + o - j);
                        // PyTorch's softmax: a score of -inf weighs exp(-inf - max) = 0 (a row of only -inf has no key,
                        // as when masked); +inf gives exp(inf - inf) = NaN for the whole row.
                        if (double.IsNegativeInfinity(x)) continue;
                        double w;
                        if (x > m)
                        {
                            double c = Math.Exp(m - x); // 0 when m = -inf
                            s *= c;
                            for (int d = 0; d < acc.Length; d++) acc[d] *= c;
                            m = x; w = double.IsPositiveInfinity(x) ? double.NaN : 1;
                        }
                        else w = Math.Exp(x - m); // NaN x lands here and poisons the row, as in PyTorch
                        s += w;
                        long vr = vb + p.VHead * hk + p.VRow * jr;
                        for (int d = 0; d < acc.Length; d++) acc[d] += w * Elements.ToFloat(v[(int)(vr + d)]);
                    }
                    long or = ob + p.OHead * h + p.ORow * i;
                    bool any = s > 0 || double.IsNaN(s);
                    if (p.HasSinks != 0)
                    {
                        // the sink joins the denominator: rescale to M = max(m, sink) so neither exponent overflows
                        double mm = any ? Math.Max(m, sink) : sink, c = any ? Math.Exp(m - mm) : 0;
                        double den = s * c + Math.Exp(sink - mm);
                        for (int d = 0; d < acc.Length; d++) output[(int)(or + d)] = any ? (float)(acc[d] * c / den) : 0f;
                        lse[(int)(lb + p.LHead * h + p.LRow * i)] = (float)(mm + Math.Log(den));
                        continue;
                    }
                    for (int d = 0; d < acc.Length; d++) output[(int)(or + d)] = any ? (float)(acc[d] / s) : 0f;
                    lse[(int)(lb + p.LHead * h + p.LRow * i)] = any ? (float)(m + Math.Log(s)) : float.NegativeInfinity;
                }
            }
        }
    }
}
