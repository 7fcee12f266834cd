using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels;

/// <summary>
/// The GEMM C[i,j] = Σ_t A[i,t]·B[j,t] for operands that are both rows along k (mask_pool's weights and feature
/// planes, MFB's activations and weight rows), batched over problems. Fast where <see cref="MicroTile.Packed"/> (AVX-512,
/// and the Vector128 form on NEON / SSE4); callers keep their own fallback for AVX2 and no hardware intrinsics.
/// Both operands are packed per k block of <see cref="KC"/> floats by 16 × 16 register transposes — A into 12-row
/// micro-panels [t][12], B into 32-column panels [t][32] — and multiplied by the shared 12 × 32 broadcast micro-kernel
/// (<see cref="MicroTile"/>), accumulating straight in C (edge tiles through a stack tile). Work items are (problem,
/// block of ≤ 192 A rows, group of ≤ 16 B panels); an item packs its A rows and B panels once per k block (the packed B,
/// ≤ 768 KB, stays in L2) and runs row tiles outer, panels inner (a row tile's packed A, 18 KB, stays in L1), the
/// micro-kernel prefetching the next k block's B rows into L2 on the way (a line every 4 steps). Row sums of A, when
/// wanted, are summed from the transposed A vectors. Independent of the caller's alignment and of k % 16.
/// <para>Measurement history: perf/NOTES.md, "DotGemm: design history".</para>
/// </summary>
internal static unsafe class DotGemm
{
    private const int MR = MicroTile.MR, NR = MicroTile.NR, MaxRows = 192, MaxPanels = 16;
    /// <summary>Floats of k per block.</summary>
    public const int KC = 384;

    /// <summary>For each of <paramref name="batches"/> problems p: C_p[i,j] = Σ_t A_p[i,t]·B_p[j,t], i &lt; m, j &lt; n, t &lt; k;
    /// rows of A, B and C are lda/ldb/ldc floats apart and problem p's matrices start p·batchA/batchB/batchC floats in.
    /// <paramref name="rowSums"/> (optional, [batches·m]) receives Σ_t A_p[i,t]. Correct at every width; meant for
    /// <see cref="MicroTile.Packed"/> machines.</summary>
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
        job.A = a; job.Lda = lda; job.BatchA = batchA; job.B = b; job.Ldb = ldb; job.BatchB = batchB; job.C = c; job.Ldc = ldc; job.BatchC
            = batchC;
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
            float* bpk = WorkerPool.Aligned64(buf);
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
                        Transpose16.Pack(bp + (long)(q * NR + h) * Ldb + k0, Ldb, Math.Min(16, N - q * NR - h), kc,
                            bpk + (long)(q - q0) * kc * NR + h, NR);
                for (int ti = 0; ti < tiles; ti++)
                {
                    int i = r0 + ti * MR, rows = Math.Min(MR, r1 - i);
                    Transpose16.Pack(ap + i * Lda + k0, Lda, rows, kc, apk + (long)ti * kc * MR, MR, sums != null ? part : null);
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
                            MicroTile.Tile(at, bt, kc, first ? null : cout, cout, Ldc, null,
                                prefetch && pr + 4 <= N ? bp + pr * Ldb + kn : null, Ldb);
                            continue;
                        }
                        new Span<float>(acc, MR * NR).Clear();
                        if (!first)
                            for (int r = 0; r < rows; r++) new ReadOnlySpan<float>(cout + r * Ldc,
                                cols).CopyTo(new Span<float>(acc + r * NR, cols));
                        if (rows <= 4) MicroTile.Rows4(acc, at, bt, kc);
                        else if (cols <= 16) MicroTile.Half(acc, at, bt, kc);
                        else MicroTile.Tile(at, bt, kc, acc, acc, NR, null);
                        for (int r = 0; r < rows; r++) new ReadOnlySpan<float>(acc + r * NR, cols).CopyTo(new Span<float>(cout + r * Ldc,
                            cols));
                    }
                }
            }
        }
    }
}
