using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace PoolKernels.Kernels.Attention;

/// <summary>The few vector operations the attention micro-kernels need, over Vector512, Vector256 or Vector128, as static abstract
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
    static abstract TV Mul(TV a, TV b);
    /// <summary>x where lo[lane] &lt;= j &lt;= hi[lane] (int arrays of Width), else -inf.</summary>
    static abstract TV KeepKey(TV x, int j, int* lo, int* hi);
    /// <summary>x, with -inf lanes replaced by 0 (the max to subtract on a row that has seen no allowed key yet).</summary>
    static abstract TV ZeroIfNegInf(TV x);
    static abstract float HMax(TV v);
    static abstract float HSum(TV v);
    /// <summary>e^x in float (Cephes expf: Cody-Waite reduction, degree-6 polynomial, ~2 ulp); -inf gives exactly 0, NaN
    /// stays NaN. For x &lt;= 0 only (softmax arguments), so no overflow handling. x below -87.3 (and -inf) gives exactly 0. Vector512
    /// scales by 2^n with vscalefps (one instruction for the exponent add, instead of convert, add, shift and multiply); Vector256 and
    /// Vector128 build 2^n from the exponent bits.</summary>
    static abstract TV Exp(TV x);
    /// <summary>The lane indices 0, 1, ..., Width - 1 as floats.</summary>
    static abstract TV Iota { get; }
    static abstract TV Abs(TV x);
    /// <summary>cap·tanh(x/cap) (softcap) as Cephes tanhf: for |y| = |x/cap| &lt; 0.625 an odd polynomial (no cancellation
    /// near 0), else sign(y)·(1 - e)/(1 + e) with e = exp(-2|y|) ≤ 1, so exp never overflows; NaN stays NaN, ±inf gives ±cap.</summary>
    static abstract TV SoftCap(TV x, float cap);
}

/// <summary>Cephes tanhf's polynomial for |x| &lt; 0.625: tanh x = x + x·z·(((((T0·z + T1)·z + T2)·z + T3)·z + T4), z = x².</summary>
internal static class TanhConst
{
    public const float T0 = -5.70498872745E-3f, T1 = 2.06390887954E-2f, T2 = -5.37397155531E-2f, T3 = 1.33314422036E-1f,
        T4 = -3.33332819422E-1f;
}

/// <summary>Constants of the float exp shared by every width.</summary>
internal static class ExpConst
{
    public const float Lo = -87.33654f, Log2E = 1.44269504088896341f, C1 = -0.693359375f, C2 = 2.12194440e-4f;
    public const float P0 = 1.9875691500E-4f, P1 = 1.3981999507E-3f, P2 = 8.3334519073E-3f, P3 = 4.1665795894E-2f, P4 = 1.6666665459E-1f,
        P5 = 5.0000001201E-1f;
}

