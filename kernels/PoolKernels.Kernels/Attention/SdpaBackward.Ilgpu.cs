using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>sdpa_backward</c> / <c>sdpa_varlen_backward</c>, ILGPU (ilgpu-cpu, opencl, cuda): the rules of
/// <see cref="SdpaBackwardReference"/> in float, two simple kernels with one thread per output row, so every sum has a
/// fixed order (no atomics, no shared memory): (1) <see cref="QueryKernel"/>, one thread per (sequence, query head,
/// query row): three passes over the row's allowed keys (online max/sum for lse; D = Σ_j P_ij·dO_i·v_j; dQ_i =
/// scale·Σ_j P_ij·(dP_ij - D)·k_j accumulated in its own row of d_q), keeping lse and D in temporaries [B·Hq·Tq];
/// (2) <see cref="KeyKernel"/>, one thread per (sequence, key/value head, key row): dK_j and dV_j over the group's query
/// heads in order, then the rows ascending, P recomputed from the kept lse. Memory O(T): no score matrix.
/// </summary>
internal static class SdpaBackwardIlgpu
{
    /// <summary>Where sequence b lives. For sdpa_varlen the offsets are device data (validated on the host when the call was
    /// made): each is clamped to the rows the tensors hold (<paramref name="nq"/> query rows, <paramref name="nk"/> key rows)
    /// and each length to the grid's longest sequence, so no thread reads or writes outside its views.</summary>
    private static void Sequence<TIdx, TIdxOp>(ArrayView<TIdx> cuQ, ArrayView<TIdx> cuK, in SdpaParams p, int b, long nq, long nk,
        out int tq, out int tk, out long qb, out long kb, out long vb, out long ob)
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        tq = p.Tq; tk = p.Tk;
        qb = p.QBatch * b; kb = p.KBatch * b; vb = p.VBatch * b; ob = p.OBatch * b;
        if (p.Varlen != 0)
        {
            long q0 = XMath.Clamp(default(TIdxOp).Get(cuQ[b]), 0L, nq), k0 = XMath.Clamp(default(TIdxOp).Get(cuK[b]), 0L, nk);
            tq = (int)XMath.Clamp(default(TIdxOp).Get(cuQ[b + 1]) - q0, 0L, XMath.Min((long)p.Tq, nq - q0));
            tk = (int)XMath.Clamp(default(TIdxOp).Get(cuK[b + 1]) - k0, 0L, XMath.Min((long)p.Tk, nk - k0));
            qb = q0 * p.QRow; kb = k0 * p.KRow; vb = k0 * p.VRow; ob = q0 * p.ORow;
        }
    }

    /// <summary>Rows of a packed [N, H, E] tensor from its view (unbounded when a row is empty: nothing of it is read).</summary>
    private static long Rows(long length, long row) => row > 0 ? length / row : long.MaxValue;

    /// <summary>scale·q_i·k_j + bias, or -inf when key_padding_mask or attn_mask forbids j (the range test is the caller's).</summary>
    private static float Score<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp>(ArrayView<TRaw> q, ArrayView<TRaw> k, ArrayView<TBRaw> attnMask,
        ArrayView<TMask> keyPadding, in SdpaParams p, int b, int h, int i, int j, int tk, long qr, long kr)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TBRaw : unmanaged where TBias : struct, IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
    {
        if (p.HasKeyPadding != 0 && !default(TMaskOp).Keep(keyPadding[(long)b * tk + j])) return float.NegativeInfinity;
        float bias = 0f;
        if (p.HasAttnMask != 0)
        {
            bias = default(TBias).ToFloat(attnMask[p.MaskBatch * b + p.MaskHead * h + (long)i * tk + j]);
            if (bias == float.NegativeInfinity) return bias;
        }
        float dot = 0f;
        for (int e = 0; e < p.E; e++) dot += default(TElem).ToFloat(q[qr + e]) * default(TElem).ToFloat(k[kr + e]);
        return p.Scale * dot + bias;
    }

    /// <summary>(1) one thread per (b, h, query row i) of the grid Batch·Hq·Tq: lse_i, D_i and the row dQ_i.</summary>
    [GpuKernel(typeof(float), typeof(F32Reader), typeof(byte), typeof(BoolBias), typeof(long), typeof(I64Mask), typeof(long),
        typeof(I64Index))]
    [GpuKernel(typeof(ushort), typeof(F16Reader), typeof(float), typeof(F32Reader), typeof(byte), typeof(U8Mask), typeof(int),
        typeof(I32Index))]
    [GpuKernel(typeof(ushort), typeof(Bf16Reader), typeof(ushort), typeof(F16Reader), typeof(int), typeof(I32Mask), typeof(long),
        typeof(I64Index))]
    public static void QueryKernel<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>(Index1D index, ArrayView<TRaw> q,
        ArrayView<TRaw> k, ArrayView<TRaw> v, ArrayView<TBRaw> attnMask, ArrayView<TMask> keyPadding, ArrayView<TIdx> cuQ,
        ArrayView<TIdx> cuK, ArrayView<float> dOut, ArrayView<float> dq, ArrayView<float> lse, ArrayView<float> dRow, SdpaParams p)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TBRaw : unmanaged where TBias : struct, IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        long idx = index;
        int i = (int)(idx % p.Tq), bh = (int)(idx / p.Tq), h = bh % p.Hq, b = bh / p.Hq, hk = h / (p.Hq / p.Hkv);
        long nq = XMath.Min(Rows(q.Length, p.QRow), Rows(dOut.Length, p.ORow));
        long nk = XMath.Min(Rows(k.Length, p.KRow), Rows(v.Length, p.VRow));
        Sequence<TIdx, TIdxOp>(cuQ, cuK, p, b, nq, nk, out int tq, out int tk, out long qb, out long kb, out long vb, out long ob);
        if (i >= tq) return;
        long qr = qb + p.QHead * h + p.QRow * i, or = ob + p.OHead * h + p.ORow * i;
        for (int e = 0; e < p.E; e++) dq[qr + e] = 0f;
        p.KeyRange(i, tq, tk, out int lo, out int hi);
        float m = float.NegativeInfinity, l = 0f;
        for (int j = lo; j <= hi; j++)
        {
            long kr = kb + p.KHead * hk + p.KRow * j;
            float s = Score<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp>(q, k, attnMask, keyPadding, p, b, h, i, j, tk, qr, kr);
            if (s == float.NegativeInfinity) continue;
            if (s > m) { l = l * XMath.Exp(m - s) + 1f; m = s; } // m = -inf: l = 0·0 + 1
            else l += XMath.Exp(s - m); // NaN lands here and poisons the row
        }
        if (!(l > 0f) && !float.IsNaN(l))
        {
            lse[idx] = float.NegativeInfinity; dRow[idx] = 0f;
            return;
        }
        float row = m + XMath.Log(l), d = 0f;
        for (int j = lo; j <= hi; j++)
        {
            long kr = kb + p.KHead * hk + p.KRow * j, vr = vb + p.VHead * hk + p.VRow * j;
            float s = Score<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp>(q, k, attnMask, keyPadding, p, b, h, i, j, tk, qr, kr);
            if (s == float.NegativeInfinity) continue;
            float dp = 0f;
            for (int e = 0; e < p.Ev; e++) dp += dOut[or + e] * default(TElem).ToFloat(v[vr + e]);
            d += XMath.Exp(s - row) * dp;
        }
        for (int j = lo; j <= hi; j++)
        {
            long kr = kb + p.KHead * hk + p.KRow * j, vr = vb + p.VHead * hk + p.VRow * j;
            float s = Score<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp>(q, k, attnMask, keyPadding, p, b, h, i, j, tk, qr, kr);
            if (s == float.NegativeInfinity) continue;
            float dp = 0f;
            for (int e = 0; e < p.Ev; e++) dp += dOut[or + e] * default(TElem).ToFloat(v[vr + e]);
            float ds = XMath.Exp(s - row) * (dp - d) * p.Scale;
            for (int e = 0; e < p.E; e++) dq[qr + e] += ds * default(TElem).ToFloat(k[kr + e]);
        }
        lse[idx] = row; dRow[idx] = d;
    }

    /// <summary>(2) one thread per (b, kv head hk, key row j) of the grid Batch·Hkv·Tk: the rows dK_j and dV_j.</summary>
    [GpuKernel(typeof(float), typeof(F32Reader), typeof(byte), typeof(BoolBias), typeof(long), typeof(I64Mask), typeof(long),
        typeof(I64Index))]
    [GpuKernel(typeof(ushort), typeof(F16Reader), typeof(float), typeof(F32Reader), typeof(byte), typeof(U8Mask), typeof(int),
        typeof(I32Index))]
    [GpuKernel(typeof(ushort), typeof(Bf16Reader), typeof(ushort), typeof(F16Reader), typeof(int), typeof(I32Mask), typeof(long),
        typeof(I64Index))]
    public static void KeyKernel<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>(Index1D index, ArrayView<TRaw> q,
        ArrayView<TRaw> k, ArrayView<TRaw> v, ArrayView<TBRaw> attnMask, ArrayView<TMask> keyPadding, ArrayView<TIdx> cuQ,
        ArrayView<TIdx> cuK, ArrayView<float> dOut, ArrayView<float> dk, ArrayView<float> dv, ArrayView<float> lse, ArrayView<float> dRow,
        SdpaParams p)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TBRaw : unmanaged where TBias : struct, IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        long idx = index;
        int j = (int)(idx % p.Tk), bhk = (int)(idx / p.Tk), hk = bhk % p.Hkv, b = bhk / p.Hkv, group = p.Hq / p.Hkv;
        long nq = XMath.Min(Rows(q.Length, p.QRow), Rows(dOut.Length, p.ORow));
        long nk = XMath.Min(Rows(k.Length, p.KRow), Rows(v.Length, p.VRow));
        Sequence<TIdx, TIdxOp>(cuQ, cuK, p, b, nq, nk, out int tq, out int tk, out long qb, out long kb, out long vb, out long ob);
        if (j >= tk) return;
        long kr = kb + p.KHead * hk + p.KRow * j, vr = vb + p.VHead * hk + p.VRow * j;
        for (int e = 0; e < p.E; e++) dk[kr + e] = 0f;
        for (int e = 0; e < p.Ev; e++) dv[vr + e] = 0f;
        for (int h = hk * group; h < (hk + 1) * group; h++)
            for (int i = 0; i < tq; i++)
            {
                p.KeyRange(i, tq, tk, out int lo, out int hi);
                if (j < lo || j > hi) continue;
                long stat = ((long)b * p.Hq + h) * p.Tq + i;
                float li = lse[stat];
                if (li == float.NegativeInfinity) continue;
                long qr = qb + p.QHead * h + p.QRow * i, or = ob + p.OHead * h + p.ORow * i;
                float s = Score<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp>(q, k, attnMask, keyPadding, p, b, h, i, j, tk, qr, kr);
                if (s == float.NegativeInfinity) continue;
                float pr = XMath.Exp(s - li), dp = 0f;
                for (int e = 0; e < p.Ev; e++)
                {
                    float g = dOut[or + e];
                    dp += g * default(TElem).ToFloat(v[vr + e]);
                    dv[vr + e] += pr * g;
                }
                float ds = pr * (dp - dRow[stat]) * p.Scale;
                for (int e = 0; e < p.E; e++) dk[kr + e] += ds * default(TElem).ToFloat(q[qr + e]);
            }
    }

    /// <summary>Enqueues both kernels on <paramref name="stream"/> (no synchronization); lse and d are temporaries of
    /// Batch·Hq·Tq floats (at least 1). The byte views are reinterpreted as the kernels' storage types.</summary>
    public static void Launch<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>(Accelerator accelerator, AcceleratorStream stream,
        ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> attnMask, ArrayView<byte> keyPadding,
        ArrayView<byte> cuQ, ArrayView<byte> cuK, ArrayView<float> dOut, ArrayView<float> dq, ArrayView<float> dk, ArrayView<float> dv,
        ArrayView<float> lse, ArrayView<float> d, SdpaParams p)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TBRaw : unmanaged where TBias : struct, IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        if (p.Hkv == 0) return;
        long rowsQ = (long)p.Batch * p.Hq * p.Tq, rowsK = (long)p.Batch * p.Hkv * p.Tk;
        if (rowsQ > 0)
        {
            var kq = KernelCache.Get(accelerator, QueryKernel<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<TRaw>, ArrayView<TRaw>, ArrayView<TRaw>, ArrayView<TBRaw>, ArrayView<TMask>,
                    ArrayView<TIdx>, ArrayView<TIdx>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SdpaParams>(
                    QueryKernel<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>));
            kq(stream, checked((int)rowsQ), q.Cast<TRaw>(), k.Cast<TRaw>(), v.Cast<TRaw>(), attnMask.Cast<TBRaw>(),
                keyPadding.Cast<TMask>(), cuQ.Cast<TIdx>(), cuK.Cast<TIdx>(), dOut, dq, lse, d, p);
        }
        if (rowsK > 0)
        {
            var kk = KernelCache.Get(accelerator, KeyKernel<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<TRaw>, ArrayView<TRaw>, ArrayView<TRaw>, ArrayView<TBRaw>, ArrayView<TMask>,
                    ArrayView<TIdx>, ArrayView<TIdx>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, SdpaParams>(KeyKernel<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>));
            kk(stream, checked((int)rowsK), q.Cast<TRaw>(), k.Cast<TRaw>(), v.Cast<TRaw>(), attnMask.Cast<TBRaw>(),
                keyPadding.Cast<TMask>(), cuQ.Cast<TIdx>(), cuK.Cast<TIdx>(), dOut, dk, dv, lse, d, p);
        }
    }
}

/// <summary>Signature of <see cref="SdpaBackwardIlgpu.Launch{TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp}"/> once its
/// types are closed.</summary>
internal delegate void SdpaBackwardLaunch(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> q, ArrayView<byte> k,
    ArrayView<byte> v, ArrayView<byte> attnMask, ArrayView<byte> keyPadding, ArrayView<byte> cuQ, ArrayView<byte> cuK,
    ArrayView<float> dOut, ArrayView<float> dq, ArrayView<float> dk, ArrayView<float> dv, ArrayView<float> lse, ArrayView<float> d,
        SdpaParams p);
