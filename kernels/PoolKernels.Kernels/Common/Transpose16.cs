using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace PoolKernels.Kernels;

/// <summary>
/// 16 × 16 register transposes: with AVX-512 two rounds of in-lane unpacks and two of 128-bit lane shuffles, 64 shuffles
/// per 256 floats; elsewhere (AVX2, SSE, NEON, no intrinsics) sixteen 4 × 4 Vector128 transposes (zip/unpack pairs, 8
/// shuffles per 16 floats), the same values.
/// Used to pack GEMM operands (<see cref="DotGemm"/>), to stage sdpa's Qᵀ, and to turn 16 planes into vectors over channels
/// for the small-plane spatial kernels (<see cref="Spatial.RegionalGemSimd"/>).
/// </summary>
internal static unsafe class Transpose16
{
    /// <summary>dst[t·ld + r] = src[r·lds + t] for r &lt; 16, t &lt; <paramref name="cols"/>: 16 rows of src become
    /// <paramref name="cols"/> vectors of 16 lanes. Rows past <paramref name="rows"/> read as 0; they are stored as 0
    /// unless <paramref name="exact"/> (then only lanes r &lt; rows are written, by masked stores). Without exact and with
    /// ld &lt; 16 each 16-float store runs into the next t's place (written after it), so dst needs 16 floats of slack.
    /// <paramref name="sums"/> (optional, 16 floats) receives Σ_t per row (summed in another order by each width).</summary>
    public static void Pack(float* src, long lds, int rows, int cols, float* dst, long ld, float* sums = null, bool exact = false)
    {
        if (Avx512F.IsSupported) Pack512(src, lds, rows, cols, dst, ld, sums, exact);
        else Pack128(src, lds, rows, cols, dst, ld, sums, exact);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pack512(float* src, long lds, int rows, int cols, float* dst, long ld, float* sums, bool exact)
    {
        var z = Vector512<float>.Zero;
        bool masked = exact && rows < 16;
        var keep = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(rows)).AsSingle();
        var sum = z;
        int t = 0;
        for (; t + 16 <= cols; t += 16)
        {
            float* s = src + t;
            var x0 = rows > 0 ? Vector512.Load(s) : z; var x1 = rows > 1 ? Vector512.Load(s + lds) : z;
            var x2 = rows > 2 ? Vector512.Load(s + 2 * lds) : z; var x3 = rows > 3 ? Vector512.Load(s + 3 * lds) : z;
            var x4 = rows > 4 ? Vector512.Load(s + 4 * lds) : z; var x5 = rows > 5 ? Vector512.Load(s + 5 * lds) : z;
            var x6 = rows > 6 ? Vector512.Load(s + 6 * lds) : z; var x7 = rows > 7 ? Vector512.Load(s + 7 * lds) : z;
            var x8 = rows > 8 ? Vector512.Load(s + 8 * lds) : z; var x9 = rows > 9 ? Vector512.Load(s + 9 * lds) : z;
            var x10 = rows > 10 ? Vector512.Load(s + 10 * lds) : z; var x11 = rows > 11 ? Vector512.Load(s + 11 * lds) : z;
            var x12 = rows > 12 ? Vector512.Load(s + 12 * lds) : z; var x13 = rows > 13 ? Vector512.Load(s + 13 * lds) : z;
            var x14 = rows > 14 ? Vector512.Load(s + 14 * lds) : z; var x15 = rows > 15 ? Vector512.Load(s + 15 * lds) : z;
            // pairs of rows interleaved, then quads (as doubles): u[4g+e] lane L = rows 4g..4g+3 at column 4L+e
            var t0 = Avx512F.UnpackLow(x0, x1); var t1 = Avx512F.UnpackHigh(x0, x1); var t2 = Avx512F.UnpackLow(x2,
                x3); var t3 = Avx512F.UnpackHigh(x2, x3);
            var t4 = Avx512F.UnpackLow(x4, x5); var t5 = Avx512F.UnpackHigh(x4, x5); var t6 = Avx512F.UnpackLow(x6,
                x7); var t7 = Avx512F.UnpackHigh(x6, x7);
            var t8 = Avx512F.UnpackLow(x8, x9); var t9 = Avx512F.UnpackHigh(x8, x9); var t10 = Avx512F.UnpackLow(x10,
                x11); var t11 = Avx512F.UnpackHigh(x10, x11);
            var t12 = Avx512F.UnpackLow(x12, x13); var t13 = Avx512F.UnpackHigh(x12, x13); var t14 = Avx512F.UnpackLow(x14,
                x15); var t15 = Avx512F.UnpackHigh(x14, x15);
            var u0 = Avx512F.UnpackLow(t0.AsDouble(), t2.AsDouble()).AsSingle(); var u1 = Avx512F.UnpackHigh(t0.AsDouble(),
                t2.AsDouble()).AsSingle();
            var u2 = Avx512F.UnpackLow(t1.AsDouble(), t3.AsDouble()).AsSingle(); var u3 = Avx512F.UnpackHigh(t1.AsDouble(),
                t3.AsDouble()).AsSingle();
            var u4 = Avx512F.UnpackLow(t4.AsDouble(), t6.AsDouble()).AsSingle(); var u5 = Avx512F.UnpackHigh(t4.AsDouble(),
                t6.AsDouble()).AsSingle();
            var u6 = Avx512F.UnpackLow(t5.AsDouble(), t7.AsDouble()).AsSingle(); var u7 = Avx512F.UnpackHigh(t5.AsDouble(),
                t7.AsDouble()).AsSingle();
            var u8 = Avx512F.UnpackLow(t8.AsDouble(), t10.AsDouble()).AsSingle(); var u9 = Avx512F.UnpackHigh(t8.AsDouble(),
                t10.AsDouble()).AsSingle();
            var u10 = Avx512F.UnpackLow(t9.AsDouble(), t11.AsDouble()).AsSingle(); var u11 = Avx512F.UnpackHigh(t9.AsDouble(),
                t11.AsDouble()).AsSingle();
            var u12 = Avx512F.UnpackLow(t12.AsDouble(), t14.AsDouble()).AsSingle(); var u13 = Avx512F.UnpackHigh(t12.AsDouble(),
                t14.AsDouble()).AsSingle();
            var u14 = Avx512F.UnpackLow(t13.AsDouble(), t15.AsDouble()).AsSingle(); var u15 = Avx512F.UnpackHigh(t13.AsDouble(),
                t15.AsDouble()).AsSingle();
            Columns(u0, u4, u8, u12, out var c0, out var c4, out var c8, out var c12);
            Columns(u1, u5, u9, u13, out var c1, out var c5, out var c9, out var c13);
            Columns(u2, u6, u10, u14, out var c2, out var c6, out var c10, out var c14);
            Columns(u3, u7, u11, u15, out var c3, out var c7, out var c11, out var c15);
            // ascending t: with ld < 16 a 16-float store runs into the next column's place, which is written after it
            float* d = dst + t * ld;
            if (masked)
            {
                Avx512F.MaskStore(d, keep, c0); Avx512F.MaskStore(d + ld, keep, c1); Avx512F.MaskStore(d + 2 * ld, keep,
                    c2); Avx512F.MaskStore(d + 3 * ld, keep, c3);
                Avx512F.MaskStore(d + 4 * ld, keep, c4); Avx512F.MaskStore(d + 5 * ld, keep, c5); Avx512F.MaskStore(d + 6 * ld, keep,
                    c6); Avx512F.MaskStore(d + 7 * ld, keep, c7);
                Avx512F.MaskStore(d + 8 * ld, keep, c8); Avx512F.MaskStore(d + 9 * ld, keep, c9); Avx512F.MaskStore(d + 10 * ld, keep,
                    c10); Avx512F.MaskStore(d + 11 * ld, keep, c11);
                Avx512F.MaskStore(d + 12 * ld, keep, c12); Avx512F.MaskStore(d + 13 * ld, keep, c13); Avx512F.MaskStore(d + 14 * ld, keep,
                    c14); Avx512F.MaskStore(d + 15 * ld, keep, c15);
            }
            else
            {
                c0.Store(d); c1.Store(d + ld); c2.Store(d + 2 * ld); c3.Store(d + 3 * ld); c4.Store(d + 4 * ld); c5.Store(d
                    + 5 * ld); c6.Store(d + 6 * ld); c7.Store(d + 7 * ld);
                c8.Store(d + 8 * ld); c9.Store(d + 9 * ld); c10.Store(d + 10 * ld); c11.Store(d + 11 * ld); c12.Store(d
                    + 12 * ld); c13.Store(d + 13 * ld); c14.Store(d + 14 * ld); c15.Store(d + 15 * ld);
            }
            if (sums != null) sum += ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11)) + ((c12 + c13) + (c14
                + c15));
        }
        if (sums != null) sum.Store(sums);
        Tail(src, lds, rows, cols, dst, ld, sums, exact, t);
    }

    /// <summary>Columns t.. of <see cref="Pack"/>, one float at a time (sums accumulate into what is already there).</summary>
    private static void Tail(float* src, long lds, int rows, int cols, float* dst, long ld, float* sums, bool exact, int t)
    {
        for (; t < cols; t++)
            for (int r = 0; r < 16; r++)
            {
                float v = r < rows ? src[r * lds + t] : 0;
                if (r < ld && (r < rows || !exact)) dst[t * ld + r] = v;
                if (sums != null && r < rows) sums[r] += v;
            }
    }

    /// <summary><see cref="Pack"/> by 4 × 4 Vector128 transposes: per 4 columns, the four row groups' transposes are held
    /// (16 registers: NEON has 32) and stored column by column in ascending t, so with ld &lt; 16 a store running into
    /// the next column's place is overwritten in order, as in the AVX-512 form.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pack128(float* src, long lds, int rows, int cols, float* dst, long ld, float* sums, bool exact)
    {
        var s0 = Vector128<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
        int t = 0;
        for (; t + 4 <= cols; t += 4)
        {
            float* s = src + t;
            Quad(s, lds, rows, out var a0, out var a1, out var a2, out var a3);
            Quad(s + 4 * lds, lds, rows - 4, out var b0, out var b1, out var b2, out var b3);
            Quad(s + 8 * lds, lds, rows - 8, out var c0, out var c1, out var c2, out var c3);
            Quad(s + 12 * lds, lds, rows - 12, out var e0, out var e1, out var e2, out var e3);
            float* d = dst + t * ld;
            Column(d, rows, exact, a0, b0, c0, e0); Column(d + ld, rows, exact, a1, b1, c1, e1);
            Column(d + 2 * ld, rows, exact, a2, b2, c2, e2); Column(d + 3 * ld, rows, exact, a3, b3, c3, e3);
            if (sums != null)
            {
                s0 += (a0 + a1) + (a2 + a3); s1 += (b0 + b1) + (b2 + b3);
                s2 += (c0 + c1) + (c2 + c3); s3 += (e0 + e1) + (e2 + e3);
            }
        }
        if (sums != null) { s0.Store(sums); s1.Store(sums + 4); s2.Store(sums + 8); s3.Store(sums + 12); }
        Tail(src, lds, rows, cols, dst, ld, sums, exact, t);
    }

    /// <summary>Rows 0..3 (those below <paramref name="rows"/>; the rest 0) of 4 columns at s, transposed: c_j = column j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad(float* s, long lds, int rows, out Vector128<float> c0, out Vector128<float> c1,
        out Vector128<float> c2, out Vector128<float> c3)
    {
        var z = Vector128<float>.Zero;
        if (rows <= 0) { c0 = c1 = c2 = c3 = z; return; }
        var x0 = Vector128.Load(s); var x1 = rows > 1 ? Vector128.Load(s + lds) : z;
        var x2 = rows > 2 ? Vector128.Load(s + 2 * lds) : z; var x3 = rows > 3 ? Vector128.Load(s + 3 * lds) : z;
        Transpose4(x0, x1, x2, x3, out c0, out c1, out c2, out c3);
    }

    /// <summary>A 4 × 4 transpose: rows x0..x3 in, columns out. NEON zip1/zip2 (.4s then .2d), SSE unpcklps/unpckhps then
    /// unpcklpd/unpckhpd, else lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose4(Vector128<float> x0, Vector128<float> x1, Vector128<float> x2, Vector128<float> x3,
        out Vector128<float> c0, out Vector128<float> c1, out Vector128<float> c2, out Vector128<float> c3)
    {
        if (AdvSimd.Arm64.IsSupported)
        {
            var t0 = AdvSimd.Arm64.ZipLow(x0, x1).AsDouble(); var t1 = AdvSimd.Arm64.ZipHigh(x0, x1).AsDouble();
            var t2 = AdvSimd.Arm64.ZipLow(x2, x3).AsDouble(); var t3 = AdvSimd.Arm64.ZipHigh(x2, x3).AsDouble();
            c0 = AdvSimd.Arm64.ZipLow(t0, t2).AsSingle(); c1 = AdvSimd.Arm64.ZipHigh(t0, t2).AsSingle();
            c2 = AdvSimd.Arm64.ZipLow(t1, t3).AsSingle(); c3 = AdvSimd.Arm64.ZipHigh(t1, t3).AsSingle();
        }
        else if (Sse2.IsSupported)
        {
            var t0 = Sse.UnpackLow(x0, x1).AsDouble(); var t1 = Sse.UnpackHigh(x0, x1).AsDouble();
            var t2 = Sse.UnpackLow(x2, x3).AsDouble(); var t3 = Sse.UnpackHigh(x2, x3).AsDouble();
            c0 = Sse2.UnpackLow(t0, t2).AsSingle(); c1 = Sse2.UnpackHigh(t0, t2).AsSingle();
            c2 = Sse2.UnpackLow(t1, t3).AsSingle(); c3 = Sse2.UnpackHigh(t1, t3).AsSingle();
        }
        else
        {
            c0 = Vector128.Create(x0[0], x1[0], x2[0], x3[0]); c1 = Vector128.Create(x0[1], x1[1], x2[1], x3[1]);
            c2 = Vector128.Create(x0[2], x1[2], x2[2], x3[2]); c3 = Vector128.Create(x0[3], x1[3], x2[3], x3[3]);
        }
    }

    /// <summary>Stores one column (16 lanes as four quads) at d: all 16 lanes unless exact, else only lanes r &lt; rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Column(float* d, int rows, bool exact,
        Vector128<float> q0, Vector128<float> q1, Vector128<float> q2, Vector128<float> q3)
    {
        if (!exact || rows >= 16) { q0.Store(d); q1.Store(d + 4); q2.Store(d + 8); q3.Store(d + 12); return; }
        Part(d, rows, q0); Part(d + 4, rows - 4, q1); Part(d + 8, rows - 8, q2); Part(d + 12, rows - 12, q3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Part(float* d, int n, Vector128<float> q)
    {
        if (n >= 4) q.Store(d);
        else for (int i = 0; i < n; i++) d[i] = q[i];
    }

    /// <summary>The inverse of packing 16 rows as lanes: dst[r·ld + t] = lanes[t·16 + r] for r &lt; <paramref name="rows"/>,
    /// t &lt; <paramref name="count"/>, 16 lane vectors at a time with masked stores (nothing else in dst is written). The
    /// channel-lane spatial kernels write their [positions][16] results back to [channel][positions] planes with it.</summary>
    public static void Unpack(float* lanes, int count, int rows, float* dst, long ld)
    {
        for (int t = 0; t < count; t += 16)
            Pack(lanes + (long)t * 16, 16, Math.Min(16, count - t), rows, dst + t, ld, exact: true);
    }

    /// <summary>Columns e, 4+e, 8+e, 12+e (all 16 rows) from the quads of rows 0-3, 4-7, 8-11, 12-15.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Columns(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d,
        out Vector512<float> c0, out Vector512<float> c4, out Vector512<float> c8, out Vector512<float> c12)
    {
        var v = Avx512F.Shuffle4x128(a, b, 0x88); var w = Avx512F.Shuffle4x128(a, b, 0xDD);
        var v2 = Avx512F.Shuffle4x128(c, d, 0x88); var w2 = Avx512F.Shuffle4x128(c, d, 0xDD);
        c0 = Avx512F.Shuffle4x128(v, v2, 0x88); c8 = Avx512F.Shuffle4x128(v, v2, 0xDD);
        c4 = Avx512F.Shuffle4x128(w, w2, 0x88); c12 = Avx512F.Shuffle4x128(w, w2, 0xDD);
    }
}
