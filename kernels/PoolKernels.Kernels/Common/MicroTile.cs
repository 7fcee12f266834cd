using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace PoolKernels.Kernels;

/// <summary>
/// The broadcast micro-kernel shared by the packed GEMMs (<see cref="Heads.HeadsSimd.Gemm"/>, <see cref="DotGemm"/>):
/// a 12 × 32 tile of C accumulates Σ_t a[t·12 + r]·b[t·32 + ·] from x packed in 12-row micro-panels [t][12] and W in
/// 32-column panels [t][32]. AVX-512, per k step: two Vector512 loads of b, twelve broadcasts of a, 24 independent FMAs.
/// Vector128 (NEON, SSE-only x64; see <see cref="Packed"/>): the same packed layout in strips of 8 columns, 12 rows ×
/// 2 Vector128 = 24 accumulators where there are 32 registers (NEON), two strips of 6 rows where there are 16 (SSE);
/// its multiply-add is <c>MultiplyAddEstimate</c> (fused on NEON, a multiply and an add on SSE, which has no FMA).
/// AVX2 machines keep their own Vector256 kernels (the callers' fallbacks).
/// </summary>
internal static unsafe class MicroTile
{
    /// <summary>Rows and columns of the tile.</summary>
    public const int MR = 12, NR = 32;

    /// <summary>Whether the packed kernels run fast here: Vector512 accelerated (AVX-512), or Vector128 accelerated without
    /// Vector256 (the Vector128 form: NEON, SSE4). False on AVX2 machines and without hardware intrinsics, where callers keep
    /// their own kernels (every entry point still computes correctly at any width).</summary>
    public static bool Packed => Vector512.IsHardwareAccelerated || !Vector256.IsHardwareAccelerated && Vector128.IsHardwareAccelerated;

    private static bool Registers32 => AdvSimd.Arm64.IsSupported || Avx512F.VL.IsSupported;