internal unsafe struct V512 : IVec<Vector512<float>>
{
    public static int Width => 16;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector512<float> v) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Broadcast(float x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b,
        Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> a,
        Vector512<float> b) => Vector512.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Sub(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Mul(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> KeepKey(Vector512<float> x, int j, int* lo, int* hi)
    {
        var jv = Vector512.Create(j);
        var ok = Vector512.GreaterThanOrEqual(jv, Vector512.Load(lo)) & Vector512.LessThanOrEqual(jv, Vector512.Load(hi));
        return Vector512.ConditionalSelect(ok.AsSingle(), x, Vector512.Create(float.NegativeInfinity));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ZeroIfNegInf(Vector512<float> x) =>
        Vector512.ConditionalSelect(Vector512.Equals(x, Vector512.Create(float.NegativeInfinity)), Vector512<float>.Zero, x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HMax(Vector512<float> v)
        => V256.HMax(Vector256.MaxNative(v.GetLower(), v.GetUpper()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float HSum(Vector512<float> v) => Vector512.Sum(v);
    public static Vector512<float> Iota => Vector512<float>.Indices;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Abs(Vector512<float> x) => Vector512.Abs(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> SoftCap(Vector512<float> x, float cap)
    {
        var y = x * (1f / cap);
        var a = Vector512.Abs(y);
        var z = y * y;
        var poly = Fma(Fma(Fma(Fma(Fma(Vector512.Create(TanhConst.T0), z, Vector512.Create(TanhConst.T1)), z,
            Vector512.Create(TanhConst.T2)), z,
            Vector512.Create(TanhConst.T3)), z, Vector512.Create(TanhConst.T4)), z * y, y);
        var near = Vector512.LessThan(a, Vector512.Create(0.625f));
        if (Vector512.LessThanAll(a, Vector512.Create(0.625f))) return poly * cap; // the usual case: no exp, no division
        var e = Exp(a * -2f);
        var far = Vector512.CopySign((Vector512<float>.One - e) / (Vector512<float>.One + e), y);
        return Vector512.ConditionalSelect(near, poly, far) * cap;
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        // clamp (-inf would make the reduction inf - inf): vmaxps returns its second operand when either is NaN, so NaN
        // stays NaN. Each select below uses its own compare: one mask shared by two selects is materialized as a vector
        // (vpmovm2d + vpternlogd) and made the whole exp twice as slow (13 vs 6.7 ns per vector, measured).
        var lo = Vector512.Create(ExpConst.Lo);
        // (the portable forms only where Vector512 is accelerated without AVX-512F: the same values, NaN kept by the select)
        var xc = Avx512F.IsSupported ? Avx512F.Max(lo, x) : Vector512.ConditionalSelect(Vector512.LessThan(x, lo), lo, x);
        var n = Vector512.Round(xc * ExpConst.Log2E);
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(ExpConst.C1), xc);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(ExpConst.C2), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(ExpConst.P0), r, Vector512.Create(ExpConst.P1));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpConst.P2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpConst.P3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpConst.P4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpConst.P5));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        var scaled = Avx512F.IsSupported ? Avx512F.Scale(p, n) // p·2^n
            : p * Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        return Vector512.ConditionalSelect(Vector512.LessThan(x, lo), Vector512<float>.Zero, scaled);
    }
}

internal unsafe struct V256 : IVec<Vector256<float>>
{
    public static int Width => 8;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector256<float> v) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Broadcast(float x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b,
        Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Max(Vector256<float> a,
        Vector256<float> b) => Vector256.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Sub(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Mul(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> KeepKey(Vector256<float> x, int j, int* lo, int* hi)
    {
        var jv = Vector256.Create(j);
        var ok = Vector256.GreaterThanOrEqual(jv, Vector256.Load(lo)) & Vector256.LessThanOrEqual(jv, Vector256.Load(hi));
        return Vector256.ConditionalSelect(ok.AsSingle(), x, Vector256.Create(float.NegativeInfinity));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ZeroIfNegInf(Vector256<float> x) =>
        Vector256.ConditionalSelect(Vector256.Equals(x, Vector256.Create(float.NegativeInfinity)), Vector256<float>.Zero, x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HMax(Vector256<float> v)
    {
        var m = Vector128.MaxNative(v.GetLower(), v.GetUpper());
        float r = m[0];
        for (int i = 1; i < 4; i++) r = MathF.Max(r, m[i]);
        return r;
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float HSum(Vector256<float> v) => Vector256.Sum(v);
    public static Vector256<float> Iota => Vector256<float>.Indices;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Abs(Vector256<float> x) => Vector256.Abs(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SoftCap(Vector256<float> x, float cap)
    {
        var y = x * (1f / cap);
        var a = Vector256.Abs(y);
        var z = y * y;
        var poly = Fma(Fma(Fma(Fma(Fma(Vector256.Create(TanhConst.T0), z, Vector256.Create(TanhConst.T1)), z,
            Vector256.Create(TanhConst.T2)), z,
            Vector256.Create(TanhConst.T3)), z, Vector256.Create(TanhConst.T4)), z * y, y);
        var near = Vector256.LessThan(a, Vector256.Create(0.625f));
        if (Vector256.LessThanAll(a, Vector256.Create(0.625f))) return poly * cap; // the usual case: no exp, no division
        var e = Exp(a * -2f);
        var far = Vector256.CopySign((Vector256<float>.One - e) / (Vector256<float>.One + e), y);
        return Vector256.ConditionalSelect(near, poly, far) * cap;
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var lo = Vector256.Create(ExpConst.Lo);
        // NaN stays NaN: vmaxps returns its second operand, the portable select keeps x
        var xc = Avx.IsSupported ? Avx.Max(lo, x) : Vector256.ConditionalSelect(Vector256.LessThan(x, lo), lo, x);
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
        return Vector256.ConditionalSelect(Vector256.LessThan(x, lo), Vector256<float>.Zero, y * pow);
    }
}

/// <summary>The Vector128 width: SSE4 x64 without AVX2, ARM64 NEON, and (not accelerated, slow but correct) no hardware
/// intrinsics at all. Fma is <c>MultiplyAddEstimate</c>: one fused fmla on NEON; a multiply and an add on an SSE-only x64
/// (which has no FMA, where a true fused multiply-add is a software call per lane, ~5x slower), so the results are the
/// same bits on every run of one machine but may differ between machines of this width.</summary>
internal unsafe struct V128 : IVec<Vector128<float>>
{
    public static int Width => 4;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(float* p) => Vector128.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector128<float> v) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Broadcast(float x) => Vector128.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Fma(Vector128<float> a, Vector128<float> b, Vector128<float> c) =>
        Vector128.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Sub(Vector128<float> a, Vector128<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Mul(Vector128<float> a, Vector128<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> KeepKey(Vector128<float> x, int j, int* lo, int* hi)
    {
        var jv = Vector128.Create(j);
        var ok = Vector128.GreaterThanOrEqual(jv, Vector128.Load(lo)) & Vector128.LessThanOrEqual(jv, Vector128.Load(hi));
        return Vector128.ConditionalSelect(ok.AsSingle(), x, Vector128.Create(float.NegativeInfinity));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ZeroIfNegInf(Vector128<float> x) =>
        Vector128.ConditionalSelect(Vector128.Equals(x, Vector128.Create(float.NegativeInfinity)), Vector128<float>.Zero, x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HMax(Vector128<float> v)
    {
        float r = v[0];
        for (int i = 1; i < 4; i++) r = MathF.Max(r, v[i]);
        return r;
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float HSum(Vector128<float> v) => Vector128.Sum(v);
    public static Vector128<float> Iota => Vector128<float>.Indices;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Abs(Vector128<float> x) => Vector128.Abs(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SoftCap(Vector128<float> x, float cap)
    {
        var y = x * (1f / cap);
        var a = Vector128.Abs(y);
        var z = y * y;
        var poly = Fma(Fma(Fma(Fma(Fma(Vector128.Create(TanhConst.T0), z, Vector128.Create(TanhConst.T1)), z,
            Vector128.Create(TanhConst.T2)), z,
            Vector128.Create(TanhConst.T3)), z, Vector128.Create(TanhConst.T4)), z * y, y);
        var near = Vector128.LessThan(a, Vector128.Create(0.625f));
        if (Vector128.LessThanAll(a, Vector128.Create(0.625f))) return poly * cap; // the usual case: no exp, no division
        var e = Exp(a * -2f);
        var far = Vector128.CopySign((Vector128<float>.One - e) / (Vector128<float>.One + e), y);
        return Vector128.ConditionalSelect(near, poly, far) * cap;
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp(Vector128<float> x)
    {
        var lo = Vector128.Create(ExpConst.Lo);
        var xc = Vector128.ConditionalSelect(Vector128.LessThan(x, lo), lo, x); // NaN fails the compare and stays NaN
        var n = Vector128.Round(xc * ExpConst.Log2E);
        var r = Fma(n, Vector128.Create(ExpConst.C1), xc);
        r = Fma(n, Vector128.Create(ExpConst.C2), r);
        var p = Fma(Vector128.Create(ExpConst.P0), r, Vector128.Create(ExpConst.P1));
        p = Fma(p, r, Vector128.Create(ExpConst.P2));
        p = Fma(p, r, Vector128.Create(ExpConst.P3));
        p = Fma(p, r, Vector128.Create(ExpConst.P4));
        p = Fma(p, r, Vector128.Create(ExpConst.P5));
        var y = Fma(p, r * r, r) + Vector128<float>.One;
        var pow = Vector128.ShiftLeft(Vector128.ConvertToInt32(n) + Vector128.Create(127), 23).AsSingle();
        return Vector128.ConditionalSelect(Vector128.LessThan(x, lo), Vector128<float>.Zero, y * pow);
    }
}

/// <summary>
/// <c>sdpa</c> / <c>sdpa_varlen</c>, managed SIMD: tiled online softmax (FlashAttention-2 on a CPU), computed TRANSPOSED:
/// a score tile is Sᵀ [keys × queries], so each vector lane is one query row and the whole softmax is vertical.
/// <para>Work items are (sequence b, key/value head, chunk of query blocks), spread over the <see cref="WorkerPool"/>. An
/// item first stages its key/value head once: K [Tk, E] and V [Tk, Ev'] (Ev padded to two vectors) widened to float (F32 k
/// is read in place, and so is F32 v when Ev is a multiple of two vectors), plus the key_padding_mask as a 0/-inf row and
/// the first and last key it keeps. It then serves every query head of the GQA group: per block of <see cref="BlockQ"/>
/// query rows, scaled q is staged transposed (Qᵀ [E × BlockQ]; F32 with AVX-512 by 16 × 16 register transposes); per tile of up to <see
/// cref="BlockK"/> keys inside the block's causal/window key range AND inside the padding row's first..last kept key (tiles outside are
/// never computed, the last one computes only its keys rounded up to 4): Sᵀ = K·Qᵀ by a 4-key × 4-vector (Vector512, and
/// Vector128 where there are 32 vector registers: NEON, AVX-512 hardware; 4 × 2 for Vector256 and SSE-only Vector128)
/// broadcast-FMA micro-kernel; on a tile that a bound cuts or under an attn_mask the masks are applied to Sᵀ (bounds by
/// per-lane key-range compares), otherwise the padding row is added on the fly; then per vector of 16 queries: the column
/// max over the tile's keys (two chains), the new running max, alpha = exp(m_old - m_new) for 16 rows at once, P = exp(s -
/// m) stored back over Sᵀ and summed vertically; and O = alpha·O + P·V by a 4-row × 4-vector micro-kernel that multiplies
/// its accumulators by alpha as it loads them (no separate rescale pass).</para>
/// <para>Work items: with few (sequence, head) pairs a head's query blocks are split into interleaved chunks (chunk c takes
/// blocks c, c + Chunks, ...) so that chunks cost about the same under a causal mask, at least 16 items per worker where the
/// blocks allow; under causal/window bounds the P·V kernel visits only the keys its 4 rows may see (half of a diagonal tile).</para>
/// <para>Why this design, and what was tried: perf/NOTES.md, "sdpa simd: design history".</para>
/// <para>Memory: per worker O(Tk·(E + Ev) + BlockQ·(E + Ev + BlockK)) floats of scratch, kept between calls (pinned arrays
/// grown on demand), so a steady-state call allocates nothing and no Tq×Tk buffer exists.</para>
/// </summary>
internal static unsafe class SdpaSimd
{
    /// <summary>Query rows per block: the lanes of a score tile (four Vector512s, eight Vector256s, sixteen Vector128s).</summary>
    public const int BlockQ = 64;
    /// <summary>Keys per tile (a multiple of 4, the micro-kernel's key count).</summary>
    public const int BlockK = 64;

    /// <summary>Tests set this to run the Vector256 micro-kernels on AVX-512 hardware too.</summary>
    internal static bool ForceVector256;
    /// <summary>Tests set this to run the tiled kernel where <see cref="SdpaDecodeSimd"/> would serve the call.</summary>
    internal static bool ForceTiled;
    /// <summary>Tests set this to run the Vector128 micro-kernels (the NEON / SSE-only width) on wider hardware too.</summary>
    internal static bool ForceVector128;

    /// <summary>The vector width (floats) a call runs at: 16 where Vector512 is accelerated, 8 where Vector256 is, else 4
    /// (Vector128: NEON, SSE4, or not accelerated at all, then slow but correct); the test switches narrow it.</summary>
    internal static int Lanes => ForceVector128 ? 4 : Vector512.IsHardwareAccelerated && !ForceVector256 ? 16
        : Vector256.IsHardwareAccelerated || ForceVector256 ? 8 : 4;

    /// <summary>32 vector registers (NEON; AVX-512's EVEX encoding gives Vector128 xmm16-31 too): room for the Vector128
    /// form of the 4 × 4-vector micro-kernels (16 accumulators, 4 loads, a broadcast) without spills.</summary>
    private static bool Registers32 => AdvSimd.Arm64.IsSupported || Avx512F.VL.IsSupported;

    /// <summary>Runs the operation on <paramref name="pool"/> (default <see cref="WorkerPool.Shared"/>). Arguments are assumed
    /// validated.</summary>
    public static void Run<T, TBias, TMask, TIdx>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<TBias> attnMask,
        ReadOnlySpan<TMask> keyPadding, ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK, ReadOnlySpan<float> mods, Span<float> output,
            Span<float> lse,
        in SdpaParams p, WorkerPool? pool = null)
        where T : unmanaged where TBias : unmanaged where TMask : unmanaged where TIdx : unmanaged
    {
        if (p.Hkv == 0 || p.Batch == 0 || p.Tq == 0) return;
        pool ??= WorkerPool.Shared;
        if (SdpaDecodeSimd.Serves(p) && !ForceTiled) // decode: few query rows, split over keys
        {
            SdpaDecodeSimd.Run(q, k, v, keyPadding, cuQ, cuK, mods, output, lse, p, pool);
            return;
        }
        fixed (T* qp = q) fixed (T* kp = k) fixed (T* vp = v) fixed (TBias* mp = attnMask) fixed (TMask* pp = keyPadding)
        fixed (TIdx* cq = cuQ) fixed (TIdx* ck = cuK) fixed (float* op = output) fixed (float* lp = lse) fixed (float* mo = mods)
        {
            var job = Job<T, TBias, TMask, TIdx>.Cached ??= new();
            job.Q = qp; job.K = kp; job.V = vp; job.Mask = mp; job.KeyPadding = pp; job.CuQ = cq; job.CuK = ck; job.Out = op; job.Lse
                = lp; job.P = p;
            job.Mods = mo;
            int w = job.Width = Lanes;
            job.EvP = (p.Ev + 2 * w - 1) / (2 * w) * (2 * w);
            job.TkPad = (p.Tk + BlockK - 1) / BlockK * BlockK;
            // At least 16 items per worker where the query blocks allow (a worker that starts late, or a core another
            // process takes for a while, then leaves a short tail): a head's query blocks are split into interleaved chunks
            // (chunk c takes blocks c, c + Chunks, ...), so chunks cost about the same even under a causal mask.
            int heads = p.Batch * p.Hkv, qBlocks = (p.Tq + BlockQ - 1) / BlockQ;
            job.Chunks = Math.Max(1, Math.Min(qBlocks, (16 * pool.Workers + heads - 1) / heads));
            pool.EnsureScratch(ref job.Scratch, Job<T, TBias, TMask, TIdx>.ScratchFloats(p, job.EvP, job.TkPad), pinned: true);
            pool.Run(job, heads * job.Chunks);
            job.Q = null; job.K = null; job.V = null; job.Out = null; job.Lse = null; job.Mods = null;
        }
    }

    private sealed class Job<T, TBias, TMask, TIdx> : IParallelJob where T : unmanaged where TBias : unmanaged where TMask
        : unmanaged where TIdx : unmanaged
    {
        [ThreadStatic] internal static Job<T, TBias, TMask, TIdx>? Cached;
        internal T* Q, K, V; internal TBias* Mask; internal TMask* KeyPadding; internal TIdx* CuQ, CuK; internal float* Out, Lse, Mods;
        internal SdpaParams P;
        internal int EvP, TkPad, Chunks;
        internal int Width;
        internal float[]?[] Scratch = [];

        // F32 rows are read in place only when they are contiguous (bhtd, or one head): in bthd the rows of one head lie
        // Hkv·E floats apart — 4 KB for 8 heads of 128 — and a tile's rows then fall into the same few L1 sets (the
        // resampler's bthd dh = 128 attention ran at 48% of the FMA loop read in place, 61% staged; E = 64 bthd 41-49% -> 61%)
        internal static bool DirectK(in SdpaParams p) => typeof(T) == typeof(float) && p.KRow == p.E && p.Paged == 0;
        internal static bool DirectV(in SdpaParams p, int evp) => typeof(T) == typeof(float) && p.Ev == evp && p.VRow == p.Ev
            && p.Paged == 0;

        /// <summary>The row of key j of sequence b in k/v: j, or its cache row through the block table (sdpa_paged).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private long KeyRow(in SdpaParams p, int b, int j) =>
            p.Paged == 0 ? j : p.PagedRow(Elements.ToInt64(CuK[(long)b * p.TableStride + j / p.PageSize]), j);

        /// <summary>Floats of one worker's scratch (64-byte aligned, every part a multiple of 16 floats): K [TkPad·E] unless
        /// direct | V [TkPad·EvP] unless direct | kp [TkPad] | Qᵀ [E·BQ] | Sᵀ [BK·BQ] | O [BQ·EvP] | M, L, Alpha, Lo, Hi [BQ] |
        /// row [E rounded up].</summary>
        internal static long ScratchFloats(in SdpaParams p, int evp, int tkp)
        {
            int e = p.E;
            long kSize = DirectK(p) ? 0 : (long)tkp * e, vSize = DirectV(p, evp) ? 0 : (long)tkp * evp;
            return kSize + vSize + tkp + (long)e * BlockQ + BlockK * BlockQ + BlockQ * (long)evp + 5 * BlockQ + (e + 15) / 16 * 16 + 16;
        }

        public void Execute(int item, int worker)
        {
            if (Width == 16) Execute<Vector512<float>, V512>(item, worker);
            else if (Width == 8) Execute<Vector256<float>, V256>(item, worker);
            else Execute<Vector128<float>, V128>(item, worker);
        }

        private void Execute<TV, TOps>(int item, int worker) where TV : struct where TOps : struct, IVec<TV>
        {
            ref readonly var p = ref P;
            int chunk = item % Chunks, bhk = item / Chunks, hk = bhk % p.Hkv, b = bhk / p.Hkv;
            SdpaHost.Sequence(p, CuQ, CuK, b, out int tq, out int tk, out long qb, out long kb, out long vb, out long ob, out long lb);
            int nb = (tq + BlockQ - 1) / BlockQ;
            if (chunk >= nb) return;
            int e = p.E, ev = p.Ev, evp = EvP, tkp = TkPad, w = TOps.Width;
            bool tile4 = w == 16 || w == 4 && Registers32; // the 4 × 4-vector micro-kernels (else 4 × 2)
            // F32 rows in place only when contiguous (see DirectK)
            bool directK = DirectK(p), directV = DirectV(p, evp);
            long kSize = directK ? 0 : (long)tkp * e, vSize = directV ? 0 : (long)tkp * evp;
            var buf = Scratch[worker]!; // sized by Run for every worker
            float* kf = WorkerPool.Aligned64(buf);
            float* vf = kf + kSize, kpb = vf + vSize, qt = kpb + tkp, st = qt + (long)e * BlockQ, o = st + BlockK * BlockQ;
            float* m = o + BlockQ * evp, l = m + BlockQ, alpha = l + BlockQ, rowTmp = alpha + 3 * BlockQ;
            int* loI = (int*)(alpha + BlockQ), hiI = (int*)(alpha + 2 * BlockQ);

            // K and V rows as float: in place for F32, else widened once per item (K rows tk..TkPad zero: the micro-kernel
            // computes whole groups of 4 keys)
            T* kh = K + kb + p.KHead * hk, vh = V + vb + p.VHead * hk;
            float* kRows; long kStride;
            if (directK) { kRows = (float*)kh; kStride = p.KRow; }
            else
            {
                kRows = kf; kStride = e;
                for (int j = 0; j < tk; j++)
                {
                    var dst = new Span<float>(kf + (long)j * e, e);
                    Elements.AsFloats(new ReadOnlySpan<T>(kh + p.KRow * KeyRow(p, b, j), e), dst).CopyTo(dst);
                }
                new Span<float>(kf + (long)tk * e, (tkp - tk) * e).Clear();
            }
            float* vRows; long vStride;
            if (directV) { vRows = (float*)vh; vStride = p.VRow; }
            else
            {
                vRows = vf; vStride = evp;
                for (int j = 0; j < tk; j++)
                {
                    var dst = new Span<float>(vf + (long)j * evp, evp);
                    Elements.AsFloats(new ReadOnlySpan<T>(vh + p.VRow * KeyRow(p, b, j), ev), dst).CopyTo(dst);
                    dst[ev..].Clear();
                }
            }
            int padLo = 0, padHi = tk - 1; // the first and last key the padding row keeps: keys outside are never visited
            if (p.HasKeyPadding != 0)
            {
                padLo = tk; padHi = -1;
                for (int j = 0; j < tk; j++)
                {
                    bool keep = Elements.Keep(KeyPadding[(long)b * tk + j]);
                    kpb[j] = keep ? 0f : float.NegativeInfinity;
                    if (keep) { if (padLo == tk) padLo = j; padHi = j; }
                }
            }
            bool bounded = p.Causal != 0 || p.WindowLeft >= 0 || p.WindowRight >= 0;

            int group = p.Hq / p.Hkv;
            for (int h = hk * group; h < (hk + 1) * group; h++)
            {
                T* qh = Q + qb + p.QHead * h;
                float slope = p.HasAlibi != 0 ? Mods[p.AlibiBatch * b + h] : 0f;
                float sink = p.HasSinks != 0 ? Mods[p.SinkBase + h] : float.NegativeInfinity;
                for (int blk = chunk; blk < nb; blk += Chunks)
                {
                    int i0 = blk * BlockQ, nr = Math.Min(BlockQ, tq - i0), nrp = (nr + 3) & ~3;
                    // Qᵀ [E × BlockQ], scaled; lanes nr.. zero
                    if (typeof(T) == typeof(float) && w != 8) // by register transposes (AVX-512, or 4 × 4 for Vector128)
                        TransposeQt((float*)(qh + p.QRow * i0), p.QRow, nr, e, p.Scale, qt);
                    else
                    {
                        for (int r = 0; r < nr; r++)
                        {
                            var src = Elements.AsFloats(new ReadOnlySpan<T>(qh + p.QRow * (i0 + r), e), new Span<float>(rowTmp, e));
                            float sc = p.Scale;
                            for (int d = 0; d < e; d++) qt[d * BlockQ + r] = src[d] * sc;
                        }
                        if (nr < BlockQ)
                            for (int d = 0; d < e; d++) new Span<float>(qt + d * BlockQ + nr, BlockQ - nr).Clear();
                    }
                    new Span<float>(o, nrp * evp).Clear();
                    new Span<float>(m, BlockQ).Fill(float.NegativeInfinity);
                    new Span<float>(l, BlockQ).Clear();

                    p.BlockKeyRange(i0, i0 + nr - 1, tq, tk, out int kLo, out int kHi);
                    kLo = Math.Max(kLo, padLo); kHi = Math.Min(kHi, padHi);
                    // [firstLo, lastHi]: the keys every row of the block sees (a tile inside needs no bound mask); a row with no
                    // key at all (a window past the last key, or before the first) empties it
                    int firstLo = 0, lastHi = tk - 1;
                    if (bounded)
                    {
                        firstLo = int.MinValue; lastHi = int.MaxValue;
                        for (int r = 0; r < BlockQ; r++)
                        {
                            if (r < nr) p.KeyRange(i0 + r, tq, tk, out loI[r], out hiI[r]);
                            else { loI[r] = 0; hiI[r] = -1; }
                            if (r >= nr) continue;
                            if (hiI[r] < loI[r]) firstLo = int.MaxValue;
                            else { firstLo = Math.Max(firstLo, loI[r]); lastHi = Math.Min(lastHi, hiI[r]); }
                        }
                    }
                    for (int t0 = kLo / BlockK * BlockK; t0 <= kHi; t0 += BlockK)
                    {
                        int nk = Math.Min(BlockK, kHi + 1 - t0), nk4 = (nk + 3) & ~3;
                        // Sᵀ [nk4 × BlockQ] = K[t0 .. t0 + nk4) · Qᵀ (rows past tk repeat the last key; their scores are never read)
                        for (int j = 0; j < nk4; j += 4)
                        {
                            int j0 = t0 + j;
                            float* k0 = kRows + kStride * Math.Min(j0, tk - 1), k1 = kRows + kStride * Math.Min(j0 + 1, tk - 1);
                            float* k2 = kRows + kStride * Math.Min(j0 + 2, tk - 1), k3 = kRows + kStride * Math.Min(j0 + 3, tk - 1);
                            if (tile4)
                                for (int c = 0; c < BlockQ; c += 4 * w)
                                    ScoreBlock4<TV, TOps>(k0, k1, k2, k3, e, qt + c, st + j * BlockQ + c);
                            else
                                for (int c = 0; c < BlockQ; c += 2 * w) ScoreBlock2<TV, TOps>(k0, k1, k2, k3, e, qt + c,
                                    st + j * BlockQ + c);
                        }
                        if (p.ModifiesScores) ModifyTile<TV, TOps>(st, nk, i0 + p.Offset(tq, tk) - t0, slope);
                        bool plain = p.HasAttnMask == 0 && firstLo <= t0 && lastHi >= t0 + nk - 1;
                        if (!plain) MaskTile<TV, TOps>(st, nk, nr, i0, t0, b, h, tk, kpb, loI, hiI, bounded);
                        Softmax<TV, TOps>(st, nk, plain && p.HasKeyPadding != 0 ? kpb + t0 : null, m, l, alpha);
                        for (int r = 0; r < nrp; r += 4)
                        {
                            // keys c0..c1 of the tile: under bounds, only those rows r..r+3 may see (P is 0 elsewhere;
                            // on a causal diagonal tile this halves the P·V work)
                            int c0 = 0, c1 = nk;
                            if (bounded)
                            {
                                // the union of the (non-empty) ranges of rows r..r+3
                                int gLo = int.MaxValue, gHi = int.MinValue;
                                for (int g = r; g < Math.Min(r + 4, nr); g++)
                                    if (hiI[g] >= loI[g]) { gLo = Math.Min(gLo, loI[g]); gHi = Math.Max(gHi, hiI[g]); }
                                if (gHi < gLo) { c0 = 0; c1 = 0; } // no row of the group sees a key: only the rescale
                                else { c0 = Math.Clamp(gLo - t0, 0, nk); c1 = Math.Clamp(gHi - t0 + 1, c0, nk); }
                            }
                            int d = 0;
                            float* vt = vRows + vStride * (t0 + c0), pt = st + c0 * BlockQ + r;
                            if (tile4)
                                for (; d + 4 * w <= evp; d += 4 * w)
                                    PvBlock4<TV, TOps>(pt, vt + d, vStride, c1 - c0, o + r * evp + d, evp, alpha + r);
                            for (; d < evp; d += 2 * w)
                                PvBlock2<TV, TOps>(pt, vt + d, vStride, c1 - c0, o + r * evp + d, evp, alpha + r);
                        }
                    }

                    float* oh = Out + ob + p.OHead * h;
                    for (int r = 0; r < nr; r++)
                    {
                        float sum = l[r], mr = m[r], c = 1f;
                        bool any = sum > 0 || float.IsNaN(sum);
                        if (p.HasSinks != 0)
                        {
                            // the sink joins the denominator, rescaled to max(m, sink) so neither exponent overflows
                            float mm = any ? MathF.Max(mr, sink) : sink;
                            c = any ? MathF.Exp(mr - mm) : 0f;
                            sum = sum * c + MathF.Exp(sink - mm); mr = mm;
                        }
                        var dst = new Span<float>(oh + p.ORow * (i0 + r), ev);
                        if (any) TensorPrimitives.Multiply(new ReadOnlySpan<float>(o + r * evp, ev), c / sum, dst);
                        else dst.Clear();
                        Lse[lb + p.LHead * h + p.LRow * (i0 + r)] = any || p.HasSinks != 0 ? mr + MathF.Log(sum) : float.NegativeInfinity;
                    }
                }
            }
        }

        /// <summary>Qᵀ [e × BlockQ] = scale · rows 0..nr-1 of F32 q (rows <paramref name="qRow"/> floats apart), lanes nr..
        /// zero: 16 rows at a time by <see cref="Transpose16"/>, then one scaling pass over the (L1-resident) block. Each
        /// row's lines are read once and whole; the former 8-lane gathers read every line 16 times, and in bthd, where a
        /// head's rows lie H·E floats apart (4 KB for 8 heads of 128), those lines fell into the same L1 sets: with 24 keys
        /// (multi_layer_pool) staging Qᵀ cost more than the attention itself.</summary>
        private static void TransposeQt(float* q0, long qRow, int nr, int e, float scale, float* qt)
        {
            for (int r0 = 0; r0 < BlockQ; r0 += 16)
                Transpose16.Pack(q0 + Math.Min(r0, nr) * qRow, qRow, Math.Clamp(nr - r0, 0, 16), e, qt + r0, BlockQ);
            var all = new Span<float>(qt, e * BlockQ);
            TensorPrimitives.Multiply(all, scale, all);
        }

        /// <summary>The score modifiers on Sᵀ [nk × BlockQ] (keys t0.., already scale·q·k), before any mask: softcap, then
        /// ALiBi's -slope·|i + o - j|, which for lane r of key row j is -slope·|d0 + r - j| with d0 = i0 + o - t0.</summary>
        private void ModifyTile<TV, TOps>(float* st, int nk, int d0, float slope) where TV : struct where TOps : struct, IVec<TV>
        {
            ref readonly var p = ref P;
            int w = TOps.Width;
            float cap = p.Softcap;
            bool alibi = p.HasAlibi != 0;
            var negSlope = TOps.Broadcast(-slope);
            for (int j = 0; j < nk; j++)
            {
                float* row = st + j * BlockQ;
                for (int g = 0; g < BlockQ; g += w)
                {
                    var x = TOps.Load(row + g);
                    if (cap > 0) x = TOps.SoftCap(x, cap);
                    if (alibi) x = TOps.Fma(negSlope, TOps.Abs(TOps.Add(TOps.Iota, TOps.Broadcast(d0 + g - j))), x);
                    TOps.Store(row + g, x);
                }
            }
        }

        /// <summary>Applies to Sᵀ [nk × BlockQ] (keys t0..) everything that may remove a key: the padding row, the per-row
        /// causal/window range (lane compares against lo/hi) and attn_mask (added, read along its rows).</summary>
        private void MaskTile<TV, TOps>(float* st, int nk, int nr, int i0, int t0, int b, int h, int tk, float* kpb, int* lo, int* hi,
            bool bounded)
            where TV : struct where TOps : struct, IVec<TV>
        {
            ref readonly var p = ref P;
            int w = TOps.Width;
            if (p.HasKeyPadding != 0 || bounded)
                for (int j = 0; j < nk; j++)
                {
                    float* row = st + j * BlockQ;
                    var pad = TOps.Broadcast(p.HasKeyPadding != 0 ? kpb[t0 + j] : 0f);
                    for (int g = 0; g < BlockQ; g += w)
                    {
                        var x = TOps.Add(TOps.Load(row + g), pad);
                        if (bounded) x = TOps.KeepKey(x, t0 + j, lo + g, hi + g);
                        TOps.Store(row + g, x);
                    }
                }
            if (p.HasAttnMask != 0)
                for (int r = 0; r < nr; r++)
                {
                    TBias* mrow = Mask + p.MaskBatch * b + p.MaskHead * h + (long)(i0 + r) * tk + t0;
                    for (int j = 0; j < nk; j++) st[j * BlockQ + r] += SdpaHost.Bias(mrow[j]);
                }
        }
    }

    /// <summary>
    /// The online-softmax step on a transposed tile Sᵀ [nk × BlockQ] (lane = query row): per vector of queries the column
    /// max over the keys (plus the padding row <paramref name="pad"/> when not null), the new running max m, alpha = exp(m_old
    /// - m_new) into <paramref name="alpha"/> (for the P·V kernel), P = exp(s - m) over Sᵀ and l = alpha·l + Σ P. A row that
    /// has seen no allowed key keeps m = -inf and gets P = 0 (it subtracts 0 instead of -inf).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Softmax<TV, TOps>(float* st, int nk, float* pad, float* m, float* l,
        float* alpha) where TV : struct where TOps : struct, IVec<TV>
    {
        int w = TOps.Width;
        var ninf = TOps.Broadcast(float.NegativeInfinity);
        for (int g = 0; g < BlockQ; g += w)
        {
            float* col = st + g;
            TV mx0 = ninf, mx1 = ninf;
            int j = 0;
            if (pad != null)
            {
                for (; j + 1 < nk; j += 2)
                {
                    mx0 = TOps.Max(mx0, TOps.Add(TOps.Load(col + j * BlockQ), TOps.Broadcast(pad[j])));
                    mx1 = TOps.Max(mx1, TOps.Add(TOps.Load(col + (j + 1) * BlockQ), TOps.Broadcast(pad[j + 1])));
                }
                if (j < nk) mx0 = TOps.Max(mx0, TOps.Add(TOps.Load(col + j * BlockQ), TOps.Broadcast(pad[j])));
            }
            else
            {
                for (; j + 1 < nk; j += 2)
                {
                    mx0 = TOps.Max(mx0, TOps.Load(col + j * BlockQ));
                    mx1 = TOps.Max(mx1, TOps.Load(col + (j + 1) * BlockQ));
                }
                if (j < nk) mx0 = TOps.Max(mx0, TOps.Load(col + j * BlockQ));
            }
            TV mOld = TOps.Load(m + g), mNew = TOps.Max(mOld, TOps.Max(mx0, mx1));
            TV mSub = TOps.ZeroIfNegInf(mNew);
            TV a = TOps.Exp(TOps.Sub(mOld, mSub));
            TOps.Store(m + g, mNew);
            TOps.Store(alpha + g, a);
            TV s0 = default, s1 = default;
            j = 0;
            if (pad != null)
            {
                for (; j + 1 < nk; j += 2)
                {
                    TV x0 = TOps.Exp(TOps.Sub(TOps.Add(TOps.Load(col + j * BlockQ), TOps.Broadcast(pad[j])), mSub));
                    TV x1 = TOps.Exp(TOps.Sub(TOps.Add(TOps.Load(col + (j + 1) * BlockQ), TOps.Broadcast(pad[j + 1])), mSub));
                    TOps.Store(col + j * BlockQ, x0); TOps.Store(col + (j + 1) * BlockQ, x1);
                    s0 = TOps.Add(s0, x0); s1 = TOps.Add(s1, x1);
                }
                if (j < nk)
                {
                    TV x0 = TOps.Exp(TOps.Sub(TOps.Add(TOps.Load(col + j * BlockQ), TOps.Broadcast(pad[j])), mSub));
                    TOps.Store(col + j * BlockQ, x0); s0 = TOps.Add(s0, x0);
                }
            }
            else
            {
                for (; j + 1 < nk; j += 2)
                {
                    TV x0 = TOps.Exp(TOps.Sub(TOps.Load(col + j * BlockQ), mSub));
                    TV x1 = TOps.Exp(TOps.Sub(TOps.Load(col + (j + 1) * BlockQ), mSub));
                    TOps.Store(col + j * BlockQ, x0); TOps.Store(col + (j + 1) * BlockQ, x1);
                    s0 = TOps.Add(s0, x0); s1 = TOps.Add(s1, x1);
                }
                if (j < nk)
                {
                    TV x0 = TOps.Exp(TOps.Sub(TOps.Load(col + j * BlockQ), mSub));
                    TOps.Store(col + j * BlockQ, x0); s0 = TOps.Add(s0, x0);
                }
            }
            TOps.Store(l + g, TOps.Fma(TOps.Load(l + g), a, TOps.Add(s0, s1)));
        }
    }

    /// <summary>Sᵀ[4 keys × 4W queries] = K[4 × E] · Qᵀ[E × 4W] (16 accumulators of the 32 registers); key rows
    /// are <paramref name="k0"/>..<paramref name="k3"/>, rows of Qᵀ and Sᵀ are <see cref="BlockQ"/> apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScoreBlock4<TV, TOps>(float* k0, float* k1, float* k2, float* k3, int e, float* qt,
        float* s) where TV : struct where TOps : struct, IVec<TV>
    {
        int w = TOps.Width;
        TV a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        TV a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        for (int d = 0; d < e; d++)
        {
            float* qr = qt + d * BlockQ;
            TV q0 = TOps.Load(qr), q1 = TOps.Load(qr + w), q2 = TOps.Load(qr + 2 * w), q3 = TOps.Load(qr + 3 * w);
            TV b0 = TOps.Broadcast(k0[d]); a00 = TOps.Fma(b0, q0, a00); a01 = TOps.Fma(b0, q1, a01); a02 = TOps.Fma(b0, q2,
                a02); a03 = TOps.Fma(b0, q3, a03);
            TV b1 = TOps.Broadcast(k1[d]); a10 = TOps.Fma(b1, q0, a10); a11 = TOps.Fma(b1, q1, a11); a12 = TOps.Fma(b1, q2,
                a12); a13 = TOps.Fma(b1, q3, a13);
            TV b2 = TOps.Broadcast(k2[d]); a20 = TOps.Fma(b2, q0, a20); a21 = TOps.Fma(b2, q1, a21); a22 = TOps.Fma(b2, q2,
                a22); a23 = TOps.Fma(b2, q3, a23);
            TV b3 = TOps.Broadcast(k3[d]); a30 = TOps.Fma(b3, q0, a30); a31 = TOps.Fma(b3, q1, a31); a32 = TOps.Fma(b3, q2,
                a32); a33 = TOps.Fma(b3, q3, a33);
        }
        TOps.Store(s, a00); TOps.Store(s + w, a01); TOps.Store(s + 2 * w, a02); TOps.Store(s + 3 * w, a03); s += BlockQ;
        TOps.Store(s, a10); TOps.Store(s + w, a11); TOps.Store(s + 2 * w, a12); TOps.Store(s + 3 * w, a13); s += BlockQ;
        TOps.Store(s, a20); TOps.Store(s + w, a21); TOps.Store(s + 2 * w, a22); TOps.Store(s + 3 * w, a23); s += BlockQ;
        TOps.Store(s, a30); TOps.Store(s + w, a31); TOps.Store(s + 2 * w, a32); TOps.Store(s + 3 * w, a33);
    }

    /// <summary>Sᵀ[4 keys × 2W queries] = K[4 × E] · Qᵀ[E × 2W] (8 accumulators of 16 registers: AVX2, SSE).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScoreBlock2<TV, TOps>(float* k0, float* k1, float* k2, float* k3, int e, float* qt,
        float* s) where TV : struct where TOps : struct, IVec<TV>
    {
        int w = TOps.Width;
        TV a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        for (int d = 0; d < e; d++)
        {
            float* qr = qt + d * BlockQ;
            TV q0 = TOps.Load(qr), q1 = TOps.Load(qr + w);
            TV b0 = TOps.Broadcast(k0[d]); a00 = TOps.Fma(b0, q0, a00); a01 = TOps.Fma(b0, q1, a01);
            TV b1 = TOps.Broadcast(k1[d]); a10 = TOps.Fma(b1, q0, a10); a11 = TOps.Fma(b1, q1, a11);
            TV b2 = TOps.Broadcast(k2[d]); a20 = TOps.Fma(b2, q0, a20); a21 = TOps.Fma(b2, q1, a21);
            TV b3 = TOps.Broadcast(k3[d]); a30 = TOps.Fma(b3, q0, a30); a31 = TOps.Fma(b3, q1, a31);
        }
        TOps.Store(s, a00); TOps.Store(s + w, a01); s += BlockQ;
        TOps.Store(s, a10); TOps.Store(s + w, a11); s += BlockQ;
        TOps.Store(s, a20); TOps.Store(s + w, a21); s += BlockQ;
        TOps.Store(s, a30); TOps.Store(s + w, a31);
    }

    /// <summary>O[4 × 4W] = alpha·O + P[4 × nk] · V[nk × 4W] (32 registers), P read from the transposed tile (element (row r, key
    /// c) at <paramref name="pt"/>[c·BlockQ + r]); alpha[r] scales row r's accumulators as they are loaded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PvBlock4<TV, TOps>(float* pt, float* v, long ldv, int nk, float* o, int ldo,
        float* alpha) where TV : struct where TOps : struct, IVec<TV>
    {
        int w = TOps.Width;
        float* o0 = o, o1 = o + ldo, o2 = o + 2 * ldo, o3 = o + 3 * ldo;
        TV s0 = TOps.Broadcast(alpha[0]), s1 = TOps.Broadcast(alpha[1]), s2 = TOps.Broadcast(alpha[2]), s3 = TOps.Broadcast(alpha[3]);
        TV a00 = TOps.Mul(TOps.Load(o0), s0), a01 = TOps.Mul(TOps.Load(o0 + w), s0), a02 = TOps.Mul(TOps.Load(o0 + 2 * w), s0),
            a03 = TOps.Mul(TOps.Load(o0 + 3 * w), s0);
        TV a10 = TOps.Mul(TOps.Load(o1), s1), a11 = TOps.Mul(TOps.Load(o1 + w), s1), a12 = TOps.Mul(TOps.Load(o1 + 2 * w), s1),
            a13 = TOps.Mul(TOps.Load(o1 + 3 * w), s1);
        TV a20 = TOps.Mul(TOps.Load(o2), s2), a21 = TOps.Mul(TOps.Load(o2 + w), s2), a22 = TOps.Mul(TOps.Load(o2 + 2 * w), s2),
            a23 = TOps.Mul(TOps.Load(o2 + 3 * w), s2);
        TV a30 = TOps.Mul(TOps.Load(o3), s3), a31 = TOps.Mul(TOps.Load(o3 + w), s3), a32 = TOps.Mul(TOps.Load(o3 + 2 * w), s3),
            a33 = TOps.Mul(TOps.Load(o3 + 3 * w), s3);
        for (int c = 0; c < nk; c++)
        {
            float* vr = v + c * ldv, pr = pt + c * BlockQ;
            TV v0 = TOps.Load(vr), v1 = TOps.Load(vr + w), v2 = TOps.Load(vr + 2 * w), v3 = TOps.Load(vr + 3 * w);
            TV b0 = TOps.Broadcast(pr[0]); a00 = TOps.Fma(b0, v0, a00); a01 = TOps.Fma(b0, v1, a01); a02 = TOps.Fma(b0, v2,
                a02); a03 = TOps.Fma(b0, v3, a03);
            TV b1 = TOps.Broadcast(pr[1]); a10 = TOps.Fma(b1, v0, a10); a11 = TOps.Fma(b1, v1, a11); a12 = TOps.Fma(b1, v2,
                a12); a13 = TOps.Fma(b1, v3, a13);
            TV b2 = TOps.Broadcast(pr[2]); a20 = TOps.Fma(b2, v0, a20); a21 = TOps.Fma(b2, v1, a21); a22 = TOps.Fma(b2, v2,
                a22); a23 = TOps.Fma(b2, v3, a23);
            TV b3 = TOps.Broadcast(pr[3]); a30 = TOps.Fma(b3, v0, a30); a31 = TOps.Fma(b3, v1, a31); a32 = TOps.Fma(b3, v2,
                a32); a33 = TOps.Fma(b3, v3, a33);
        }
        TOps.Store(o0, a00); TOps.Store(o0 + w, a01); TOps.Store(o0 + 2 * w, a02); TOps.Store(o0 + 3 * w, a03);
        TOps.Store(o1, a10); TOps.Store(o1 + w, a11); TOps.Store(o1 + 2 * w, a12); TOps.Store(o1 + 3 * w, a13);
        TOps.Store(o2, a20); TOps.Store(o2 + w, a21); TOps.Store(o2 + 2 * w, a22); TOps.Store(o2 + 3 * w, a23);
        TOps.Store(o3, a30); TOps.Store(o3 + w, a31); TOps.Store(o3 + 2 * w, a32); TOps.Store(o3 + 3 * w, a33);
    }

    /// <summary>O[4 × 2W] = alpha·O + P[4 × nk] · V[nk × 2W], P transposed as in <see cref="PvBlock4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PvBlock2<TV, TOps>(float* pt, float* v, long ldv, int nk, float* o, int ldo,
        float* alpha) where TV : struct where TOps : struct, IVec<TV>
    {
        int w = TOps.Width;
        TV s0 = TOps.Broadcast(alpha[0]), s1 = TOps.Broadcast(alpha[1]), s2 = TOps.Broadcast(alpha[2]), s3 = TOps.Broadcast(alpha[3]);
        TV a00 = TOps.Mul(TOps.Load(o), s0), a01 = TOps.Mul(TOps.Load(o + w), s0), a10 = TOps.Mul(TOps.Load(o + ldo), s1),
            a11 = TOps.Mul(TOps.Load(o + ldo + w), s1);
        TV a20 = TOps.Mul(TOps.Load(o + 2 * ldo), s2), a21 = TOps.Mul(TOps.Load(o + 2 * ldo + w), s2),
            a30 = TOps.Mul(TOps.Load(o + 3 * ldo), s3), a31 = TOps.Mul(TOps.Load(o + 3 * ldo + w), s3);
        for (int c = 0; c < nk; c++)
        {
            float* vr = v + c * ldv, pr = pt + c * BlockQ;
            TV v0 = TOps.Load(vr), v1 = TOps.Load(vr + w);
            TV b0 = TOps.Broadcast(pr[0]); a00 = TOps.Fma(b0, v0, a00); a01 = TOps.Fma(b0, v1, a01);
            TV b1 = TOps.Broadcast(pr[1]); a10 = TOps.Fma(b1, v0, a10); a11 = TOps.Fma(b1, v1, a11);
            TV b2 = TOps.Broadcast(pr[2]); a20 = TOps.Fma(b2, v0, a20); a21 = TOps.Fma(b2, v1, a21);
            TV b3 = TOps.Broadcast(pr[3]); a30 = TOps.Fma(b3, v0, a30); a31 = TOps.Fma(b3, v1, a31);
        }
        TOps.Store(o, a00); TOps.Store(o + w, a01);
        TOps.Store(o + ldo, a10); TOps.Store(o + ldo + w, a11);
        TOps.Store(o + 2 * ldo, a20); TOps.Store(o + 2 * ldo + w, a21);
        TOps.Store(o + 3 * ldo, a30); TOps.Store(o + 3 * ldo + w, a31);
    }
}
