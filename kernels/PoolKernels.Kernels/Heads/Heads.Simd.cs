using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Heads;

/// <summary>
/// The pooling-head building blocks, managed SIMD, multi-threaded on <see cref="WorkerPool"/>, allocation-free in
/// steady state (jobs cached per thread, scratch grown once).
/// <para>GEMM (<see cref="Gemm"/>): y = x·Wᵀ (+ bias) (+ residual) with W pre-packed (<see cref="Pack"/>) into column
/// panels of <see cref="NR"/> = 32 columns, [k][32] each, zero-padded past n: the micro-kernel then reads two
/// consecutive Vector512 per k step and broadcasts one x element per row, 12 rows × 32 columns = 24 independent FMA
/// accumulators (Vector256 machines: 3 rows × 4 vectors; Vector128-only machines: <see cref="MicroTile"/>'s Vector128
/// strips). Work items are 96-row blocks × groups of panels (as many panels
/// per item as still leave 4 items per worker); inside an item k runs in blocks of 256: the item's x rows are packed once
/// per k block into 12-row micro-panels [t][12] by register transposes (per-worker pinned scratch, 96 KB, L2), so the micro-kernel reads x
/// through one pointer with constant offsets. Row tile outer, panels inner: the tile's packed x (12 KB) stays in L1 while
/// the item's panel slices (256·32 floats each) stream from L2. Whole 12 × 32 tiles accumulate straight in y (residual or
/// zero before the first k block, bias added in registers after the last); edge tiles go through a stack tile. Rows past
/// m are packed as 0 (the Vector256 kernel repeats the last valid row) and not stored; columns past n are computed on the
/// zero padding and not stored. The
/// weights of a head are packed once at load time; the public Linear packs W per call into per-thread scratch.
/// Measurement history: perf/NOTES.md, "heads GEMM: design history".</para>
/// </summary>
internal static unsafe class HeadsSimd
{
    /// <summary>Columns per packed panel.</summary>
    public const int NR = 32;
    private const int RowBlock = 96, KC = 256, MR512 = 12, MaxPanels = 32;

    /// <summary>Floats of the packed form of an [n, k] weight.</summary>
    public static long PackedLength(int n, int k) => (long)((n + NR - 1) / NR) * NR * k;

    /// <summary>Packs W [n, k] into panels: packed[p·k·32 + t·32 + c] = W[p·32 + c, t] (0 past n).</summary>
    public static void Pack(ReadOnlySpan<float> w, int n, int k, Span<float> packed)
    {
        int panels = (n + NR - 1) / NR;
        for (int p = 0; p < panels; p++)
        {
            var dst = packed.Slice(p * k * NR, k * NR);
            for (int c = 0; c < NR; c++)
            {
                int j = p * NR + c;
                if (j >= n) { for (int t = 0; t < k; t++) dst[t * NR + c] = 0; continue; }
                var row = w.Slice(j * k, k);
                for (int t = 0; t < k; t++) dst[t * NR + c] = row[t];
            }
        }
    }

    /// <summary>y [m,n] = x [m,k] · Wᵀ + bias + residual, W packed by <see cref="Pack"/>. bias ([n]) and residual ([m,n],
    /// may alias y) are optional (null).</summary>
    public static void Gemm(float* x, float* packed, float* bias, float* residual, float* y, int m, int n, int k, WorkerPool? pool = null,
        int maxWorkers = int.MaxValue)
    {
        if (m == 0 || n == 0) return;
        pool ??= WorkerPool.Shared;
        var job = GemmJob.Cached ??= new GemmJob();
        // one packed x block per worker (pinned: the kernels hold raw pointers), only where the 12-row kernel runs
        if (MicroTile.Packed) pool.EnsureScratch(ref job.APack, (long)RowBlock * KC + 16, pinned: true);
        job.X = x; job.Packed = packed; job.Bias = bias; job.Residual = residual; job.Y = y; job.M = m; job.N = n; job.K = k;
        int rowBlocks = job.RowBlocks = (m + RowBlock - 1) / RowBlock;
        // As many panels per item as leave >= 4 items per worker: the x block is packed once per item and k block.
        int panels = (n + NR - 1) / NR, want = 4 * Math.Min(pool.Workers, maxWorkers);
        // ... and at most 32 panels (KC·32·32 floats = 1 MB of packed W per k block, which must stay in L2 across the item's
        // row tiles: all 64 panels of an N = 2048 weight ran at 62% of the FMA loop, 32 at ~77%)
        int groupsPerRowBlock = Math.Clamp(Math.Max((want + rowBlocks - 1) / rowBlocks, (panels + MaxPanels - 1) / MaxPanels), 1, panels);
        job.PanelsPerItem = (panels + groupsPerRowBlock - 1) / groupsPerRowBlock;
        job.Groups = (panels + job.PanelsPerItem - 1) / job.PanelsPerItem;
        pool.Run(job, rowBlocks * job.Groups, maxWorkers);
    }

