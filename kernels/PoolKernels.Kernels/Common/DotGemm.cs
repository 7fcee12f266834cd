using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels;

/// <summary>
/// The dot-product GEMM C[i,j] = Σ_t A[i,t]·B[j,t] for operands that are both rows along k (mask_pool's weights and
/// feature planes, MFB's activations and weight rows): nothing is transposed. AVX-512 only (callers keep their own
/// fallback). Work items are (problem, block of ≤ 128 A rows, block of B row groups). Per k block of <see cref="KB"/>
/// floats an item copies its A rows into 64-byte-aligned scratch [rows][KB] (zero-padded to a multiple of 16, summing
/// them on the way when the caller wants Σ_t A[i,t]), then per group of 6 B rows copies them into aligned scratch
/// [6][KB] (24 KB, L1) and runs a 4 × 6 register tile (24 zmm accumulators, 10 aligned loads per 24 FMAs) over every
/// group of 4 A rows; partial sums go through per-worker vector scratch (≤ 1 MB), summed horizontally once at the end.
/// The copies make it independent of the caller's alignment and of k % 16.
/// <para>Tried (mask_pool [8,256,64,64] × 100 masks, same process, min of 36 calls, FMA loop of the same FLOPs 4.8 ms):
/// operands read in place 10.2 ms on 64-byte-aligned input but 15-25 ms on managed arrays (split loads), copied 9.0 ms
/// on both; k blocks of 256/512/1024/2048 floats: 1024 best (~15% over 512); 1/2/4 B blocks per problem 7.6/7.6/7.9 ms
/// in one run. Later quiet runs of the same harness read 10.3-11 ms (45-50% of the FMA loop) at B = 8 and 45-56% at
/// B = 2 and 4: this VM moves such figures by ±20%. A [step][rows][16] micro-panel layout (one stream per operand) was no
/// better.</para>
/// </summary>
public static unsafe class DotGemm
{
    private const int TA = 4, TB = 6;
    /// <summary>Floats of k per block.</summary>
    public const int KB = 1024;

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
        // at most 32 A groups (128 rows, 512 KB per k block in L2) per item, as many B groups as keep the partial tiles
        // within 1 MB, then B split further until there are 4 items per worker
        int bGroups = (n + TB - 1) / TB, aGroups = (m + TA - 1) / TA;
        job.ABlocks = (aGroups + 31) / 32;
        job.AGroupsPerItem = (aGroups + job.ABlocks - 1) / job.ABlocks;
        int cap = Math.Max(1, (1 << 18) / (job.AGroupsPerItem * TA * TB * 16));
        int blocks = Math.Min(bGroups, Math.Max((bGroups + cap - 1) / cap, (4 * pool.Workers + batches * job.ABlocks - 1) / (batches * job.ABlocks)));
        job.BGroupsPerItem = (bGroups + blocks - 1) / blocks;
        job.BBlocks = (bGroups + job.BGroupsPerItem - 1) / job.BGroupsPerItem;
        int rows = job.AGroupsPerItem * TA;
        long need = (long)job.BGroupsPerItem * job.AGroupsPerItem * TA * TB * 16 + (long)rows * KB + TB * KB + rows + 16;
        pool.EnsureScratch(ref job.Scratch, need, pinned: true);
        job.A = a; job.Lda = lda; job.BatchA = batchA; job.B = b; job.Ldb = ldb; job.BatchB = batchB; job.C = c; job.Ldc = ldc; job.BatchC = batchC;
        job.M = m; job.N = n; job.K = k; job.Sums = rowSums;
        pool.Run(job, batches * job.ABlocks * job.BBlocks);
        job.A = job.B = job.C = job.Sums = null;
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float[]?[] Scratch = [];
        internal float* A, B, C, Sums; internal long Lda, Ldb, Ldc, BatchA, BatchB, BatchC;
        internal int M, N, K, BGroupsPerItem, BBlocks, AGroupsPerItem, ABlocks;

