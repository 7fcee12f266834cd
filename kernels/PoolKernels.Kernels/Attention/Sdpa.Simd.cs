using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Attention;

/// <summary>The few vector operations the attention micro-kernels need, over Vector512 or Vector256, as static abstract
/// members of a struct so each micro-kernel is written once and specialized (inlined) per width by the JIT.</summary>
internal unsafe interface IVec<TV> where TV : struct
{
    static abstract int Width { get; }
    static abstract TV Load(float* p);
    static abstract void Store(float* p, TV v);
    static abstract TV Broadcast(float x);
    static abstract TV Fma(TV a, TV b, TV c);
    static abstract TV Max(TV a, TV b);
    static abstract TV Sub(TV a, TV b);
    static abstract TV Add(TV a, TV b);
    static abstract float HMax(TV v);
    static abstract float HSum(TV v);
    /// <summary>e^x in float (Cephes expf: Cody-Waite reduction, degree-6 polynomial, ~2 ulp); x below -87.3 (and -inf)
    /// gives exactly 0, NaN stays NaN. For x &lt;= 0 only (softmax arguments), so no overflow handling.</summary>
    static abstract TV Exp(TV x);
}

/// <summary>Constants of the float exp shared by both widths.</summary>
internal static class ExpConst
{
    public const float Lo = -87.33654f, Log2E = 1.44269504088896341f, C1 = -0.693359375f, C2 = 2.12194440e-4f;
    public const float P0 = 1.9875691500E-4f, P1 = 1.3981999507E-3f, P2 = 8.3334519073E-3f, P3 = 4.1665795894E-2f, P4 = 1.6666665459E-1f, P5 = 5.0000001201E-1f;
}

internal unsafe struct V512 : IVec<Vector512<float>>
{
    public static int Width => 16;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector512<float> v) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Broadcast(float x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Sub(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float HMax(Vector512<float> v) => V256.HMax(Vector256.MaxNative(v.GetLower(), v.GetUpper()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float HSum(Vector512<float> v) => Vector512.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var lo = Vector512.Create(ExpConst.Lo);
        var under = Vector512.LessThan(x, lo);
        var xc = Vector512.ConditionalSelect(under, lo, x);
        var n = Vector512.Round(xc * ExpConst.Log2E);
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(ExpConst.C1), xc);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(ExpConst.C2), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(ExpConst.P0), r, Vector512.Create(ExpConst.P1));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpConst.P2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpConst.P3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpConst.P4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpConst.P5));
        var y = Vector512.FusedMultiplyAdd(p, r * r, r) + Vector512<float>.One;
        var pow = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        return Vector512.ConditionalSelect(under, Vector512<float>.Zero, y * pow);
    }
}

internal unsafe struct V256 : IVec<Vector256<float>>
{
    public static int Width => 8;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector256<float> v) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Broadcast(float x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Sub(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HMax(Vector256<float> v)
    {
        var m = Vector128.MaxNative(v.GetLower(), v.GetUpper());
        float r = m[0];
        for (int i = 1; i < 4; i++) r = MathF.Max(r, m[i]);
        return r;
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float HSum(Vector256<float> v) => Vector256.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var lo = Vector256.Create(ExpConst.Lo);
        var under = Vector256.LessThan(x, lo);
        var xc = Vector256.ConditionalSelect(under, lo, x);
        var n = Vector256.Round(xc * ExpConst.Log2E);
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(ExpConst.C1), xc);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(ExpConst.C2), r);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(ExpConst.P0), r, Vector256.Create(ExpConst.P1));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpConst.P2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpConst.P3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpConst.P4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpConst.P5));
        var y = Vector256.FusedMultiplyAdd(p, r * r, r) + Vector256<float>.One;
        var pow = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return Vector256.ConditionalSelect(under, Vector256<float>.Zero, y * pow);
    }
}