    /// <summary>The public Linear: packs <paramref name="w"/> into per-thread scratch, then <see cref="Gemm"/>.</summary>
    public static void Linear(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, ReadOnlySpan<float> residual,
        Span<float> y,
        int m, int n, int k, WorkerPool? pool = null)
    {
        if (m == 0 || n == 0) return;
        long len = PackedLength(n, k);
        if (PackScratch is null || PackScratch.Length < len + 16) PackScratch = AllocatePacked(len);
        int at = AlignedOffset(PackScratch);
        Pack(w, n, k, PackScratch.AsSpan(at));
        fixed (float* px = x) fixed (float* pp = &PackScratch[at]) fixed (float* pb = bias) fixed (float* pr = residual) fixed (float* py
            = y)
            Gemm(px, pp, bias.IsEmpty ? null : pb, residual.IsEmpty ? null : pr, py, m, n, k, pool);
    }

    [ThreadStatic] private static float[]? PackScratch;

    /// <summary>A pinned array with room for <paramref name="packedLength"/> floats starting 64-byte aligned at
    /// <see cref="AlignedOffset"/> (panels 16 bytes off a cache line ran the GEMM ~6% slower: every B load split a line).</summary>
    public static float[] AllocatePacked(long packedLength) => GC.AllocateUninitializedArray<float>(checked((int)packedLength + 16),
        pinned: true);

    /// <summary>The first index of a pinned array (from <see cref="AllocatePacked"/>) whose address is a multiple of 64 bytes.</summary>
    public static int AlignedOffset(float[] pinned)
    {
        fixed (float* p = pinned) return (int)(WorkerPool.Aligned64(pinned) - p);
    }

    private sealed class GemmJob : IParallelJob
    {
        [ThreadStatic] internal static GemmJob? Cached;
        public float* X, Packed, Bias, Residual, Y;
        public int M, N, K, RowBlocks, Groups, PanelsPerItem;

        internal float[]?[] APack = [];

        public void Execute(int item, int worker)
        {
            int rb = item % RowBlocks, g = item / RowBlocks;
            int r0 = rb * RowBlock, r1 = Math.Min(M, r0 + RowBlock);
            int panels = (N + NR - 1) / NR;
            int p0 = g * PanelsPerItem, p1 = Math.Min(panels, p0 + PanelsPerItem);
            bool v512 = MicroTile.Packed; // AVX-512, or MicroTile's Vector128 form (NEON, SSE4); AVX2 runs Tile256
            int mr = v512 ? MR512 : 3;
            float* acc = stackalloc float[MR512 * NR];
            float[] aPack = v512 ? APack[worker]! : [];
            // k blocks of KC: the item's x rows are packed once per k block (see the loop orders below)
            for (int k0 = 0; k0 < K || k0 == 0; k0 += KC)
            {
                int kc = Math.Min(KC, K - k0);
                bool first = k0 == 0, last = k0 + KC >= K;
                fixed (float* ap = aPack)
                {
                    if (v512)
                    {
                        PackRows(ap, r0, r1, k0, kc);
                        // row tile outer, panels inner: the tile's packed x (KC·12 floats) stays in L1 while the item's panel
                        // slices stream from L2. Whole 12 × 32 tiles accumulate straight in y; edge tiles go through acc.
                        for (int i = r0; i < r1; i += mr)
                        {
                            int rows = Math.Min(mr, r1 - i);
                            float* at = ap + (long)(i - r0) * kc;
                            for (int p = p0; p < p1; p++)
                            {
                                float* bt = Packed + (long)p * K * NR + (long)k0 * NR;
                                int j0 = p * NR;
                                if (rows == mr && N - j0 >= NR)
                                {
                                    float* cout = Y + (long)i * N + j0;
                                    float* cin = first ? (Residual == null ? null : Residual + (long)i * N + j0) : cout;
                                    // the tile's first three panels prefetch its 12 x rows of the next k block (4 rows each)
                                    int pq = p - p0;
                                    float* pf = pq < 3 && k0 + 2 * KC <= K ? X + (long)(i + 4 * pq) * K + k0 + KC : null;
                                    MicroTile.Tile(at, bt, kc, cin, cout, N, last && Bias != null ? Bias + j0 : null, pf, K);
                                    continue;
                                }
                                Prologue(acc, i, p, rows, first);
                                // an edge tile of at most 4 rows runs the 4-row kernel; a last panel of at most 16 real columns only its
                                // first vector
                                if (rows <= 4) MicroTile.Rows4(acc, at, bt, kc);
                                else if (N - j0 <= 16) MicroTile.Half(acc, at, bt, kc);
                                else MicroTile.Tile(at, bt, kc, acc, acc, NR, null);
                                Epilogue(acc, i, p, rows, last);
                            }
                        }
                        continue;
                    }
                    for (int p = p0; p < p1; p++)
                        for (int i = r0; i < r1; i += mr)
                        {
                            int rows = Math.Min(mr, r1 - i);
                            Prologue(acc, i, p, rows, first);
                            Tile256(acc, Packed, i, p, rows, k0, kc);
                            Epilogue(acc, i, p, rows, last);
                        }
                }
            }
        }

