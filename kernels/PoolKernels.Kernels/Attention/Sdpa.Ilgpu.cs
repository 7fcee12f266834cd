using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Attention;

/// <summary>attn_mask BOOL/U8 read as an additive bias inside a kernel: true (nonzero) 0, false -inf. The float mask
/// types use the ordinary <see cref="F32Reader"/>, <see cref="F16Reader"/>, <see cref="Bf16Reader"/>.</summary>
internal readonly struct BoolBias : IElementReader<byte>
{
    /// <inheritdoc/>
    public float ToFloat(byte raw) => raw != 0 ? 0f : float.NegativeInfinity;
}

/// <summary>
/// <c>sdpa</c> / <c>sdpa_varlen</c>, ILGPU (ilgpu-cpu, opencl, cuda): FlashAttention-2 style.
/// <para>One group per (sequence b, query head h, block of <see cref="SdpaParams.BlockQ"/> query rows). The group stages
/// its scaled Q block once, then walks only the key tiles that causal/window bounds leave for the block
/// (<see cref="SdpaParams.BlockKeyRange"/>; the others are skipped, not computed and discarded). Per tile of
/// <see cref="SdpaParams.BlockK"/> keys: K and V (widened to float) go to shared memory; every thread computes scores
/// S = q·k·scale + bias for (row, key) pairs, -inf where a mask forbids; one thread per row takes the row max, the
/// rescale factor α = exp(m_old - m_new), P = exp(S - m_new) and the running sum; then every thread updates its
/// (row, feature) entries of the accumulator O = α·O + P·V. The accumulator, running max and sum stay in shared
/// memory (the group size, 4 to 256, is not known at compile time, so per-thread register tiles cannot be fixed).
/// At the end out = O / sum, lse = m + ln(sum); a row that saw no allowed key writes 0 and -inf.</para>
/// <para>Shared memory is one block of at most <see cref="SharedFloats"/> floats (44 KB &lt; 48 KB): the host picks the largest
/// tiles (≤ 64×64) that fit E and Ev, so head dims up to 256, odd ones included, run on every backend. On CUDA and ilgpu-cpu the
/// block is dynamic and sized to the tiles (E = 64: 35 KB), leaving room for more resident groups; on OpenCL it is static
/// (<see cref="KernelStatic"/>).</para>
/// </summary>
internal static class SdpaIlgpu
{
    /// <summary>Floats of static shared memory per group (45056 bytes).</summary>
    public const int SharedFloats = 11264;

    /// <summary>Floats of shared memory a group needs for the tiles of <paramref name="p"/>.</summary>
    public static int SharedNeed(in SdpaParams p) =>
        p.BlockQ * p.E + p.BlockK * p.KStride + p.BlockK * p.Ev + p.BlockQ * p.BlockK + p.BlockQ * p.Ev + 3 * p.BlockQ;

    /// <summary>Picks BlockQ, BlockK and KStride for head dims e, ev so the staged tiles fit <see cref="SharedFloats"/>.</summary>
    public static void Tile(ref SdpaParams p)
    {
        int e = p.E, ev = p.Ev, ks = e % 2 == 0 ? e + 1 : e;
        int bq = 64, bk = 64;
        static long Need(int bq, int bk, int e, int ks, int ev) => (long)bq * e + (long)bk * ks + (long)bk * ev + (long)bq * bk
            + (long)bq * ev + 3L * bq;
        while (Need(bq, bk, e, ks, ev) > SharedFloats)
        {
            if (bk > 16 && bk >= bq) bk /= 2;
            else if (bq > 1) bq /= 2;
            else if (bk > 1) bk /= 2;
            else throw new ArgumentException($"Head dims E = {e}, Ev = {ev} do not fit the attention kernel's shared memory.", "q");
        }
        p.BlockQ = bq; p.BlockK = bk; p.KStride = ks;
        p.QBlocks = (p.Tq + bq - 1) / bq;
    }