    /// <summary>The 12 × 32 micro-kernel: C[r, 0..31] = Cin[r, ·] (0 when null) + Σ_t a[t·12 + r]·b[t·32 + ·] (+ bias),
    /// rows of C <paramref name="ldc"/> floats apart (y itself for whole tiles, the stack tile at the edges). Every 4th step
    /// prefetches (into L2) a line of the caller's next data: line t/16 of rows <paramref name="pf"/> + 0..3 ·
    /// <paramref name="pfStride"/> (DotGemm's next k block of B; null prefetches the panel itself, a no-op).</summary>
    public static void Tile(float* a, float* b, int kc, float* cin, float* cout, long ldc, float* bias, float* pf = null, long pfStride = 0)
    {
        if (Vector512.IsHardwareAccelerated) Tile512(a, b, kc, cin, cout, ldc, bias, pf, pfStride);
        else
            for (int q = 0; q < NR; q += 8)
                Strip(a, b + q, kc, cin == null ? null : cin + q, cout + q, ldc, bias == null ? null : bias + q);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile512(float* a, float* b, int kc, float* cin, float* cout, long ldc, float* bias, float* pf, long pfStride)
    {
        Vector512<float> c0_0, c0_1, c1_0, c1_1, c2_0, c2_1, c3_0, c3_1, c4_0, c4_1, c5_0, c5_1, c6_0, c6_1, c7_0, c7_1, c8_0, c8_1, c9_0,
            c9_1, c10_0, c10_1, c11_0, c11_1;
        if (cin == null)
        {
            c0_0 = c0_1 = c1_0 = c1_1 = c2_0 = c2_1 = c3_0 = c3_1 = c4_0 = c4_1 = c5_0 = c5_1 = c6_0 = c6_1 = c7_0 = c7_1 = c8_0 = c8_1
                = c9_0 = c9_1 = c10_0 = c10_1 = c11_0 = c11_1 = default;
        }
        else
        {
            c0_0 = Vector512.Load(cin + 0 * ldc); c0_1 = Vector512.Load(cin + 0 * ldc + 16);
            c1_0 = Vector512.Load(cin + 1 * ldc); c1_1 = Vector512.Load(cin + 1 * ldc + 16);
            c2_0 = Vector512.Load(cin + 2 * ldc); c2_1 = Vector512.Load(cin + 2 * ldc + 16);
            c3_0 = Vector512.Load(cin + 3 * ldc); c3_1 = Vector512.Load(cin + 3 * ldc + 16);
            c4_0 = Vector512.Load(cin + 4 * ldc); c4_1 = Vector512.Load(cin + 4 * ldc + 16);
            c5_0 = Vector512.Load(cin + 5 * ldc); c5_1 = Vector512.Load(cin + 5 * ldc + 16);
            c6_0 = Vector512.Load(cin + 6 * ldc); c6_1 = Vector512.Load(cin + 6 * ldc + 16);
            c7_0 = Vector512.Load(cin + 7 * ldc); c7_1 = Vector512.Load(cin + 7 * ldc + 16);
            c8_0 = Vector512.Load(cin + 8 * ldc); c8_1 = Vector512.Load(cin + 8 * ldc + 16);
            c9_0 = Vector512.Load(cin + 9 * ldc); c9_1 = Vector512.Load(cin + 9 * ldc + 16);
            c10_0 = Vector512.Load(cin + 10 * ldc); c10_1 = Vector512.Load(cin + 10 * ldc + 16);
            c11_0 = Vector512.Load(cin + 11 * ldc); c11_1 = Vector512.Load(cin + 11 * ldc + 16);
        }
        if (pf == null) { pf = b; pfStride = 0; } // the panel itself, already in cache: one loop serves both
        for (int t = 0; t < kc; t++, a += MR, b += NR)
        {
            // one line of the caller's next data every 4 steps: lines t/16 of rows pf, pf + pfStride, + 2, + 3
            if ((t & 3) == 0 && Sse.IsSupported) Sse.Prefetch1(pf + ((t >> 2) & 3) * pfStride + (t >> 4) * 16);
            var b0 = Vector512.Load(b); var b1 = Vector512.Load(b + 16);
            Vector512<float> s;
            s = Vector512.Create(a[0]); c0_0 = Vector512.FusedMultiplyAdd(s, b0, c0_0); c0_1 = Vector512.FusedMultiplyAdd(s, b1, c0_1);
            s = Vector512.Create(a[1]); c1_0 = Vector512.FusedMultiplyAdd(s, b0, c1_0); c1_1 = Vector512.FusedMultiplyAdd(s, b1, c1_1);
            s = Vector512.Create(a[2]); c2_0 = Vector512.FusedMultiplyAdd(s, b0, c2_0); c2_1 = Vector512.FusedMultiplyAdd(s, b1, c2_1);
            s = Vector512.Create(a[3]); c3_0 = Vector512.FusedMultiplyAdd(s, b0, c3_0); c3_1 = Vector512.FusedMultiplyAdd(s, b1, c3_1);
            s = Vector512.Create(a[4]); c4_0 = Vector512.FusedMultiplyAdd(s, b0, c4_0); c4_1 = Vector512.FusedMultiplyAdd(s, b1, c4_1);
            s = Vector512.Create(a[5]); c5_0 = Vector512.FusedMultiplyAdd(s, b0, c5_0); c5_1 = Vector512.FusedMultiplyAdd(s, b1, c5_1);
            s = Vector512.Create(a[6]); c6_0 = Vector512.FusedMultiplyAdd(s, b0, c6_0); c6_1 = Vector512.FusedMultiplyAdd(s, b1, c6_1);
            s = Vector512.Create(a[7]); c7_0 = Vector512.FusedMultiplyAdd(s, b0, c7_0); c7_1 = Vector512.FusedMultiplyAdd(s, b1, c7_1);
            s = Vector512.Create(a[8]); c8_0 = Vector512.FusedMultiplyAdd(s, b0, c8_0); c8_1 = Vector512.FusedMultiplyAdd(s, b1, c8_1);
            s = Vector512.Create(a[9]); c9_0 = Vector512.FusedMultiplyAdd(s, b0, c9_0); c9_1 = Vector512.FusedMultiplyAdd(s, b1, c9_1);
            s = Vector512.Create(a[10]); c10_0 = Vector512.FusedMultiplyAdd(s, b0, c10_0); c10_1 = Vector512.FusedMultiplyAdd(s, b1, c10_1);
            s = Vector512.Create(a[11]); c11_0 = Vector512.FusedMultiplyAdd(s, b0, c11_0); c11_1 = Vector512.FusedMultiplyAdd(s, b1, c11_1);
        }
        if (bias != null)
        {
            var bb0 = Vector512.Load(bias); var bb1 = Vector512.Load(bias + 16);
            c0_0 += bb0; c0_1 += bb1; c1_0 += bb0; c1_1 += bb1; c2_0 += bb0; c2_1 += bb1; c3_0 += bb0; c3_1 += bb1; c4_0 += bb0; c4_1 +=
                bb1; c5_0 += bb0; c5_1 += bb1; c6_0 += bb0; c6_1 += bb1; c7_0 += bb0; c7_1 += bb1; c8_0 += bb0; c8_1 += bb1; c9_0 += bb0;
            c9_1 += bb1; c10_0 += bb0; c10_1 += bb1; c11_0 += bb0; c11_1 += bb1;
        }
        c0_0.Store(cout + 0 * ldc); c0_1.Store(cout + 0 * ldc + 16);
        c1_0.Store(cout + 1 * ldc); c1_1.Store(cout + 1 * ldc + 16);
        c2_0.Store(cout + 2 * ldc); c2_1.Store(cout + 2 * ldc + 16);
        c3_0.Store(cout + 3 * ldc); c3_1.Store(cout + 3 * ldc + 16);
        c4_0.Store(cout + 4 * ldc); c4_1.Store(cout + 4 * ldc + 16);
        c5_0.Store(cout + 5 * ldc); c5_1.Store(cout + 5 * ldc + 16);
        c6_0.Store(cout + 6 * ldc); c6_1.Store(cout + 6 * ldc + 16);
        c7_0.Store(cout + 7 * ldc); c7_1.Store(cout + 7 * ldc + 16);
        c8_0.Store(cout + 8 * ldc); c8_1.Store(cout + 8 * ldc + 16);
        c9_0.Store(cout + 9 * ldc); c9_1.Store(cout + 9 * ldc + 16);
        c10_0.Store(cout + 10 * ldc); c10_1.Store(cout + 10 * ldc + 16);
        c11_0.Store(cout + 11 * ldc); c11_1.Store(cout + 11 * ldc + 16);
    }

    /// <summary>The first 16 columns only (a last panel of at most 16 real columns): acc[r·32 + 0..15] += Σ_t a[t·12 + r]·b[t·32 +
    /// 0..15].</summary>
    public static void Half(float* acc, float* a, float* b, int kc)
    {
        if (Vector512.IsHardwareAccelerated) Half512(acc, a, b, kc);
        else { Strip(a, b, kc, acc, acc, NR, null); Strip(a, b + 8, kc, acc + 8, acc + 8, NR, null); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Half512(float* acc, float* a, float* b, int kc)
    {
        var c0 = Vector512.Load(acc + 0); var c1 = Vector512.Load(acc + 32); var c2 = Vector512.Load(acc + 64); var c3 = Vector512.Load(acc
            + 96);
        var c4 = Vector512.Load(acc + 128); var c5 = Vector512.Load(acc + 160); var c6 = Vector512.Load(acc
            + 192); var c7 = Vector512.Load(acc + 224);
        var c8 = Vector512.Load(acc + 256); var c9 = Vector512.Load(acc + 288); var c10 = Vector512.Load(acc
            + 320); var c11 = Vector512.Load(acc + 352);
        for (int t = 0; t < kc; t++, a += MR, b += NR)
        {
            var b0 = Vector512.Load(b);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c0); c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b0,
                c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b0, c2); c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b0,
                c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(a[4]), b0, c4); c5 = Vector512.FusedMultiplyAdd(Vector512.Create(a[5]), b0,
                c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(a[6]), b0, c6); c7 = Vector512.FusedMultiplyAdd(Vector512.Create(a[7]), b0,
                c7);
            c8 = Vector512.FusedMultiplyAdd(Vector512.Create(a[8]), b0, c8); c9 = Vector512.FusedMultiplyAdd(Vector512.Create(a[9]), b0,
                c9);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[10]), b0, c10); c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[11]),
                b0, c11);
        }
        c0.Store(acc + 0); c1.Store(acc + 32); c2.Store(acc + 64); c3.Store(acc + 96); c4.Store(acc + 128); c5.Store(acc + 160);
        c6.Store(acc + 192); c7.Store(acc + 224); c8.Store(acc + 256); c9.Store(acc + 288); c10.Store(acc + 320); c11.Store(acc + 352);
    }

    /// <summary>The first 4 rows only (an edge tile of at most 4 real rows, e.g. the last 4 of 100 masks): acc[r·32 + ·] +=
    /// Σ_t a[t·12 + r]·b[t·32 + ·], r &lt; 4. 8 accumulators still cover the FMA latency, so such a tile costs a third of
    /// a 12-row one.</summary>
    public static void Rows4(float* acc, float* a, float* b, int kc)
    {
        if (Vector512.IsHardwareAccelerated) Rows4x512(acc, a, b, kc);
        else { Rows4x16(acc, a, b, kc); Rows4x16(acc + 16, a, b + 16, kc); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows4x512(float* acc, float* a, float* b, int kc)
    {
        var c0 = Vector512.Load(acc); var c1 = Vector512.Load(acc + 16); var c2 = Vector512.Load(acc + 32); var c3 = Vector512.Load(acc
            + 48);
        var c4 = Vector512.Load(acc + 64); var c5 = Vector512.Load(acc + 80); var c6 = Vector512.Load(acc + 96); var c7 = Vector512.Load(acc
            + 112);
        for (int t = 0; t < kc; t++, a += MR, b += NR)
        {
            var b0 = Vector512.Load(b); var b1 = Vector512.Load(b + 16);
            var s = Vector512.Create(a[0]); c0 = Vector512.FusedMultiplyAdd(s, b0, c0); c1 = Vector512.FusedMultiplyAdd(s, b1, c1);
            s = Vector512.Create(a[1]); c2 = Vector512.FusedMultiplyAdd(s, b0, c2); c3 = Vector512.FusedMultiplyAdd(s, b1, c3);
            s = Vector512.Create(a[2]); c4 = Vector512.FusedMultiplyAdd(s, b0, c4); c5 = Vector512.FusedMultiplyAdd(s, b1, c5);
            s = Vector512.Create(a[3]); c6 = Vector512.FusedMultiplyAdd(s, b0, c6); c7 = Vector512.FusedMultiplyAdd(s, b1, c7);
        }
        c0.Store(acc); c1.Store(acc + 16); c2.Store(acc + 32); c3.Store(acc + 48); c4.Store(acc + 64); c5.Store(acc + 80); c6.Store(acc
            + 96); c7.Store(acc + 112);
    }

    /// <summary>The Vector128 kernels' multiply-add a·b + c: fused on NEON (fmla), a multiply and an add on SSE.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Mad(Vector128<float> a, Vector128<float> b, Vector128<float> c) =>
        Vector128.MultiplyAddEstimate(a, b, c);

    /// <summary>Vector128: C[r, 0..7] = Cin (0 when null) + Σ_t a[t·12 + r]·b[t·32 + 0..7] (+ bias) for the 12 rows, b, cin,
    /// cout and bias already offset to the strip's first column.</summary>
    private static void Strip(float* a, float* b, int kc, float* cin, float* cout, long ldc, float* bias)
    {
        if (Registers32) Strip12(a, b, kc, cin, cout, ldc, bias);
        else
        {
            Strip6(a, b, kc, cin, cout, ldc, bias);
            Strip6(a + 6, b, kc, cin == null ? null : cin + 6 * ldc, cout + 6 * ldc, ldc, bias);
        }
    }

    /// <summary>12 rows × 8 columns: 24 Vector128 accumulators, two loads of b and twelve broadcasts per k step (NEON).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Strip12(float* a, float* b, int kc, float* cin, float* cout, long ldc, float* bias)
    {
        Vector128<float> c0_0, c0_1, c1_0, c1_1, c2_0, c2_1, c3_0, c3_1, c4_0, c4_1, c5_0, c5_1;
        Vector128<float> c6_0, c6_1, c7_0, c7_1, c8_0, c8_1, c9_0, c9_1, c10_0, c10_1, c11_0, c11_1;
        if (cin == null)
        {
            c0_0 = c0_1 = c1_0 = c1_1 = c2_0 = c2_1 = c3_0 = c3_1 = c4_0 = c4_1 = c5_0 = c5_1 = default;
            c6_0 = c6_1 = c7_0 = c7_1 = c8_0 = c8_1 = c9_0 = c9_1 = c10_0 = c10_1 = c11_0 = c11_1 = default;
        }
        else
        {
            c0_0 = Vector128.Load(cin); c0_1 = Vector128.Load(cin + 4);
            c1_0 = Vector128.Load(cin + ldc); c1_1 = Vector128.Load(cin + ldc + 4);
            c2_0 = Vector128.Load(cin + 2 * ldc); c2_1 = Vector128.Load(cin + 2 * ldc + 4);
            c3_0 = Vector128.Load(cin + 3 * ldc); c3_1 = Vector128.Load(cin + 3 * ldc + 4);
            c4_0 = Vector128.Load(cin + 4 * ldc); c4_1 = Vector128.Load(cin + 4 * ldc + 4);
            c5_0 = Vector128.Load(cin + 5 * ldc); c5_1 = Vector128.Load(cin + 5 * ldc + 4);
            c6_0 = Vector128.Load(cin + 6 * ldc); c6_1 = Vector128.Load(cin + 6 * ldc + 4);
            c7_0 = Vector128.Load(cin + 7 * ldc); c7_1 = Vector128.Load(cin + 7 * ldc + 4);
            c8_0 = Vector128.Load(cin + 8 * ldc); c8_1 = Vector128.Load(cin + 8 * ldc + 4);
            c9_0 = Vector128.Load(cin + 9 * ldc); c9_1 = Vector128.Load(cin + 9 * ldc + 4);
            c10_0 = Vector128.Load(cin + 10 * ldc); c10_1 = Vector128.Load(cin + 10 * ldc + 4);
            c11_0 = Vector128.Load(cin + 11 * ldc); c11_1 = Vector128.Load(cin + 11 * ldc + 4);
        }
        for (int t = 0; t < kc; t++, a += MR, b += NR)
        {
            var b0 = Vector128.Load(b); var b1 = Vector128.Load(b + 4);
            Vector128<float> s;
            s = Vector128.Create(a[0]); c0_0 = Mad(s, b0, c0_0); c0_1 = Mad(s, b1, c0_1);
            s = Vector128.Create(a[1]); c1_0 = Mad(s, b0, c1_0); c1_1 = Mad(s, b1, c1_1);
            s = Vector128.Create(a[2]); c2_0 = Mad(s, b0, c2_0); c2_1 = Mad(s, b1, c2_1);
            s = Vector128.Create(a[3]); c3_0 = Mad(s, b0, c3_0); c3_1 = Mad(s, b1, c3_1);
            s = Vector128.Create(a[4]); c4_0 = Mad(s, b0, c4_0); c4_1 = Mad(s, b1, c4_1);
            s = Vector128.Create(a[5]); c5_0 = Mad(s, b0, c5_0); c5_1 = Mad(s, b1, c5_1);
            s = Vector128.Create(a[6]); c6_0 = Mad(s, b0, c6_0); c6_1 = Mad(s, b1, c6_1);
            s = Vector128.Create(a[7]); c7_0 = Mad(s, b0, c7_0); c7_1 = Mad(s, b1, c7_1);
            s = Vector128.Create(a[8]); c8_0 = Mad(s, b0, c8_0); c8_1 = Mad(s, b1, c8_1);
            s = Vector128.Create(a[9]); c9_0 = Mad(s, b0, c9_0); c9_1 = Mad(s, b1, c9_1);
            s = Vector128.Create(a[10]); c10_0 = Mad(s, b0, c10_0); c10_1 = Mad(s, b1, c10_1);
            s = Vector128.Create(a[11]); c11_0 = Mad(s, b0, c11_0); c11_1 = Mad(s, b1, c11_1);
        }
        if (bias != null)
        {
            var bb0 = Vector128.Load(bias); var bb1 = Vector128.Load(bias + 4);
            c0_0 += bb0; c0_1 += bb1; c1_0 += bb0; c1_1 += bb1; c2_0 += bb0; c2_1 += bb1; c3_0 += bb0; c3_1 += bb1;
            c4_0 += bb0; c4_1 += bb1; c5_0 += bb0; c5_1 += bb1; c6_0 += bb0; c6_1 += bb1; c7_0 += bb0; c7_1 += bb1;
            c8_0 += bb0; c8_1 += bb1; c9_0 += bb0; c9_1 += bb1; c10_0 += bb0; c10_1 += bb1; c11_0 += bb0; c11_1 += bb1;
        }
        c0_0.Store(cout); c0_1.Store(cout + 4); c1_0.Store(cout + ldc); c1_1.Store(cout + ldc + 4);
        c2_0.Store(cout + 2 * ldc); c2_1.Store(cout + 2 * ldc + 4); c3_0.Store(cout + 3 * ldc); c3_1.Store(cout + 3 * ldc + 4);
        c4_0.Store(cout + 4 * ldc); c4_1.Store(cout + 4 * ldc + 4); c5_0.Store(cout + 5 * ldc); c5_1.Store(cout + 5 * ldc + 4);
        c6_0.Store(cout + 6 * ldc); c6_1.Store(cout + 6 * ldc + 4); c7_0.Store(cout + 7 * ldc); c7_1.Store(cout + 7 * ldc + 4);
        c8_0.Store(cout + 8 * ldc); c8_1.Store(cout + 8 * ldc + 4); c9_0.Store(cout + 9 * ldc); c9_1.Store(cout + 9 * ldc + 4);
        c10_0.Store(cout + 10 * ldc); c10_1.Store(cout + 10 * ldc + 4); c11_0.Store(cout + 11 * ldc); c11_1.Store(cout + 11 * ldc + 4);
    }

    /// <summary>6 rows × 8 columns (rows a[t·12 + 0..5]): 12 accumulators, for 16-register SSE.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Strip6(float* a, float* b, int kc, float* cin, float* cout, long ldc, float* bias)
    {
        Vector128<float> c0_0, c0_1, c1_0, c1_1, c2_0, c2_1, c3_0, c3_1, c4_0, c4_1, c5_0, c5_1;
        if (cin == null) c0_0 = c0_1 = c1_0 = c1_1 = c2_0 = c2_1 = c3_0 = c3_1 = c4_0 = c4_1 = c5_0 = c5_1 = default;
        else
        {
            c0_0 = Vector128.Load(cin); c0_1 = Vector128.Load(cin + 4);
            c1_0 = Vector128.Load(cin + ldc); c1_1 = Vector128.Load(cin + ldc + 4);
            c2_0 = Vector128.Load(cin + 2 * ldc); c2_1 = Vector128.Load(cin + 2 * ldc + 4);
            c3_0 = Vector128.Load(cin + 3 * ldc); c3_1 = Vector128.Load(cin + 3 * ldc + 4);
            c4_0 = Vector128.Load(cin + 4 * ldc); c4_1 = Vector128.Load(cin + 4 * ldc + 4);
            c5_0 = Vector128.Load(cin + 5 * ldc); c5_1 = Vector128.Load(cin + 5 * ldc + 4);
        }
        for (int t = 0; t < kc; t++, a += MR, b += NR)
        {
            var b0 = Vector128.Load(b); var b1 = Vector128.Load(b + 4);
            Vector128<float> s;
            s = Vector128.Create(a[0]); c0_0 = Mad(s, b0, c0_0); c0_1 = Mad(s, b1, c0_1);
            s = Vector128.Create(a[1]); c1_0 = Mad(s, b0, c1_0); c1_1 = Mad(s, b1, c1_1);
            s = Vector128.Create(a[2]); c2_0 = Mad(s, b0, c2_0); c2_1 = Mad(s, b1, c2_1);
            s = Vector128.Create(a[3]); c3_0 = Mad(s, b0, c3_0); c3_1 = Mad(s, b1, c3_1);
            s = Vector128.Create(a[4]); c4_0 = Mad(s, b0, c4_0); c4_1 = Mad(s, b1, c4_1);
            s = Vector128.Create(a[5]); c5_0 = Mad(s, b0, c5_0); c5_1 = Mad(s, b1, c5_1);
        }
        if (bias != null)
        {
            var bb0 = Vector128.Load(bias); var bb1 = Vector128.Load(bias + 4);
            c0_0 += bb0; c0_1 += bb1; c1_0 += bb0; c1_1 += bb1; c2_0 += bb0; c2_1 += bb1;
            c3_0 += bb0; c3_1 += bb1; c4_0 += bb0; c4_1 += bb1; c5_0 += bb0; c5_1 += bb1;
        }
        c0_0.Store(cout); c0_1.Store(cout + 4); c1_0.Store(cout + ldc); c1_1.Store(cout + ldc + 4);
        c2_0.Store(cout + 2 * ldc); c2_1.Store(cout + 2 * ldc + 4); c3_0.Store(cout + 3 * ldc); c3_1.Store(cout + 3 * ldc + 4);
        c4_0.Store(cout + 4 * ldc); c4_1.Store(cout + 4 * ldc + 4); c5_0.Store(cout + 5 * ldc); c5_1.Store(cout + 5 * ldc + 4);
    }

    /// <summary>Vector128, 4 rows × 16 columns: acc[r·32 + 0..15] += Σ_t a[t·12 + r]·b[t·32 + 0..15] (16 accumulators).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows4x16(float* acc, float* a, float* b, int kc)
    {
        var c00 = Vector128.Load(acc); var c01 = Vector128.Load(acc + 4); var c02 = Vector128.Load(acc + 8);
        var c03 = Vector128.Load(acc + 12); var c10 = Vector128.Load(acc + 32); var c11 = Vector128.Load(acc + 36);
        var c12 = Vector128.Load(acc + 40); var c13 = Vector128.Load(acc + 44); var c20 = Vector128.Load(acc + 64);
        var c21 = Vector128.Load(acc + 68); var c22 = Vector128.Load(acc + 72); var c23 = Vector128.Load(acc + 76);
        var c30 = Vector128.Load(acc + 96); var c31 = Vector128.Load(acc + 100); var c32 = Vector128.Load(acc + 104);
        var c33 = Vector128.Load(acc + 108);
        for (int t = 0; t < kc; t++, a += MR, b += NR)
        {
            var b0 = Vector128.Load(b); var b1 = Vector128.Load(b + 4);
            var b2 = Vector128.Load(b + 8); var b3 = Vector128.Load(b + 12);
            var s = Vector128.Create(a[0]);
            c00 = Mad(s, b0, c00); c01 = Mad(s, b1, c01);
            c02 = Mad(s, b2, c02); c03 = Mad(s, b3, c03);
            s = Vector128.Create(a[1]);
            c10 = Mad(s, b0, c10); c11 = Mad(s, b1, c11);
            c12 = Mad(s, b2, c12); c13 = Mad(s, b3, c13);
            s = Vector128.Create(a[2]);
            c20 = Mad(s, b0, c20); c21 = Mad(s, b1, c21);
            c22 = Mad(s, b2, c22); c23 = Mad(s, b3, c23);
            s = Vector128.Create(a[3]);
            c30 = Mad(s, b0, c30); c31 = Mad(s, b1, c31);
            c32 = Mad(s, b2, c32); c33 = Mad(s, b3, c33);
        }
        c00.Store(acc); c01.Store(acc + 4); c02.Store(acc + 8); c03.Store(acc + 12);
        c10.Store(acc + 32); c11.Store(acc + 36); c12.Store(acc + 40); c13.Store(acc + 44);
        c20.Store(acc + 64); c21.Store(acc + 68); c22.Store(acc + 72); c23.Store(acc + 76);
        c30.Store(acc + 96); c31.Store(acc + 100); c32.Store(acc + 104); c33.Store(acc + 108);
    }
}