        /// <summary>Packs x rows r0..r1-1, columns k0..k0+kc-1 into 12-row micro-panels [tile][t][12] by 16 × 16 register
        /// transposes (<see cref="Transpose16"/>; rows past r1 are 0 and never stored), so the micro-kernel reads one pointer
        /// with constant offsets. The 16-float stores at stride 12 need 16 floats of slack past the block.</summary>
        private void PackRows(float* ap, int r0, int r1, int k0, int kc)
        {
            int tiles = (r1 - r0 + MR512 - 1) / MR512;
            for (int ti = 0; ti < tiles; ti++)
            {
                int row = r0 + ti * MR512;
                Transpose16.Pack(X + (long)row * K + k0, K, Math.Min(MR512, r1 - row), kc, ap + (long)ti * MR512 * kc, MR512);
            }
        }

        /// <summary>Loads the accumulator tile: the residual (or 0) before the first k block, the partial sums in y after.</summary>
        private void Prologue(float* acc, int i, int p, int rows, bool first)
        {
            int j0 = p * NR, cols = Math.Min(NR, N - j0);
            new Span<float>(acc, MR512 * NR).Clear();
            float* src = first ? Residual : Y;
            if (src == null) return;
            for (int r = 0; r < rows; r++)
                new ReadOnlySpan<float>(src + (long)(i + r) * N + j0, cols).CopyTo(new Span<float>(acc + r * NR, cols));
        }

