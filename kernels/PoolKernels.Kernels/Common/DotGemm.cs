using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PoolKernels.Kernels;

/// <summary>
/// The GEMM C[i,j] = Σ_t A[i,t]·B[j,t] for operands that are both rows along k (mask_pool's weights and feature
/// planes, MFB's activations and weight rows), batched over problems. AVX-512 only (callers keep their own fallback).
/// Both operands are packed per k block of <see cref="KC"/> floats by 16 × 16 register transposes — A into 12-row
/// micro-panels [t][12], B into 32-column panels [t][32] — and multiplied by the shared 12 × 32 broadcast micro-kernel
/// (<see cref="MicroTile"/>), accumulating straight in C (edge tiles through a stack tile). Work items are (problem,
/// block of ≤ 192 A rows, group of ≤ 16 B panels); an item packs its A rows and B panels once per k block (the packed B,
/// ≤ 768 KB, stays in L2) and runs row tiles outer, panels inner (a row tile's packed A, 18 KB, stays in L1), the
/// micro-kernel prefetching the next k block's B rows into L2 on the way (a line every 4 steps). Row sums of A, when
/// wanted, are summed from the transposed A vectors. Independent of the caller's alignment and of k % 16.
/// <para>Measured (mask_pool [8,256,64,64] × 100 masks, same process, min of 36 calls, % of an FMA loop of the same
/// FLOPs): 64-66% against 55-57% for the former dot-product form (4 × 6 register tile of lane-wise dot products over
/// copied rows, whose A rows streamed from L2 at 4 lines per 24 FMAs), the micro-kernel alone 81-87%; packing B (X
/// transposed, 33 MB) costs the rest: ~12% when X is in L2, ~20% from L3; prefetching the next block's B from the
/// micro-kernel took 4-8% off (bursts of prefetches between tiles, or in the packing loop, did not help). k blocks of
/// 384/512 ~5% better than 256 and 128.</para>
/// </summary>
public static unsafe class DotGemm
{
    private const int MR = MicroTile.MR, NR = MicroTile.NR, MaxRows = 192, MaxPanels = 16;
    /// <summary>Floats of k per block.</summary>
    public const int KC = 384;