    /// <summary>The kernel with dynamic shared memory of exactly <see cref="SharedNeed"/> floats (CUDA, ilgpu-cpu): Grid.IdxX runs
    /// over Batch·Hq·QBlocks.</summary>
    [GpuKernel(typeof(float), typeof(F32Reader), typeof(byte), typeof(BoolBias), typeof(long), typeof(I64Mask), typeof(long),
        typeof(I64Index))]
    [GpuKernel(typeof(ushort), typeof(F16Reader), typeof(float), typeof(F32Reader), typeof(byte), typeof(U8Mask), typeof(int),
        typeof(I32Index))]
    [GpuKernel(typeof(ushort), typeof(Bf16Reader), typeof(ushort), typeof(F16Reader), typeof(int), typeof(I32Mask), typeof(long),
        typeof(I64Index))]
    public static void Kernel<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>(ArrayView<TRaw> q, ArrayView<TRaw> k,
        ArrayView<TRaw> v,
        ArrayView<TBRaw> attnMask, ArrayView<TMask> keyPadding, ArrayView<TIdx> cuQ, ArrayView<TIdx> cuK, ArrayView<float> mods,
        ArrayView<float> output, ArrayView<float> lse, SdpaParams p)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TBRaw : unmanaged where TBias : struct, IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        Body<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>(q, k, v, attnMask, keyPadding, cuQ, cuK, mods, output, lse, p,
            SharedMemory.GetDynamic<float>());
    }

    /// <summary>The same kernel with a static <see cref="SharedFloats"/> block, for OpenCL (PoCL computed wrong results with ILGPU's
    /// dynamic local memory).</summary>
    [GpuKernel(typeof(float), typeof(F32Reader), typeof(byte), typeof(BoolBias), typeof(long), typeof(I64Mask), typeof(long),
        typeof(I64Index))]
    [GpuKernel(typeof(ushort), typeof(F16Reader), typeof(float), typeof(F32Reader), typeof(byte), typeof(U8Mask), typeof(int),
        typeof(I32Index))]
    [GpuKernel(typeof(ushort), typeof(Bf16Reader), typeof(ushort), typeof(F16Reader), typeof(int), typeof(I32Mask), typeof(long),
        typeof(I64Index))]
    public static void KernelStatic<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>(ArrayView<TRaw> q, ArrayView<TRaw> k,
        ArrayView<TRaw> v,
        ArrayView<TBRaw> attnMask, ArrayView<TMask> keyPadding, ArrayView<TIdx> cuQ, ArrayView<TIdx> cuK, ArrayView<float> mods,
        ArrayView<float> output, ArrayView<float> lse, SdpaParams p)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TBRaw : unmanaged where TBias : struct, IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        Body<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>(q, k, v, attnMask, keyPadding, cuQ, cuK, mods, output, lse, p,
            SharedMemory.Allocate<float>(SharedFloats));
    }

    private static void Body<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>(ArrayView<TRaw> q, ArrayView<TRaw> k,
        ArrayView<TRaw> v,
        ArrayView<TBRaw> attnMask, ArrayView<TMask> keyPadding, ArrayView<TIdx> cuQ, ArrayView<TIdx> cuK, ArrayView<float> mods,
        ArrayView<float> output, ArrayView<float> lse, SdpaParams p, ArrayView<float> sm)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TBRaw : unmanaged where TBias : struct, IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        int tid = Group.IdxX, g = Group.DimX;
        int blk = Grid.IdxX, qblk = blk % p.QBlocks, bh = blk / p.QBlocks, h = bh % p.Hq, b = bh / p.Hq;
        int hk = h / (p.Hq / p.Hkv);

        int tq = p.Tq, tk = p.Tk;
        long qb = p.QBatch * b, kb = p.KBatch * b, vb = p.VBatch * b, ob = p.OBatch * b, lb = p.LBatch * b;
        if (p.Paged != 0)
        {
            // cuQ = seq_lens, cuK = block_table; device-resident tables are not checked on the host: a length is clamped to
            // [0, maxPages·S] and a key whose page entry is not a page of the cache is skipped (never read)
            long len = default(TIdxOp).Get(cuQ[b]);
            tk = (int)XMath.Clamp(len, 0L, (long)p.TableStride * p.PageSize); kb = 0; vb = 0;
        }
        else if (p.Varlen != 0)
        {
            long q0 = default(TIdxOp).Get(cuQ[b]), k0 = default(TIdxOp).Get(cuK[b]);
            tq = (int)(default(TIdxOp).Get(cuQ[b + 1]) - q0); tk = (int)(default(TIdxOp).Get(cuK[b + 1]) - k0);
            qb = q0 * p.QRow; kb = k0 * p.KRow; vb = k0 * p.VRow; ob = q0 * p.ORow; lb = q0 * p.LRow;
        }
        int i0 = qblk * p.BlockQ;
        if (i0 >= tq) return; // uniform over the group
        int nr = XMath.Min(p.BlockQ, tq - i0);
        int e = p.E, ev = p.Ev, bk = p.BlockK, ks = p.KStride, bq = p.BlockQ, off = p.Offset(tq, tk);
        float slope = p.HasAlibi != 0 ? mods[p.AlibiBatch * b + h] : 0f, cap = p.Softcap;

        // shared layout: Q [bq·E] | K [bk·KStride] | V [bk·Ev] | S [bq·bk] | O [bq·Ev] | M [bq] | L [bq] | A [bq]
        int sQ = 0, sK = bq * e, sV = sK + bk * ks, sS = sV + bk * ev, sO = sS + bq * bk, sM = sO + bq * ev, sL = sM + bq, sA = sL + bq;

        long qBase = qb + p.QHead * h, kBase = kb + p.KHead * hk, vBase = vb + p.VHead * hk;
        for (int idx = tid; idx < nr * e; idx += g)
        {
            int r = idx / e, c = idx - r * e;
            sm[sQ + idx] = p.Scale * default(TElem).ToFloat(q[qBase + p.QRow * (i0 + r) + c]);
        }
        for (int idx = tid; idx < nr * ev; idx += g) sm[sO + idx] = 0f;
        for (int r = tid; r < nr; r += g) { sm[sM + r] = float.NegativeInfinity; sm[sL + r] = 0f; }
        Group.Barrier();

        p.BlockKeyRange(i0, i0 + nr - 1, tq, tk, out int kLo, out int kHi);
        for (int kt = kLo; kt <= kHi; kt += bk)
        {
            int nc = XMath.Min(bk, kHi + 1 - kt);
            for (int idx = tid; idx < nc * e; idx += g)
            {
                int c = idx / e, d = idx - c * e;
                long jr = p.Paged == 0 ? kt + c : XMath.Max(PagedRow<TIdx, TIdxOp>(cuK, p, b, kt + c), 0L);
                sm[sK + c * ks + d] = default(TElem).ToFloat(k[kBase + p.KRow * jr + d]);
            }
            for (int idx = tid; idx < nc * ev; idx += g)
            {
                int c = idx / ev, d = idx - c * ev;
                long jr = p.Paged == 0 ? kt + c : XMath.Max(PagedRow<TIdx, TIdxOp>(cuK, p, b, kt + c), 0L);
                sm[sV + idx] = default(TElem).ToFloat(v[vBase + p.VRow * jr + d]);
            }
            Group.Barrier();

            // scores, -inf where not allowed
            for (int idx = tid; idx < nr * bk; idx += g)
            {
                int r = idx / bk, c = idx - r * bk, i = i0 + r, j = kt + c;
                float s = float.NegativeInfinity;
                p.KeyRange(i, tq, tk, out int lo, out int hi);
                bool ok = c < nc && j >= lo && j <= hi;
                if (ok && p.HasKeyPadding != 0) ok = default(TMaskOp).Keep(keyPadding[(long)b * tk + j]);
                if (ok && p.Paged != 0) ok = PagedRow<TIdx, TIdxOp>(cuK, p, b, j) >= 0;
                float bias = 0f;
                if (ok && p.HasAttnMask != 0)
                {
                    bias = default(TBias).ToFloat(attnMask[p.MaskBatch * b + p.MaskHead * h + (long)i * tk + j]);
                    ok = bias != float.NegativeInfinity;
                }
                if (ok)
                {
                    float dot = 0f;
                    for (int d = 0; d < e; d++) dot += sm[sQ + r * e + d] * sm[sK + c * ks + d];
                    if (cap > 0f) // cap·tanh(dot/cap) as the SIMD kernel (Cephes tanhf: a polynomial near 0, exp(-2|y|) <= 1 beyond)
                    {
                        float y = dot / cap, a = XMath.Abs(y), t;
                        if (a < 0.625f)
                        {
                            float z = y * y;
                            t = ((((TanhConst.T0 * z + TanhConst.T1) * z + TanhConst.T2) * z + TanhConst.T3) * z + TanhConst.T4) * z * y
                                + y;
                        }
                        else
                        {
                            float ex = XMath.Exp(-2f * a);
                            t = (1f - ex) / (1f + ex);
                            if (y < 0f) t = -t;
                        }
                        dot = cap * t;
                    }
                    s = dot + bias;
                    if (p.HasAlibi != 0) s -= slope * XMath.Abs((float)((long)i + off - j));
                }
                sm[sS + idx] = s;
            }
            Group.Barrier();

            // online softmax statistics, one thread per row
            for (int r = tid; r < nr; r += g)
            {
                float mOld = sm[sM + r], mx = mOld;
                for (int c = 0; c < nc; c++) mx = Numerics.MaxNaN(mx, sm[sS + r * bk + c]);
                if (mx == float.NegativeInfinity)
                {
                    sm[sA + r] = 1f;
                    for (int c = 0; c < nc; c++) sm[sS + r * bk + c] = 0f;
                }
                else
                {
                    float alpha = XMath.Exp(mOld - mx), sum = 0f; // mOld = -inf gives 0
                    for (int c = 0; c < nc; c++)
                    {
                        float pv = XMath.Exp(sm[sS + r * bk + c] - mx);
                        sm[sS + r * bk + c] = pv;
                        sum += pv;
                    }
                    sm[sA + r] = alpha;
                    sm[sL + r] = sm[sL + r] * alpha + sum;
                    sm[sM + r] = mx;
                }
            }
            Group.Barrier();

            for (int idx = tid; idx < nr * ev; idx += g)
            {
                int r = idx / ev, d = idx - r * ev;
                float acc = sm[sO + idx] * sm[sA + r];
                for (int c = 0; c < nc; c++) acc += sm[sS + r * bk + c] * sm[sV + c * ev + d];
                sm[sO + idx] = acc;
            }
            Group.Barrier();
        }

        long oBase = ob + p.OHead * h;
        if (p.HasSinks != 0)
        {
            // the sink joins the denominator, rescaled to max(m, sink); a row without keys gives out 0, lse = sink
            float sink = mods[p.SinkBase + h];
            for (int idx = tid; idx < nr * ev; idx += g)
            {
                int r = idx / ev, d = idx - r * ev;
                float l = sm[sL + r], m = sm[sM + r];
                bool any = l > 0f || float.IsNaN(l);
                float mm = any ? XMath.Max(m, sink) : sink, c = any ? XMath.Exp(m - mm) : 0f;
                output[oBase + p.ORow * (i0 + r) + d] = any ? sm[sO + idx] * c / (l * c + XMath.Exp(sink - mm)) : 0f;
            }
            for (int r = tid; r < nr; r += g)
            {
                float l = sm[sL + r], m = sm[sM + r];
                bool any = l > 0f || float.IsNaN(l);
                float mm = any ? XMath.Max(m, sink) : sink, c = any ? XMath.Exp(m - mm) : 0f;
                lse[lb + p.LHead * h + p.LRow * (i0 + r)] = mm + XMath.Log(l * c + XMath.Exp(sink - mm));
            }
            return;
        }
        for (int idx = tid; idx < nr * ev; idx += g)
        {
            int r = idx / ev, d = idx - r * ev;
            float l = sm[sL + r];
            output[oBase + p.ORow * (i0 + r) + d] = l > 0f || float.IsNaN(l) ? sm[sO + idx] / l : 0f;
        }
        for (int r = tid; r < nr; r += g)
        {
            float l = sm[sL + r];
            lse[lb + p.LHead * h + p.LRow * (i0 + r)] = l > 0f || float.IsNaN(l) ? sm[sM + r] + XMath.Log(l) : float.NegativeInfinity;
        }
    }

    /// <summary>The cache row of key j of sequence b, or -1 when its block_table entry is not a page of the cache (such a key
    /// is skipped; its K/V tile rows read row 0, in bounds).</summary>
    private static long PagedRow<TIdx, TIdxOp>(ArrayView<TIdx> table, in SdpaParams p, int b, int j)
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        long entry = default(TIdxOp).Get(table[(long)b * p.TableStride + j / p.PageSize]);
        return entry >= 0 && entry < p.Pages ? p.PagedRow(entry, j) : -1;
    }

    /// <summary>Tiles, then launches <see cref="Kernel"/> on <paramref name="stream"/>; the byte views are reinterpreted as the
    /// kernel's storage types. <paramref name="p"/>.Tq must be the longest sequence (varlen).</summary>
    public static void Launch<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>(Accelerator accelerator, AcceleratorStream stream,
        ArrayView<byte> q, ArrayView<byte> k, ArrayView<byte> v, ArrayView<byte> attnMask, ArrayView<byte> keyPadding,
        ArrayView<byte> cuQ, ArrayView<byte> cuK, ArrayView<float> mods, ArrayView<float> output, ArrayView<float> lse, SdpaParams p)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TBRaw : unmanaged where TBias : struct, IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        if (p.Hkv == 0) return;
        Tile(ref p);
        long groups = (long)p.Batch * p.Hq * p.QBlocks;
        if (groups == 0) return;
        bool dynamic = accelerator.AcceleratorType != AcceleratorType.OpenCL;
        var kernel = KernelCache.Get(accelerator, dynamic ? Kernel<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>
            : KernelStatic<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>,
            a => a.LoadKernel<ArrayView<TRaw>, ArrayView<TRaw>, ArrayView<TRaw>, ArrayView<TBRaw>, ArrayView<TMask>, ArrayView<TIdx>,
                ArrayView<TIdx>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, SdpaParams>(dynamic ? Kernel<TRaw, TElem, TBRaw, TBias, TMask,
                    TMaskOp, TIdx, TIdxOp>
                    : KernelStatic<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp>));
        var config = dynamic
            ? new KernelConfig(new Index1D(checked((int)groups)), new Index1D(GroupReduce.GroupSize(accelerator, 128)),
                SharedMemoryConfig.RequestDynamic<float>(SharedNeed(p)))
            : new KernelConfig(checked((int)groups), GroupReduce.GroupSize(accelerator, 128));
        kernel(stream, config,
            q.Cast<TRaw>(), k.Cast<TRaw>(), v.Cast<TRaw>(), attnMask.Cast<TBRaw>(), keyPadding.Cast<TMask>(), cuQ.Cast<TIdx>(),
                cuK.Cast<TIdx>(), mods, output, lse, p);
    }
}

/// <summary>Signature of <see cref="SdpaIlgpu.Launch{TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, TIdx, TIdxOp}"/> once its types are
/// closed.</summary>
internal delegate void SdpaLaunch(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> q, ArrayView<byte> k,
    ArrayView<byte> v,
    ArrayView<byte> attnMask, ArrayView<byte> keyPadding, ArrayView<byte> cuQ, ArrayView<byte> cuK, ArrayView<float> mods,
        ArrayView<float> output,
    ArrayView<float> lse, SdpaParams p);