        /// <summary>Stores the part of the tile inside [m, n], adding the bias after the last k block.</summary>
        private void Epilogue(float* acc, int i, int p, int rows, bool last)
        {
            int j0 = p * NR, cols = Math.Min(NR, N - j0);
            for (int r = 0; r < rows; r++)
            {
                var src = new Span<float>(acc + r * NR, cols);
                var dst = new Span<float>(Y + (long)(i + r) * N + j0, cols);
                if (last && Bias != null) TensorPrimitives.Add(src, new ReadOnlySpan<float>(Bias + j0, cols), dst);
                else src.CopyTo(dst);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Tile256(float* acc, float* packed, int i, int p, int rows, int k0, int kc)
        {
            int k = K;
            float* a0 = X + (long)i * k + k0;
            float* a1 = rows > 1 ? a0 + k : a0, a2 = rows > 2 ? a0 + 2L * k : a0;
            float* b = packed + (long)p * k * NR + (long)k0 * NR;
            var c00 = Vector256.Load(acc); var c01 = Vector256.Load(acc + 8); var c02 = Vector256.Load(acc
                + 16); var c03 = Vector256.Load(acc + 24);
            var c10 = Vector256.Load(acc + 32); var c11 = Vector256.Load(acc + 40); var c12 = Vector256.Load(acc
                + 48); var c13 = Vector256.Load(acc + 56);
            var c20 = Vector256.Load(acc + 64); var c21 = Vector256.Load(acc + 72); var c22 = Vector256.Load(acc
                + 80); var c23 = Vector256.Load(acc + 88);
            for (int t = 0; t < kc; t++, b += NR)
            {
                var b0 = Vector256.Load(b); var b1 = Vector256.Load(b + 8); var b2 = Vector256.Load(b + 16); var b3 = Vector256.Load(b
                    + 24);
                var s = Vector256.Create(a0[t]);
                c00 = Vector256.FusedMultiplyAdd(s, b0, c00); c01 = Vector256.FusedMultiplyAdd(s, b1,
                    c01); c02 = Vector256.FusedMultiplyAdd(s, b2, c02); c03 = Vector256.FusedMultiplyAdd(s, b3, c03);
                s = Vector256.Create(a1[t]);
                c10 = Vector256.FusedMultiplyAdd(s, b0, c10); c11 = Vector256.FusedMultiplyAdd(s, b1,
                    c11); c12 = Vector256.FusedMultiplyAdd(s, b2, c12); c13 = Vector256.FusedMultiplyAdd(s, b3, c13);
                s = Vector256.Create(a2[t]);
                c20 = Vector256.FusedMultiplyAdd(s, b0, c20); c21 = Vector256.FusedMultiplyAdd(s, b1,
                    c21); c22 = Vector256.FusedMultiplyAdd(s, b2, c22); c23 = Vector256.FusedMultiplyAdd(s, b3, c23);
            }
            c00.Store(acc); c01.Store(acc + 8); c02.Store(acc + 16); c03.Store(acc + 24);
            c10.Store(acc + 32); c11.Store(acc + 40); c12.Store(acc + 48); c13.Store(acc + 56);
            c20.Store(acc + 64); c21.Store(acc + 72); c22.Store(acc + 80); c23.Store(acc + 88);
        }
    }

    // ------------------------------------------------------------------ LayerNorm

    /// <summary>Row-wise LayerNorm (see <see cref="HeadsReference.LayerNorm"/>), two passes per row in float.</summary>
    public static void LayerNorm(float* x, float* w, float* b, float* y, int rows, int dim, float eps, WorkerPool? pool = null)
    {
        if (rows == 0 || dim == 0) return;
        var job = RowsJob.Cached ??= new RowsJob();
        job.Kind = 0; job.X = x; job.W = w; job.B = b; job.Y = y; job.Dim = dim; job.Eps = eps; job.Rows = rows;
        (pool ?? WorkerPool.Shared).Run(job, (rows + RowsPerItem - 1) / RowsPerItem);
    }

    /// <summary>GEGLU rows: h [rows, 2f] → y [rows, f] = a ⊙ gelu(g).</summary>
    public static void Geglu(float* h, float* y, int rows, int f, WorkerPool? pool = null)
    {
        if (rows == 0 || f == 0) return;
        var job = RowsJob.Cached ??= new RowsJob();
        job.Kind = 1; job.X = h; job.Y = y; job.Dim = f; job.Rows = rows;
        (pool ?? WorkerPool.Shared).Run(job, (rows + RowsPerItem - 1) / RowsPerItem);
    }

    private const int RowsPerItem = 8;

    private sealed class RowsJob : IParallelJob
    {
        [ThreadStatic] internal static RowsJob? Cached;
        public int Kind, Dim, Rows;
        public float* X, W, B, Y;
        public float Eps;

        public void Execute(int item, int worker)
        {
            int r1 = Math.Min(Rows, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < r1; r++)
            {
                if (Kind == 0)
                {
                    var xr = new ReadOnlySpan<float>(X + (long)r * Dim, Dim);
                    var yr = new Span<float>(Y + (long)r * Dim, Dim);
                    float mean = TensorPrimitives.Sum(xr) / Dim;
                    TensorPrimitives.Subtract(xr, mean, yr);
                    float rstd = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(yr) / Dim + Eps);
                    TensorPrimitives.Multiply(yr, rstd, yr);
                    TensorPrimitives.FusedMultiplyAdd(yr, new ReadOnlySpan<float>(W, Dim), new ReadOnlySpan<float>(B, Dim), yr);
                }
                else GegluRow(X + (long)r * 2 * Dim, Y + (long)r * Dim, Dim);
            }
        }
    }