/// <summary>
/// <c>sdpa</c> / <c>sdpa_varlen</c>, managed SIMD: tiled online softmax (FlashAttention-2 on a CPU).
/// <para>Work items are (sequence b, key/value head, chunk of query blocks), spread over the <see cref="WorkerPool"/>. An
/// item first stages its key/value head once: Kᵀ in [E × BlockK] tiles (widened to float, transposed so that a score tile is a
/// broadcast-FMA GEMM) and V [Tk, Ev'] (Ev padded to two vectors), plus the key_padding_mask as a 0/-inf row. It then
/// serves every query head of the GQA group from them: per block of <see cref="BlockQ"/> query rows (scaled q staged once),
/// per tile of <see cref="BlockK"/> keys inside the block's causal/window key range (other tiles are skipped): S = Q·Kᵀ by a
/// 4-row × 2-vector register-blocked FMA micro-kernel, masks applied to S (bounds, padding row, attn_mask), row max, the
/// running max/sum rescale, a vectorized float exp fused with the row sum (<see cref="IVec{TV}.Exp"/>; TensorPrimitives.Exp
/// computes float exp through double and cost ~10% of the call), and O += P·V by a second
/// 4 × 2 micro-kernel. Vector512 where the hardware has it, else Vector256.</para>
/// <para>Memory: per worker O(Tk·(E + Ev) + BlockQ·(E + Ev + BlockK)) floats of scratch, kept between calls (pinned arrays
/// grown on demand), so a steady-state call allocates nothing and no Tq×Tk buffer exists.</para>
/// </summary>
public static unsafe class SdpaSimd
{
    /// <summary>Query rows per block (a multiple of 4, the micro-kernel's row count).</summary>
    public const int BlockQ = 64;
    /// <summary>Keys per tile (a multiple of two Vector512s).</summary>
    public const int BlockK = 64;

    /// <summary>Tests set this to run the Vector256 micro-kernels on AVX-512 hardware too.</summary>
    internal static bool ForceVector256;