        public void Execute(int item, int worker)
        {
            int bb = item % BBlocks, ab = item / BBlocks % ABlocks, p = item / BBlocks / ABlocks;
            int g0 = bb * BGroupsPerItem, g1 = Math.Min((N + TB - 1) / TB, g0 + BGroupsPerItem);
            int aLo = ab * AGroupsPerItem * TA, na = Math.Min(M, aLo + AGroupsPerItem * TA) - aLo, aGroups = (na + TA - 1) / TA;
            int k = K, n = N;
            float* ap = A + p * BatchA + aLo * Lda, bp = B + p * BatchB;
            var buf = Scratch[worker]!;
            float* acc = (float*)(((nint)Unsafe.AsPointer(ref buf[0]) + 63) & ~(nint)63); // pinned; 64-byte aligned, all parts multiples of 16 floats
            float* apk = acc + (long)BGroupsPerItem * AGroupsPerItem * TA * TB * 16, bpk = apk + (long)AGroupsPerItem * TA * KB, sums = bpk + TB * KB;
            bool wantSums = Sums != null && bb == 0;
            new Span<float>(sums, na).Clear();
            for (int k0 = 0; k0 < k; k0 += KB)
            {
                int kc = Math.Min(KB, k - k0), kcp = (kc + 15) & ~15;
                for (int i = 0; i < na; i++)
                {
                    var src = new ReadOnlySpan<float>(ap + i * Lda + k0, kc);
                    var dst = new Span<float>(apk + (long)i * kcp, kcp);
                    src.CopyTo(dst);
                    dst[kc..].Clear();
                    if (wantSums) sums[i] += TensorPrimitives.Sum(src);
                }
                for (int g = g0; g < g1; g++)
                {
                    int j0 = g * TB;
                    for (int j = 0; j < TB; j++)
                    {
                        // a short last group repeats its last row (computed, not stored)
                        var dst = new Span<float>(bpk + j * kcp, kcp);
                        new ReadOnlySpan<float>(bp + Math.Min(j0 + j, n - 1) * Ldb + k0, kc).CopyTo(dst);
                        dst[kc..].Clear();
                    }
                    float* tiles = acc + (long)(g - g0) * AGroupsPerItem * TA * TB * 16;
                    for (int ag = 0; ag < aGroups; ag++)
                    {
                        int i0 = ag * TA; // a short last A group repeats its last row
                        float* a0 = apk + (long)Math.Min(i0, na - 1) * kcp, a1 = apk + (long)Math.Min(i0 + 1, na - 1) * kcp;
                        float* a2 = apk + (long)Math.Min(i0 + 2, na - 1) * kcp, a3 = apk + (long)Math.Min(i0 + 3, na - 1) * kcp;
                        Dot4x6(a0, a1, a2, a3, bpk, bpk + kcp, bpk + 2 * kcp, bpk + 3 * kcp, bpk + 4 * kcp, bpk + 5 * kcp, kcp / 16,
                            tiles + ag * TA * TB * 16, k0 == 0);
                    }
                }
            }
            if (wantSums) new Span<float>(sums, na).CopyTo(new Span<float>(Sums + (long)p * M + aLo, na));
            // horizontal sums into C
            for (int g = g0; g < g1; g++)
                for (int i = 0; i < na; i++)
                {
                    float* tile = acc + ((long)(g - g0) * AGroupsPerItem + i / TA) * TA * TB * 16 + i % TA * TB * 16;
                    float* dst = C + p * BatchC + (aLo + i) * Ldc + g * TB;
                    for (int j = 0; j < TB && g * TB + j < n; j++) dst[j] = Vector512.Sum(Vector512.Load(tile + j * 16));
                }
        }
    }

    /// <summary>acc[i·6 + j] (+)= Σ_s a_i[16s..16s+15] ⊙ b_j[16s..16s+15] for s &lt; steps: 4 × 6 lane-wise partial dot products.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4x6(float* a0, float* a1, float* a2, float* a3, float* b0, float* b1, float* b2, float* b3, float* b4, float* b5,
        int steps, float* acc, bool first)
    {
        Vector512<float> c00, c01, c02, c03, c04, c05, c10, c11, c12, c13, c14, c15, c20, c21, c22, c23, c24, c25, c30, c31, c32, c33, c34, c35;
        if (first)
        {
            c00 = c01 = c02 = c03 = c04 = c05 = c10 = c11 = c12 = c13 = c14 = c15 = default;
            c20 = c21 = c22 = c23 = c24 = c25 = c30 = c31 = c32 = c33 = c34 = c35 = default;
        }
        else
        {
            c00 = Vector512.Load(acc); c01 = Vector512.Load(acc + 16); c02 = Vector512.Load(acc + 32); c03 = Vector512.Load(acc + 48); c04 = Vector512.Load(acc + 64); c05 = Vector512.Load(acc + 80);
            c10 = Vector512.Load(acc + 96); c11 = Vector512.Load(acc + 112); c12 = Vector512.Load(acc + 128); c13 = Vector512.Load(acc + 144); c14 = Vector512.Load(acc + 160); c15 = Vector512.Load(acc + 176);
            c20 = Vector512.Load(acc + 192); c21 = Vector512.Load(acc + 208); c22 = Vector512.Load(acc + 224); c23 = Vector512.Load(acc + 240); c24 = Vector512.Load(acc + 256); c25 = Vector512.Load(acc + 272);
            c30 = Vector512.Load(acc + 288); c31 = Vector512.Load(acc + 304); c32 = Vector512.Load(acc + 320); c33 = Vector512.Load(acc + 336); c34 = Vector512.Load(acc + 352); c35 = Vector512.Load(acc + 368);
        }
        for (nint t = 0, n = (nint)steps * 16; t < n; t += 16)
        {
            var x0 = Vector512.Load(b0 + t); var x1 = Vector512.Load(b1 + t); var x2 = Vector512.Load(b2 + t);
            var x3 = Vector512.Load(b3 + t); var x4 = Vector512.Load(b4 + t); var x5 = Vector512.Load(b5 + t);
            var y = Vector512.Load(a0 + t);
            c00 = Vector512.FusedMultiplyAdd(y, x0, c00); c01 = Vector512.FusedMultiplyAdd(y, x1, c01); c02 = Vector512.FusedMultiplyAdd(y, x2, c02);
            c03 = Vector512.FusedMultiplyAdd(y, x3, c03); c04 = Vector512.FusedMultiplyAdd(y, x4, c04); c05 = Vector512.FusedMultiplyAdd(y, x5, c05);
            y = Vector512.Load(a1 + t);
            c10 = Vector512.FusedMultiplyAdd(y, x0, c10); c11 = Vector512.FusedMultiplyAdd(y, x1, c11); c12 = Vector512.FusedMultiplyAdd(y, x2, c12);
            c13 = Vector512.FusedMultiplyAdd(y, x3, c13); c14 = Vector512.FusedMultiplyAdd(y, x4, c14); c15 = Vector512.FusedMultiplyAdd(y, x5, c15);
            y = Vector512.Load(a2 + t);
            c20 = Vector512.FusedMultiplyAdd(y, x0, c20); c21 = Vector512.FusedMultiplyAdd(y, x1, c21); c22 = Vector512.FusedMultiplyAdd(y, x2, c22);
            c23 = Vector512.FusedMultiplyAdd(y, x3, c23); c24 = Vector512.FusedMultiplyAdd(y, x4, c24); c25 = Vector512.FusedMultiplyAdd(y, x5, c25);
            y = Vector512.Load(a3 + t);
            c30 = Vector512.FusedMultiplyAdd(y, x0, c30); c31 = Vector512.FusedMultiplyAdd(y, x1, c31); c32 = Vector512.FusedMultiplyAdd(y, x2, c32);
            c33 = Vector512.FusedMultiplyAdd(y, x3, c33); c34 = Vector512.FusedMultiplyAdd(y, x4, c34); c35 = Vector512.FusedMultiplyAdd(y, x5, c35);
        }
        c00.Store(acc); c01.Store(acc + 16); c02.Store(acc + 32); c03.Store(acc + 48); c04.Store(acc + 64); c05.Store(acc + 80);
        c10.Store(acc + 96); c11.Store(acc + 112); c12.Store(acc + 128); c13.Store(acc + 144); c14.Store(acc + 160); c15.Store(acc + 176);
        c20.Store(acc + 192); c21.Store(acc + 208); c22.Store(acc + 224); c23.Store(acc + 240); c24.Store(acc + 256); c25.Store(acc + 272);
        c30.Store(acc + 288); c31.Store(acc + 304); c32.Store(acc + 320); c33.Store(acc + 336); c34.Store(acc + 352); c35.Store(acc + 368);
    }
}