    private static void GegluRow(float* h, float* y, int f)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= f; i += 16)
                (Vector512.Load(h + i) * Gelu(Vector512.Load(h + f + i))).Store(y + i);
        for (; i < f; i++) y[i] = h[i] * HeadsMath.Gelu(h[f + i]);
    }

    /// <summary>Exact (erf) GELU on 16 lanes with <see cref="HeadsMath.Erf"/>'s rational erf.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Gelu(Vector512<float> g)
    {
        var x = Vector512.Min(Vector512.Max(g * Vector512.Create(0.70710678118654752f), Vector512.Create(-4f)), Vector512.Create(4f));
        var x2 = x * x;
        var p = Vector512.FusedMultiplyAdd(x2, Vector512.Create(HeadsMath.A13), Vector512.Create(HeadsMath.A11));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(HeadsMath.A9));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(HeadsMath.A7));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(HeadsMath.A5));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(HeadsMath.A3));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(HeadsMath.A1));
        var q = Vector512.FusedMultiplyAdd(x2, Vector512.Create(HeadsMath.B8), Vector512.Create(HeadsMath.B6));
        q = Vector512.FusedMultiplyAdd(q, x2, Vector512.Create(HeadsMath.B4));
        q = Vector512.FusedMultiplyAdd(q, x2, Vector512.Create(HeadsMath.B2));
        q = Vector512.FusedMultiplyAdd(q, x2, Vector512.Create(HeadsMath.B0));
        var erf = x * p / q;
        return Vector512.Create(0.5f) * g * (Vector512<float>.One + erf);
    }

    // ------------------------------------------------------------------ AddRows

    /// <summary>y[b,r,:] = x[b,r,:] (widened to float) + add[r,:] (add optional: null).</summary>
    public static void AddRows<T>(ReadOnlySpan<T> x, ReadOnlySpan<float> add, Span<float> y, int batch, int rows,
        int dim) where T : unmanaged
    {
        for (int b = 0; b < batch; b++)
            for (int r = 0; r < rows; r++)
            {
                long at = ((long)b * rows + r) * dim;
                var dst = y.Slice((int)at, dim);
                var src = Elements.AsFloats(x.Slice((int)at, dim), dst);
                if (!add.IsEmpty) TensorPrimitives.Add(src, add.Slice(r * dim, dim), dst);
                else if (typeof(T) == typeof(float)) src.CopyTo(dst);
            }
    }
}

/// <summary>Float erf and GELU shared by the SIMD and ILGPU kernels.</summary>
internal static class HeadsMath
{
    /// <summary>Numerator coefficients of the rational erf approximation on [-4, 4] (Eigen's/XLA's float erf; |error| ~1e-7).</summary>
    public const float A1 = -1.60960333262415e-02f, A3 = -2.95459980854025e-03f, A5 = -7.34990630326855e-04f, A7 = -5.69250639462346e-05f,
        A9 = -2.10102402082508e-06f, A11 = 2.77068142495902e-08f, A13 = -2.72614225801306e-10f;
    /// <summary>Denominator coefficients.</summary>
    public const float B0 = -1.42647390514189e-02f, B2 = -7.37332916720468e-03f, B4 = -1.68282697438203e-03f, B6 = -2.13374055278905e-04f,
        B8 = -1.45660718464996e-05f;

    /// <summary>erf(x) for float: x clamped to [-4, 4] (erf(4) = 1 - 1.5e-8; NaN passes both compares and stays NaN), then
    /// x·P(x²)/Q(x²).</summary>
    public static float Erf(float x)
    {
        x = x < -4f ? -4f : x > 4f ? 4f : x;
        float x2 = x * x;
        float p = x2 * A13 + A11; p = p * x2 + A9; p = p * x2 + A7; p = p * x2 + A5; p = p * x2 + A3; p = p * x2 + A1;
        float q = x2 * B8 + B6; q = q * x2 + B4; q = q * x2 + B2; q = q * x2 + B0;
        return x * p / q;
    }

    /// <summary>Exact GELU: g/2·(1 + erf(g/√2)).</summary>
    public static float Gelu(float g) => 0.5f * g * (1f + Erf(g * 0.70710678118654752f));
}