    /// <summary>For each of <paramref name="batches"/> problems p: C_p[i,j] = Σ_t A_p[i,t]·B_p[j,t], i &lt; m, j &lt; n, t &lt; k;
    /// rows of A, B and C are lda/ldb/ldc floats apart and problem p's matrices start p·batchA/batchB/batchC floats in.
    /// <paramref name="rowSums"/> (optional, [batches·m]) receives Σ_t A_p[i,t]. Requires AVX-512.</summary>
    public static void Run(float* a, long lda, long batchA, float* b, long ldb, long batchB, float* c, long ldc, long batchC,
        int m, int n, int k, int batches, float* rowSums, WorkerPool pool)
    {
        if (m == 0 || n == 0 || batches == 0) return;
        if (k == 0)
        {
            for (int p = 0; p < batches; p++)
                for (int i = 0; i < m; i++) new Span<float>(c + p * batchC + i * ldc, n).Clear();
            if (rowSums != null) new Span<float>(rowSums, batches * m).Clear();
            return;
        }
        var job = Job.Cached ??= new();
        int tiles = (m + MR - 1) / MR, rowBlocks = (tiles * MR + MaxRows - 1) / MaxRows;
        job.TilesPerBlock = (tiles + rowBlocks - 1) / rowBlocks;
        job.RowBlocks = (tiles + job.TilesPerBlock - 1) / job.TilesPerBlock;
        // panels split until there are 4 items per worker (or at most 16 panels per item)
        int panels = (n + NR - 1) / NR, outer = batches * job.RowBlocks;
        int groups = Math.Clamp(Math.Max((4 * pool.Workers + outer - 1) / outer, (panels + MaxPanels - 1) / MaxPanels), 1, panels);
        job.PanelsPerItem = (panels + groups - 1) / groups;
        job.Groups = (panels + job.PanelsPerItem - 1) / job.PanelsPerItem;
        // packed B, packed A, 16 floats of slack for the 16-float stores at stride 12, 16 for alignment
        long need = (long)job.PanelsPerItem * NR * KC + (long)job.TilesPerBlock * MR * KC + 32;
        pool.EnsureScratch(ref job.Scratch, need, pinned: true);
        job.A = a; job.Lda = lda; job.BatchA = batchA; job.B = b; job.Ldb = ldb; job.BatchB = batchB; job.C = c; job.Ldc = ldc; job.BatchC = batchC;
        job.M = m; job.N = n; job.K = k; job.Sums = rowSums;
        pool.Run(job, outer * job.Groups);
        job.A = job.B = job.C = job.Sums = null;
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float[]?[] Scratch = [];
        internal float* A, B, C, Sums; internal long Lda, Ldb, Ldc, BatchA, BatchB, BatchC;
        internal int M, N, K, TilesPerBlock, RowBlocks, PanelsPerItem, Groups;

        public void Execute(int item, int worker)
        {
            int g = item % Groups, rb = item / Groups % RowBlocks, p = item / Groups / RowBlocks;
            int r0 = rb * TilesPerBlock * MR, r1 = Math.Min(M, r0 + TilesPerBlock * MR), tiles = (r1 - r0 + MR - 1) / MR;
            int panels = (N + NR - 1) / NR, q0 = g * PanelsPerItem, q1 = Math.Min(panels, q0 + PanelsPerItem);
            float* ap = A + p * BatchA, bp = B + p * BatchB, cp = C + p * BatchC;
            var buf = Scratch[worker]!;
            float* bpk = (float*)(((nint)Unsafe.AsPointer(ref buf[0]) + 63) & ~(nint)63); // pinned
            float* apk = bpk + (long)PanelsPerItem * NR * KC;
            float* sums = Sums != null && g == 0 ? Sums + (long)p * M : null; // one item per row block sums A
            float* acc = stackalloc float[MR * NR];
            float* part = stackalloc float[16];
            for (int k0 = 0; k0 < K; k0 += KC)
            {
                int kc = Math.Min(KC, K - k0);
                bool first = k0 == 0;
                for (int q = q0; q < q1; q++)
                    for (int h = 0; h < NR; h += 16)
                        PackTransposed(bp, Ldb, q * NR + h, Math.Min(16, N - q * NR - h), k0, kc, bpk + (long)(q - q0) * kc * NR + h, NR, null);
                for (int ti = 0; ti < tiles; ti++)
                {
                    int i = r0 + ti * MR, rows = Math.Min(MR, r1 - i);
                    PackTransposed(ap, Lda, i, rows, k0, kc, apk + (long)ti * kc * MR, MR, sums != null ? part : null);
                    if (sums != null)
                        for (int r = 0; r < rows; r++) sums[i + r] = (first ? 0 : sums[i + r]) + part[r];
                }
                // row tiles outer, panels inner; whole tiles accumulate straight in C, edge tiles through acc. Whole tiles
                // prefetch the next k block of B into L2, 4 rows of their panel each (rows 4·(ti mod 8) + 0..3).
                int kn = k0 + KC;
                bool prefetch = kn + KC <= K;
                for (int ti = 0; ti < tiles; ti++)
                {
                    int i = r0 + ti * MR, rows = Math.Min(MR, r1 - i);
                    float* at = apk + (long)ti * kc * MR;
                    for (int q = q0; q < q1; q++)
                    {
                        int j0 = q * NR, cols = Math.Min(NR, N - j0);
                        float* bt = bpk + (long)(q - q0) * kc * NR, cout = cp + i * Ldc + j0;
                        if (rows == MR && cols == NR)
                        {
                            int pr = j0 + ti % 8 * 4;
                            MicroTile.Tile(at, bt, kc, first ? null : cout, cout, Ldc, null, prefetch && pr + 4 <= N ? bp + pr * Ldb + kn : null, Ldb);
                            continue;
                        }
                        new Span<float>(acc, MR * NR).Clear();
                        if (!first)
                            for (int r = 0; r < rows; r++) new ReadOnlySpan<float>(cout + r * Ldc, cols).CopyTo(new Span<float>(acc + r * NR, cols));
                        if (rows <= 4) MicroTile.Rows4(acc, at, bt, kc);
                        else if (cols <= 16) MicroTile.Half(acc, at, bt, kc);
                        else MicroTile.Tile(at, bt, kc, acc, acc, NR, null);
                        for (int r = 0; r < rows; r++) new ReadOnlySpan<float>(acc + r * NR, cols).CopyTo(new Span<float>(cout + r * Ldc, cols));
                    }
                }
            }
        }
    }