    /// <summary>Runs the operation on <paramref name="pool"/> (default <see cref="WorkerPool.Shared"/>). Arguments are assumed validated.</summary>
    public static void Run<T, TBias, TMask, TIdx>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<TBias> attnMask,
        ReadOnlySpan<TMask> keyPadding, ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK, Span<float> output, Span<float> lse, in SdpaParams p, WorkerPool? pool = null)
        where T : unmanaged where TBias : unmanaged where TMask : unmanaged where TIdx : unmanaged
    {
        if (p.Hkv == 0 || p.Batch == 0 || p.Tq == 0) return;
        pool ??= WorkerPool.Shared;
        fixed (T* qp = q) fixed (T* kp = k) fixed (T* vp = v) fixed (TBias* mp = attnMask) fixed (TMask* pp = keyPadding)
        fixed (TIdx* cq = cuQ) fixed (TIdx* ck = cuK) fixed (float* op = output) fixed (float* lp = lse)
        {
            var job = Job<T, TBias, TMask, TIdx>.Cached ??= new();
            job.Q = qp; job.K = kp; job.V = vp; job.Mask = mp; job.KeyPadding = pp; job.CuQ = cq; job.CuK = ck; job.Out = op; job.Lse = lp; job.P = p;
            job.Wide = Vector512.IsHardwareAccelerated && !ForceVector256;
            int w = job.Wide ? 16 : 8;
            job.EvP = (p.Ev + 2 * w - 1) / (2 * w) * (2 * w);
            job.TkPad = (p.Tk + BlockK - 1) / BlockK * BlockK;
            // Enough items to keep every worker busy: split a head's query blocks into chunks when B·Hkv is small.
            int heads = p.Batch * p.Hkv, qBlocks = (p.Tq + BlockQ - 1) / BlockQ;
            job.Chunks = Math.Max(1, Math.Min(qBlocks, (2 * pool.Workers + heads - 1) / heads));
            if (job.Scratch is null || job.Scratch.Length < pool.Workers) job.Scratch = new float[pool.Workers][];
            pool.Run(job, heads * job.Chunks);
            job.Q = null; job.K = null; job.V = null; job.Out = null; job.Lse = null;
        }
    }

    private sealed class Job<T, TBias, TMask, TIdx> : IParallelJob where T : unmanaged where TBias : unmanaged where TMask : unmanaged where TIdx : unmanaged
    {
        [ThreadStatic] internal static Job<T, TBias, TMask, TIdx>? Cached;
        internal T* Q, K, V; internal TBias* Mask; internal TMask* KeyPadding; internal TIdx* CuQ, CuK; internal float* Out, Lse;
        internal SdpaParams P;
        internal int EvP, TkPad, Chunks;
        internal bool Wide;
        internal float[][]? Scratch;

        public void Execute(int item, int worker)
        {
            if (Wide) Execute<Vector512<float>, V512>(item, worker);
            else Execute<Vector256<float>, V256>(item, worker);
        }

        private void Execute<TV, TOps>(int item, int worker) where TV : struct where TOps : struct, IVec<TV>
        {
            ref readonly var p = ref P;
            int chunk = item % Chunks, bhk = item / Chunks, hk = bhk % p.Hkv, b = bhk / p.Hkv;
            int tq, tk; long qb, kb, vb, ob, lb;
            if (p.Varlen == 0)
            {
                tq = p.Tq; tk = p.Tk; qb = p.QBatch * b; kb = p.KBatch * b; vb = p.VBatch * b; ob = p.OBatch * b; lb = p.LBatch * b;
            }
            else
            {
                long q0 = Elements.ToInt64(CuQ[b]), k0 = Elements.ToInt64(CuK[b]);
                tq = (int)(Elements.ToInt64(CuQ[b + 1]) - q0); tk = (int)(Elements.ToInt64(CuK[b + 1]) - k0);
                qb = q0 * p.QRow; kb = k0 * p.KRow; vb = k0 * p.VRow; ob = q0 * p.ORow; lb = q0 * p.LRow;
            }
            int nb = (tq + BlockQ - 1) / BlockQ, blk0 = (int)((long)chunk * nb / Chunks), blk1 = (int)((long)(chunk + 1) * nb / Chunks);
            if (blk0 >= blk1) return;
            int e = p.E, ev = p.Ev, evp = EvP, tkp = TkPad;

            // scratch: KT [E·TkPad] | V [TkPad·EvP] | kp [TkPad] | Q [BQ·E] | S [BQ·BK] | O [BQ·EvP] | M [BQ] | L [BQ]
            long need = (long)e * tkp + (long)tkp * evp + tkp + BlockQ * (long)e + BlockQ * BlockK + BlockQ * (long)evp + 2 * BlockQ;
            var buf = Scratch![worker];
            if (buf is null || buf.Length < need) Scratch[worker] = buf = GC.AllocateUninitializedArray<float>((int)need, pinned: true);
            float* kt = (float*)Unsafe.AsPointer(ref buf[0]);
            float* vf = kt + (long)e * tkp, kpb = vf + (long)tkp * evp, qs = kpb + tkp, s = qs + BlockQ * e, o = s + BlockQ * BlockK;
            float* m = o + BlockQ * evp, l = m + BlockQ;

            // stage K (transposed), V (padded) and the padding row for this sequence and kv head
            // Kᵀ is stored tile-major: tile t is a contiguous [E × BlockK] block (key j at column j % BlockK), so the
            // micro-kernel streams 256-byte rows from one 16 KB block instead of rows TkPad apart, which alias in L1.
            T* kh = K + kb + p.KHead * hk;
            for (int j = 0; j < tk; j++)
            {
                T* row = kh + p.KRow * j;
                float* col = kt + (long)(j / BlockK) * e * BlockK + j % BlockK;
                for (int d = 0; d < e; d++) col[d * BlockK] = Elements.ToFloat(row[d]);
            }
            if (tk < tkp)
            {
                float* last = kt + (long)(tk / BlockK) * e * BlockK;
                for (int d = 0; d < e; d++) new Span<float>(last + d * BlockK + tk % BlockK, BlockK - tk % BlockK).Clear();
            }
            T* vh = V + vb + p.VHead * hk;
            for (int j = 0; j < tk; j++)
            {
                var dst = new Span<float>(vf + (long)j * evp, evp);
                Elements.AsFloats(new ReadOnlySpan<T>(vh + p.VRow * j, ev), dst).CopyTo(dst);
                dst[ev..].Clear();
            }
            if (p.HasKeyPadding != 0)
            {
                for (int j = 0; j < tk; j++) kpb[j] = Elements.Keep(KeyPadding[(long)b * tk + j]) ? 0f : float.NegativeInfinity;
                new Span<float>(kpb + tk, tkp - tk).Fill(float.NegativeInfinity); // so whole tiles can be added
            }

            int group = p.Hq / p.Hkv;
            for (int h = hk * group; h < (hk + 1) * group; h++)
            {
                T* qh = Q + qb + p.QHead * h;
                for (int blk = blk0; blk < blk1; blk++)
                {
                    int i0 = blk * BlockQ, nr = Math.Min(BlockQ, tq - i0), nrp = (nr + 3) & ~3;
                    for (int r = 0; r < nr; r++)
                    {
                        var dst = new Span<float>(qs + r * e, e);
                        var src = Elements.AsFloats(new ReadOnlySpan<T>(qh + p.QRow * (i0 + r), e), dst);
                        TensorPrimitives.Multiply(src, p.Scale, dst);
                    }
                    new Span<float>(qs + nr * e, (nrp - nr) * e).Clear();
                    new Span<float>(o, nrp * evp).Clear();
                    new Span<float>(m, nr).Fill(float.NegativeInfinity);
                    new Span<float>(l, nr).Clear();

                    p.BlockKeyRange(i0, i0 + nr - 1, tq, tk, out int kLo, out int kHi);
                    for (int t0 = kLo / BlockK * BlockK; t0 <= kHi; t0 += BlockK)
                    {
                        int nc = Math.Min(BlockK, kHi + 1 - t0);
                        for (int r = 0; r < nrp; r += 4)
                        {
                            float* ktile = kt + (long)t0 * e; // t0 is a multiple of BlockK: tile t0 / BlockK starts at t0·E
                            if (TOps.Width == 16) QkBlock4<TV, TOps>(qs + r * e, e, ktile, BlockK, s + r * BlockK, BlockK); // BlockK = 4 Vector512
                            else
                                for (int c = 0; c < BlockK; c += 2 * TOps.Width)
                                    QkBlock<TV, TOps>(qs + r * e, e, ktile + c, BlockK, s + r * BlockK + c, BlockK);
                        }
                        if (TOps.Width == 16) SoftmaxTile512(s, nr, i0, t0, nc, b, h, tq, tk, kpb, m, l, o, evp);
                        else
                        {
                            for (int r = 0; r < nr; r++) MaskRow<TV, TOps>(s + r * BlockK, nc, i0 + r, t0, b, h, tq, tk, kpb);
                            // online softmax: per row max and rescale, then one exp over the tile
                            for (int r = 0; r < nr; r++)
                            {
                                float* row = s + r * BlockK;
                                var mx = TOps.Load(row);
                                for (int c = TOps.Width; c < BlockK; c += TOps.Width) mx = TOps.Max(mx, TOps.Load(row + c));
                                float rowMax = TOps.HMax(mx), mOld = m[r];
                                float mNew = float.IsNaN(rowMax) ? rowMax : MathF.Max(mOld, rowMax);
                                if (mNew == float.NegativeInfinity) continue; // nothing allowed yet: the row stays -inf, exp gives 0
                                var mv = TOps.Broadcast(mNew);
                                for (int c = 0; c < BlockK; c += TOps.Width) TOps.Store(row + c, TOps.Sub(TOps.Load(row + c), mv));
                                float alpha = MathF.Exp(mOld - mNew);
                                m[r] = mNew;
                                l[r] *= alpha;
                                if (alpha != 1f)
                                {
                                    var av = TOps.Broadcast(alpha);
                                    float* orow = o + r * evp;
                                    for (int d = 0; d < evp; d += TOps.Width) TOps.Store(orow + d, TOps.Fma(TOps.Load(orow + d), av, default));
                                }
                            }
                            for (int r = 0; r < nr; r++)
                            {
                                float* row = s + r * BlockK;
                                TV acc = default;
                                for (int c = 0; c < BlockK; c += TOps.Width)
                                {
                                    var x = TOps.Exp(TOps.Load(row + c));
                                    TOps.Store(row + c, x);
                                    acc = TOps.Add(acc, x);
                                }
                                l[r] += TOps.HSum(acc);
                            }
                        }
                        for (int r = 0; r < nrp; r += 4)
                        {
                            int d = 0;
                            if (TOps.Width == 16)
                                for (; d + 4 * TOps.Width <= evp; d += 4 * TOps.Width)
                                    PvBlock4<TV, TOps>(s + r * BlockK, BlockK, vf + (long)t0 * evp + d, evp, nc, o + r * evp + d, evp);
                            for (; d < evp; d += 2 * TOps.Width)
                                PvBlock<TV, TOps>(s + r * BlockK, BlockK, vf + (long)t0 * evp + d, evp, nc, o + r * evp + d, evp);
                        }
                    }

                    float* oh = Out + ob + p.OHead * h;
                    for (int r = 0; r < nr; r++)
                    {
                        float sum = l[r];
                        bool any = sum > 0 || float.IsNaN(sum);
                        var dst = new Span<float>(oh + p.ORow * (i0 + r), ev);
                        if (any) TensorPrimitives.Multiply(new ReadOnlySpan<float>(o + r * evp, ev), 1f / sum, dst);
                        else dst.Clear();
                        Lse[lb + p.LHead * h + p.LRow * (i0 + r)] = any ? m[r] + MathF.Log(sum) : float.NegativeInfinity;
                    }
                }
            }
        }

        /// <summary>
        /// The online-softmax step for one Vector512 tile in a single pass per row: a row's 64 scores stay in four registers
        /// while the padding row is added (or, on a tile that a bound cuts or under an attn_mask, <see cref="MaskRow"/> runs
        /// first), the max is taken, the accumulator row is rescaled and exp(x - m) is stored and summed.
        /// </summary>
        private void SoftmaxTile512(float* s, int nr, int i0, int t0, int nc, int b, int h, int tq, int tk, float* kpb, float* m, float* l, float* o, int evp)
        {
            ref readonly var p = ref P;
            for (int r = 0; r < nr; r++)
            {
                float* row = s + r * BlockK;
                p.KeyRange(i0 + r, tq, tk, out int lo, out int hi);
                Vector512<float> x0, x1, x2, x3;
                if (p.HasAttnMask == 0 && lo <= t0 && hi >= t0 + BlockK - 1)
                {
                    x0 = V512.Load(row); x1 = V512.Load(row + 16); x2 = V512.Load(row + 32); x3 = V512.Load(row + 48);
                    if (p.HasKeyPadding != 0)
                    {
                        float* kr = kpb + t0;
                        x0 += V512.Load(kr); x1 += V512.Load(kr + 16); x2 += V512.Load(kr + 32); x3 += V512.Load(kr + 48);
                    }
                }
                else
                {
                    MaskRow<Vector512<float>, V512>(row, nc, i0 + r, t0, b, h, tq, tk, kpb);
                    x0 = V512.Load(row); x1 = V512.Load(row + 16); x2 = V512.Load(row + 32); x3 = V512.Load(row + 48);
                }
                float rowMax = V512.HMax(V512.Max(V512.Max(x0, x1), V512.Max(x2, x3))), mOld = m[r];
                float mNew = float.IsNaN(rowMax) ? rowMax : MathF.Max(mOld, rowMax);
                if (mNew == float.NegativeInfinity)
                {
                    // nothing allowed yet: P = 0
                    V512.Store(row, default); V512.Store(row + 16, default); V512.Store(row + 32, default); V512.Store(row + 48, default);
                    continue;
                }
                float alpha = MathF.Exp(mOld - mNew);
                if (alpha != 1f)
                {
                    var av = Vector512.Create(alpha);
                    float* orow = o + r * evp;
                    for (int d = 0; d < evp; d += 16) V512.Store(orow + d, V512.Load(orow + d) * av);
                }
                var mv = Vector512.Create(mNew);
                x0 = V512.Exp(x0 - mv); x1 = V512.Exp(x1 - mv); x2 = V512.Exp(x2 - mv); x3 = V512.Exp(x3 - mv);
                V512.Store(row, x0); V512.Store(row + 16, x1); V512.Store(row + 32, x2); V512.Store(row + 48, x3);
                m[r] = mNew;
                l[r] = l[r] * alpha + Vector512.Sum((x0 + x1) + (x2 + x3));
            }
        }

        /// <summary>Sets to -inf the scores of keys that query i may not see (and the padding columns nc..BlockK).</summary>
        private void MaskRow<TV, TOps>(float* row, int nc, int i, int t0, int b, int h, int tq, int tk, float* kpb) where TV : struct where TOps : struct, IVec<TV>
        {
            ref readonly var p = ref P;
            for (int c = nc; c < BlockK; c++) row[c] = float.NegativeInfinity;
            p.KeyRange(i, tq, tk, out int lo, out int hi);
            int cLo = Math.Max(0, lo - t0), cHi = Math.Min(nc - 1, hi - t0);
            if (cHi < cLo) { for (int c = 0; c < nc; c++) row[c] = float.NegativeInfinity; return; }
            for (int c = 0; c < cLo; c++) row[c] = float.NegativeInfinity;
            for (int c = cHi + 1; c < nc; c++) row[c] = float.NegativeInfinity;
            if (p.HasKeyPadding != 0)
                for (int c = 0; c < BlockK; c += TOps.Width) TOps.Store(row + c, TOps.Add(TOps.Load(row + c), TOps.Load(kpb + t0 + c)));
            if (p.HasAttnMask != 0)
            {
                TBias* mrow = Mask + p.MaskBatch * b + p.MaskHead * h + (long)i * tk + t0;
                if (typeof(TBias) == typeof(float))
                    TensorPrimitives.Add(new ReadOnlySpan<float>(row, nc), new ReadOnlySpan<float>((float*)mrow, nc), new Span<float>(row, nc));
                else
                    for (int c = 0; c < nc; c++) row[c] += SdpaHost.Bias(mrow[c]);
            }
        }
    }

    /// <summary>S[4 × 2W] = Q[4 × E] · Kᵀ[E × 2W]: rows of Q are <paramref name="e"/> apart, rows of Kᵀ <paramref name="ldk"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QkBlock<TV, TOps>(float* qs, int e, float* kt, int ldk, float* s, int lds) where TV : struct where TOps : struct, IVec<TV>
    {
        int w = TOps.Width;
        TV a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        float* q0 = qs, q1 = qs + e, q2 = qs + 2 * e, q3 = qs + 3 * e;
        for (int d = 0; d < e; d++)
        {
            float* kr = kt + (long)d * ldk;
            TV k0 = TOps.Load(kr), k1 = TOps.Load(kr + w);
            TV b0 = TOps.Broadcast(q0[d]); a00 = TOps.Fma(b0, k0, a00); a01 = TOps.Fma(b0, k1, a01);
            TV b1 = TOps.Broadcast(q1[d]); a10 = TOps.Fma(b1, k0, a10); a11 = TOps.Fma(b1, k1, a11);
            TV b2 = TOps.Broadcast(q2[d]); a20 = TOps.Fma(b2, k0, a20); a21 = TOps.Fma(b2, k1, a21);
            TV b3 = TOps.Broadcast(q3[d]); a30 = TOps.Fma(b3, k0, a30); a31 = TOps.Fma(b3, k1, a31);
        }
        TOps.Store(s, a00); TOps.Store(s + w, a01);
        TOps.Store(s + lds, a10); TOps.Store(s + lds + w, a11);
        TOps.Store(s + 2 * lds, a20); TOps.Store(s + 2 * lds + w, a21);
        TOps.Store(s + 3 * lds, a30); TOps.Store(s + 3 * lds + w, a31);
    }

    /// <summary>S[4 × 4W] = Q[4 × E] · Kᵀ[E × 4W] (Vector512: 16 accumulators of the 32 registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QkBlock4<TV, TOps>(float* qs, int e, float* kt, int ldk, float* s, int lds) where TV : struct where TOps : struct, IVec<TV>
    {
        int w = TOps.Width;
        TV a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        TV a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        float* q0 = qs, q1 = qs + e, q2 = qs + 2 * e, q3 = qs + 3 * e;
        for (int d = 0; d < e; d++)
        {
            float* kr = kt + (long)d * ldk;
            TV k0 = TOps.Load(kr), k1 = TOps.Load(kr + w), k2 = TOps.Load(kr + 2 * w), k3 = TOps.Load(kr + 3 * w);
            TV b0 = TOps.Broadcast(q0[d]); a00 = TOps.Fma(b0, k0, a00); a01 = TOps.Fma(b0, k1, a01); a02 = TOps.Fma(b0, k2, a02); a03 = TOps.Fma(b0, k3, a03);
            TV b1 = TOps.Broadcast(q1[d]); a10 = TOps.Fma(b1, k0, a10); a11 = TOps.Fma(b1, k1, a11); a12 = TOps.Fma(b1, k2, a12); a13 = TOps.Fma(b1, k3, a13);
            TV b2 = TOps.Broadcast(q2[d]); a20 = TOps.Fma(b2, k0, a20); a21 = TOps.Fma(b2, k1, a21); a22 = TOps.Fma(b2, k2, a22); a23 = TOps.Fma(b2, k3, a23);
            TV b3 = TOps.Broadcast(q3[d]); a30 = TOps.Fma(b3, k0, a30); a31 = TOps.Fma(b3, k1, a31); a32 = TOps.Fma(b3, k2, a32); a33 = TOps.Fma(b3, k3, a33);
        }
        TOps.Store(s, a00); TOps.Store(s + w, a01); TOps.Store(s + 2 * w, a02); TOps.Store(s + 3 * w, a03); s += lds;
        TOps.Store(s, a10); TOps.Store(s + w, a11); TOps.Store(s + 2 * w, a12); TOps.Store(s + 3 * w, a13); s += lds;
        TOps.Store(s, a20); TOps.Store(s + w, a21); TOps.Store(s + 2 * w, a22); TOps.Store(s + 3 * w, a23); s += lds;
        TOps.Store(s, a30); TOps.Store(s + w, a31); TOps.Store(s + 2 * w, a32); TOps.Store(s + 3 * w, a33);
    }

    /// <summary>O[4 × 4W] += P[4 × nc] · V[nc × 4W] (Vector512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PvBlock4<TV, TOps>(float* pm, int ldp, float* v, int ldv, int nc, float* o, int ldo) where TV : struct where TOps : struct, IVec<TV>
    {
        int w = TOps.Width;
        float* o0 = o, o1 = o + ldo, o2 = o + 2 * ldo, o3 = o + 3 * ldo;
        TV a00 = TOps.Load(o0), a01 = TOps.Load(o0 + w), a02 = TOps.Load(o0 + 2 * w), a03 = TOps.Load(o0 + 3 * w);
        TV a10 = TOps.Load(o1), a11 = TOps.Load(o1 + w), a12 = TOps.Load(o1 + 2 * w), a13 = TOps.Load(o1 + 3 * w);
        TV a20 = TOps.Load(o2), a21 = TOps.Load(o2 + w), a22 = TOps.Load(o2 + 2 * w), a23 = TOps.Load(o2 + 3 * w);
        TV a30 = TOps.Load(o3), a31 = TOps.Load(o3 + w), a32 = TOps.Load(o3 + 2 * w), a33 = TOps.Load(o3 + 3 * w);
        float* p0 = pm, p1 = pm + ldp, p2 = pm + 2 * ldp, p3 = pm + 3 * ldp;
        for (int c = 0; c < nc; c++)
        {
            float* vr = v + (long)c * ldv;
            TV v0 = TOps.Load(vr), v1 = TOps.Load(vr + w), v2 = TOps.Load(vr + 2 * w), v3 = TOps.Load(vr + 3 * w);
            TV b0 = TOps.Broadcast(p0[c]); a00 = TOps.Fma(b0, v0, a00); a01 = TOps.Fma(b0, v1, a01); a02 = TOps.Fma(b0, v2, a02); a03 = TOps.Fma(b0, v3, a03);
            TV b1 = TOps.Broadcast(p1[c]); a10 = TOps.Fma(b1, v0, a10); a11 = TOps.Fma(b1, v1, a11); a12 = TOps.Fma(b1, v2, a12); a13 = TOps.Fma(b1, v3, a13);
            TV b2 = TOps.Broadcast(p2[c]); a20 = TOps.Fma(b2, v0, a20); a21 = TOps.Fma(b2, v1, a21); a22 = TOps.Fma(b2, v2, a22); a23 = TOps.Fma(b2, v3, a23);
            TV b3 = TOps.Broadcast(p3[c]); a30 = TOps.Fma(b3, v0, a30); a31 = TOps.Fma(b3, v1, a31); a32 = TOps.Fma(b3, v2, a32); a33 = TOps.Fma(b3, v3, a33);
        }
        TOps.Store(o0, a00); TOps.Store(o0 + w, a01); TOps.Store(o0 + 2 * w, a02); TOps.Store(o0 + 3 * w, a03);
        TOps.Store(o1, a10); TOps.Store(o1 + w, a11); TOps.Store(o1 + 2 * w, a12); TOps.Store(o1 + 3 * w, a13);
        TOps.Store(o2, a20); TOps.Store(o2 + w, a21); TOps.Store(o2 + 2 * w, a22); TOps.Store(o2 + 3 * w, a23);
        TOps.Store(o3, a30); TOps.Store(o3 + w, a31); TOps.Store(o3 + 2 * w, a32); TOps.Store(o3 + 3 * w, a33);
    }

    /// <summary>O[4 × 2W] += P[4 × nc] · V[nc × 2W].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PvBlock<TV, TOps>(float* pm, int ldp, float* v, int ldv, int nc, float* o, int ldo) where TV : struct where TOps : struct, IVec<TV>
    {
        int w = TOps.Width;
        TV a00 = TOps.Load(o), a01 = TOps.Load(o + w), a10 = TOps.Load(o + ldo), a11 = TOps.Load(o + ldo + w);
        TV a20 = TOps.Load(o + 2 * ldo), a21 = TOps.Load(o + 2 * ldo + w), a30 = TOps.Load(o + 3 * ldo), a31 = TOps.Load(o + 3 * ldo + w);
        float* p0 = pm, p1 = pm + ldp, p2 = pm + 2 * ldp, p3 = pm + 3 * ldp;
        for (int c = 0; c < nc; c++)
        {
            float* vr = v + (long)c * ldv;
            TV v0 = TOps.Load(vr), v1 = TOps.Load(vr + w);
            TV b0 = TOps.Broadcast(p0[c]); a00 = TOps.Fma(b0, v0, a00); a01 = TOps.Fma(b0, v1, a01);
            TV b1 = TOps.Broadcast(p1[c]); a10 = TOps.Fma(b1, v0, a10); a11 = TOps.Fma(b1, v1, a11);
            TV b2 = TOps.Broadcast(p2[c]); a20 = TOps.Fma(b2, v0, a20); a21 = TOps.Fma(b2, v1, a21);
            TV b3 = TOps.Broadcast(p3[c]); a30 = TOps.Fma(b3, v0, a30); a31 = TOps.Fma(b3, v1, a31);
        }
        TOps.Store(o, a00); TOps.Store(o + w, a01);
        TOps.Store(o + ldo, a10); TOps.Store(o + ldo + w, a11);
        TOps.Store(o + 2 * ldo, a20); TOps.Store(o + 2 * ldo + w, a21);
        TOps.Store(o + 3 * ldo, a30); TOps.Store(o + 3 * ldo + w, a31);
    }
}