    /// <summary>dst[t·ld + r] = src[(r0 + r)·lds + k0 + t] for r &lt; 16 (rows past <paramref name="rows"/> are 0), t &lt; kc,
    /// by 16 × 16 register transposes; with ld &lt; 16 each 16-float store runs into the next t's (written after it),
    /// so dst needs 16 floats of slack. sums (optional) receives Σ_t per row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackTransposed(float* src, long lds, int r0, int rows, int k0, int kc, float* dst, int ld, float* sums)
    {
        var z = Vector512<float>.Zero;
        float* s0 = src + r0 * lds + k0;
        var sum = z;
        int t = 0;
        for (; t + 16 <= kc; t += 16)
        {
            float* s = s0 + t;
            var x0 = rows > 0 ? Vector512.Load(s) : z; var x1 = rows > 1 ? Vector512.Load(s + lds) : z;
            var x2 = rows > 2 ? Vector512.Load(s + 2 * lds) : z; var x3 = rows > 3 ? Vector512.Load(s + 3 * lds) : z;
            var x4 = rows > 4 ? Vector512.Load(s + 4 * lds) : z; var x5 = rows > 5 ? Vector512.Load(s + 5 * lds) : z;
            var x6 = rows > 6 ? Vector512.Load(s + 6 * lds) : z; var x7 = rows > 7 ? Vector512.Load(s + 7 * lds) : z;
            var x8 = rows > 8 ? Vector512.Load(s + 8 * lds) : z; var x9 = rows > 9 ? Vector512.Load(s + 9 * lds) : z;
            var x10 = rows > 10 ? Vector512.Load(s + 10 * lds) : z; var x11 = rows > 11 ? Vector512.Load(s + 11 * lds) : z;
            var x12 = rows > 12 ? Vector512.Load(s + 12 * lds) : z; var x13 = rows > 13 ? Vector512.Load(s + 13 * lds) : z;
            var x14 = rows > 14 ? Vector512.Load(s + 14 * lds) : z; var x15 = rows > 15 ? Vector512.Load(s + 15 * lds) : z;
            // pairs of rows interleaved, then quads (as doubles): u[4g+e] lane L = rows 4g..4g+3 at column 4L+e
            var t0 = Avx512F.UnpackLow(x0, x1); var t1 = Avx512F.UnpackHigh(x0, x1); var t2 = Avx512F.UnpackLow(x2, x3); var t3 = Avx512F.UnpackHigh(x2, x3);
            var t4 = Avx512F.UnpackLow(x4, x5); var t5 = Avx512F.UnpackHigh(x4, x5); var t6 = Avx512F.UnpackLow(x6, x7); var t7 = Avx512F.UnpackHigh(x6, x7);
            var t8 = Avx512F.UnpackLow(x8, x9); var t9 = Avx512F.UnpackHigh(x8, x9); var t10 = Avx512F.UnpackLow(x10, x11); var t11 = Avx512F.UnpackHigh(x10, x11);
            var t12 = Avx512F.UnpackLow(x12, x13); var t13 = Avx512F.UnpackHigh(x12, x13); var t14 = Avx512F.UnpackLow(x14, x15); var t15 = Avx512F.UnpackHigh(x14, x15);
            var u0 = Avx512F.UnpackLow(t0.AsDouble(), t2.AsDouble()).AsSingle(); var u1 = Avx512F.UnpackHigh(t0.AsDouble(), t2.AsDouble()).AsSingle();
            var u2 = Avx512F.UnpackLow(t1.AsDouble(), t3.AsDouble()).AsSingle(); var u3 = Avx512F.UnpackHigh(t1.AsDouble(), t3.AsDouble()).AsSingle();
            var u4 = Avx512F.UnpackLow(t4.AsDouble(), t6.AsDouble()).AsSingle(); var u5 = Avx512F.UnpackHigh(t4.AsDouble(), t6.AsDouble()).AsSingle();
            var u6 = Avx512F.UnpackLow(t5.AsDouble(), t7.AsDouble()).AsSingle(); var u7 = Avx512F.UnpackHigh(t5.AsDouble(), t7.AsDouble()).AsSingle();
            var u8 = Avx512F.UnpackLow(t8.AsDouble(), t10.AsDouble()).AsSingle(); var u9 = Avx512F.UnpackHigh(t8.AsDouble(), t10.AsDouble()).AsSingle();
            var u10 = Avx512F.UnpackLow(t9.AsDouble(), t11.AsDouble()).AsSingle(); var u11 = Avx512F.UnpackHigh(t9.AsDouble(), t11.AsDouble()).AsSingle();
            var u12 = Avx512F.UnpackLow(t12.AsDouble(), t14.AsDouble()).AsSingle(); var u13 = Avx512F.UnpackHigh(t12.AsDouble(), t14.AsDouble()).AsSingle();
            var u14 = Avx512F.UnpackLow(t13.AsDouble(), t15.AsDouble()).AsSingle(); var u15 = Avx512F.UnpackHigh(t13.AsDouble(), t15.AsDouble()).AsSingle();
            Columns(u0, u4, u8, u12, out var c0, out var c4, out var c8, out var c12);
            Columns(u1, u5, u9, u13, out var c1, out var c5, out var c9, out var c13);
            Columns(u2, u6, u10, u14, out var c2, out var c6, out var c10, out var c14);
            Columns(u3, u7, u11, u15, out var c3, out var c7, out var c11, out var c15);
            // ascending t: with ld < 16 a 16-float store runs into the next column's place, which is written after it
            float* d = dst + (long)t * ld;
            c0.Store(d); c1.Store(d + ld); c2.Store(d + 2 * ld); c3.Store(d + 3 * ld); c4.Store(d + 4 * ld); c5.Store(d + 5 * ld); c6.Store(d + 6 * ld); c7.Store(d + 7 * ld);
            c8.Store(d + 8 * ld); c9.Store(d + 9 * ld); c10.Store(d + 10 * ld); c11.Store(d + 11 * ld); c12.Store(d + 12 * ld); c13.Store(d + 13 * ld); c14.Store(d + 14 * ld); c15.Store(d + 15 * ld);
            if (sums != null) sum += ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11)) + ((c12 + c13) + (c14 + c15));
        }
        if (sums != null) sum.Store(sums);
        for (; t < kc; t++)
            for (int r = 0; r < 16; r++)
            {
                float v = r < rows ? s0[r * lds + t] : 0;
                if (r < ld) dst[(long)t * ld + r] = v;
                if (sums != null && r < rows) sums[r] += v;
            }
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
