using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>mask_pool</c>, managed. A work item is (b, block of 16 masks): the 16 weight planes are built in per-worker scratch
/// (bilinear resize fused into the weight computation, no resized mask tensor), then x[b] is read once per block,
/// 4 channel planes × 4 weight planes at a time through the <see cref="DotTile"/> register micro-kernel (the weighted
/// sums are a [Q,HW]·[HW,C] product, done GEMM-style without forming it as one).
/// </summary>
public static unsafe class MaskPoolSimd
{
    private const int QBlock = 16;

    /// <summary>Runs into output [B,Q,C].</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> masks, Span<float> output, int batch, int channels, int height, int width,
        int queries, int mh, int mw, MaskType type, float threshold, float eps, WorkerPool pool)
    {
        if ((long)batch * queries * channels == 0) return;
        int hw = height * width;
        fixed (float* px = x) fixed (float* pm = masks) fixed (float* po = output)
        {
            if (Vector512.IsHardwareAccelerated && hw > 0)
            {
                RunBroadcast(px, pm, po, batch, channels, height, width, queries, mh, mw, type, threshold, eps, pool);
                return;
            }
            var job = Job.Cached ??= new();
            job.X = px; job.M = pm; job.Out = po; job.B = batch; job.C = channels; job.H = height; job.W = width; job.Q = queries;
            job.MH = mh; job.MW = mw; job.Type = type; job.Threshold = threshold; job.Eps = eps;
            job.QBlocks = (queries + QBlock - 1) / QBlock;
            if (job.Scratch is null || job.Scratch.Length < pool.Workers) job.Scratch = new float[pool.Workers][];
            for (int w = 0; w < pool.Workers; w++)
                if (job.Scratch[w] is null || job.Scratch[w].Length < QBlock * hw) job.Scratch[w] = new float[QBlock * hw];
            pool.Run(job, batch * job.QBlocks);
        }
    }

    /// <summary>The weight plane of one mask: bilinear resize (when sizes differ) fused with the weight rule.</summary>
    public static void ComputeWeights(float* m, int mh, int mw, int height, int width, MaskType type, float threshold, Span<float> wts)
    {
        int hw = height * width;
        if (mh == height && mw == width)
        {
            var src = new ReadOnlySpan<float>(m, hw);
            switch (type)
            {
                case MaskType.Soft: src.CopyTo(wts); break;
                case MaskType.SigmoidNormalized: TensorPrimitives.Sigmoid(src, wts); break;
                default: for (int i = 0; i < hw; i++) wts[i] = Bilinear.Weight(src[i], (int)type, threshold); break;
            }
            return;
        }
        for (int h = 0; h < height; h++)
        {
            Bilinear.Taps(h, mh, height, out int h0, out int h1, out float lh);
            for (int w = 0; w < width; w++)
            {
                Bilinear.Taps(w, mw, width, out int w0, out int w1, out float lw);
                float v = (1 - lh) * ((1 - lw) * m[h0 * mw + w0] + lw * m[h0 * mw + w1]) + lh * ((1 - lw) * m[h1 * mw + w0] + lw * m[h1 * mw + w1]);
                wts[h * width + w] = Bilinear.Weight(v, (int)type, threshold);
            }
        }
    }

    private const int Lanes = 128, CBlock = 32, HChunk = 64;

    // AVX-512 path. Phase 1 (items: b × 16 consecutive masks) writes every weight plane transposed, WT[b][q-tile][hw][128 lanes],
    // and its sum. Phase 2 (items: b × q-tile × 32 channels) computes out[b,q,c] = Σ_hw x[b,c,hw]·WT[..][hw][q] for
    // two channels at a time by broadcasting x over the 128 mask lanes: 8 loads feed 16 FMAs into 16 register
    // accumulators, no horizontal sums. hw runs in chunks of 64 (a 32 KB WT chunk stays in L1 for the block's 32 channels).
    private static void RunBroadcast(float* x, float* m, float* o, int batch, int channels, int height, int width, int queries, int mh, int mw,
        MaskType type, float threshold, float eps, WorkerPool pool)
    {
        int hw = height * width, qTiles = (queries + Lanes - 1) / Lanes;
        var wj = WeightJob.Cached ??= new();
        long wtLen = (long)batch * qTiles * hw * Lanes;
        if (wj.WT.Length < wtLen) wj.WT = new float[wtLen];
        if (wj.Denom.Length < batch * queries) wj.Denom = new float[batch * queries];
        if (wj.Row.Length < pool.Workers) wj.Row = new float[pool.Workers][];
        for (int w = 0; w < pool.Workers; w++) if (wj.Row[w] is null || wj.Row[w].Length < 16 * (hw + 16)) wj.Row[w] = new float[16 * (hw + 16)];
        fixed (float* wt = wj.WT) fixed (float* den = wj.Denom)
        {
            wj.M = m; wj.WTp = wt; wj.Den = den; wj.B = batch; wj.H = height; wj.W = width; wj.Q = queries; wj.MH = mh; wj.MW = mw;
            wj.Type = type; wj.Threshold = threshold; wj.Eps = eps; wj.QTiles = qTiles;
            pool.Run(wj, batch * ((queries + 15) / 16));
            var gj = GemmJob.Cached ??= new();
            if (gj.Acc.Length < pool.Workers) gj.Acc = new float[pool.Workers][];
            for (int w = 0; w < pool.Workers; w++) gj.Acc[w] ??= new float[CBlock * Lanes];
            gj.X = x; gj.WTp = wt; gj.Den = den; gj.Out = o; gj.B = batch; gj.C = channels; gj.HW = hw; gj.Q = queries; gj.QTiles = qTiles;
            gj.CBlocks = (channels + CBlock - 1) / CBlock;
            pool.Run(gj, batch * qTiles * gj.CBlocks);
        }
    }

    private sealed class WeightJob : IParallelJob
    {
        [ThreadStatic] internal static WeightJob? Cached;
        internal float[] WT = [], Denom = [];
        internal float[][] Row = [];
        internal float* M, WTp, Den; internal int B, H, W, Q, MH, MW, QTiles; internal MaskType Type; internal float Threshold, Eps;

        // one item = 16 consecutive masks, so each 64-byte line of WT is written by one worker only
        public void Execute(int item, int worker)
        {
            int groups = (Q + 15) / 16, b = item / groups, q0 = item % groups * 16, nq = Math.Min(16, Q - q0), hw = H * W;
            var rows = Row[worker];
            int stride = hw + 16; // rows exactly 2^k floats apart would share one L1 set in the gather below
            for (int j = 0; j < nq; j++)
            {
                var row = rows.AsSpan(j * stride, hw);
                ComputeWeights(M + ((long)b * Q + q0 + j) * MH * MW, MH, MW, H, W, Type, Threshold, row);
                Den[b * Q + q0 + j] = TensorPrimitives.Sum(row) + Eps;
            }
            float* dst = WTp + (((long)b * QTiles + q0 / Lanes) * hw) * Lanes + q0 % Lanes;
            fixed (float* r = rows)
                for (int i = 0; i < hw; i++)
                {
                    float* d = dst + (long)i * Lanes;
                    for (int j = 0; j < nq; j++) d[j] = r[j * stride + i];
                }
        }
    }

    private sealed class GemmJob : IParallelJob
    {
        [ThreadStatic] internal static GemmJob? Cached;
        internal float[][] Acc = [];
        internal float* X, WTp, Den, Out; internal int B, C, HW, Q, QTiles, CBlocks;

        public void Execute(int item, int worker)
        {
            int cb = item % CBlocks, rest = item / CBlocks, qt = rest % QTiles, b = rest / QTiles;
            int c0 = cb * CBlock, nc = Math.Min(CBlock, C - c0);
            float* wtBase = WTp + ((long)b * QTiles + qt) * HW * Lanes;
            fixed (float* acc = Acc[worker])
            {
                new Span<float>(acc, CBlock * Lanes).Clear();
                for (int h0 = 0; h0 < HW; h0 += HChunk)
                {
                    int n = Math.Min(HChunk, HW - h0);
                    for (int ci = 0; ci < nc; ci += 2)
                    {
                        bool pair = ci + 1 < nc;
                        float* xa = X + ((long)b * C + c0 + ci) * HW + h0, xb = pair ? xa + HW : xa;
                        Accumulate(xa, xb, wtBase + (long)h0 * Lanes, n, acc + ci * Lanes, acc + (pair ? ci + 1 : ci) * Lanes, pair);
                    }
                }
                // written in output order: each mask's 32 channels are one contiguous run of out
                int lanes = Math.Min(Lanes, Q - qt * Lanes);
                for (int l = 0; l < lanes; l++)
                {
                    int q = qt * Lanes + l;
                    float d = Den[b * Q + q];
                    float* dst = Out + ((long)b * Q + q) * C + c0;
                    for (int ci = 0; ci < nc; ci++) dst[ci] = d == 0 ? 0 : acc[ci * Lanes + l] / d;
                }
            }
        }

        private static void Accumulate(float* xa, float* xb, float* wt, int n, float* accA, float* accB, bool pair)
        {
            var a0 = Vector512.Load(accA); var a1 = Vector512.Load(accA + 16); var a2 = Vector512.Load(accA + 32); var a3 = Vector512.Load(accA + 48);
            var a4 = Vector512.Load(accA + 64); var a5 = Vector512.Load(accA + 80); var a6 = Vector512.Load(accA + 96); var a7 = Vector512.Load(accA + 112);
            var b0 = Vector512.Load(accB); var b1 = Vector512.Load(accB + 16); var b2 = Vector512.Load(accB + 32); var b3 = Vector512.Load(accB + 48);
            var b4 = Vector512.Load(accB + 64); var b5 = Vector512.Load(accB + 80); var b6 = Vector512.Load(accB + 96); var b7 = Vector512.Load(accB + 112);
            for (int k = 0; k < n; k++)
            {
                var x = Vector512.Create(xa[k]); var y = Vector512.Create(xb[k]);
                float* t = wt + (long)k * Lanes;
                var t0 = Vector512.Load(t); var t1 = Vector512.Load(t + 16); var t2 = Vector512.Load(t + 32); var t3 = Vector512.Load(t + 48);
                var t4 = Vector512.Load(t + 64); var t5 = Vector512.Load(t + 80); var t6 = Vector512.Load(t + 96); var t7 = Vector512.Load(t + 112);
                a0 = Vector512.FusedMultiplyAdd(x, t0, a0); a1 = Vector512.FusedMultiplyAdd(x, t1, a1); a2 = Vector512.FusedMultiplyAdd(x, t2, a2); a3 = Vector512.FusedMultiplyAdd(x, t3, a3);
                a4 = Vector512.FusedMultiplyAdd(x, t4, a4); a5 = Vector512.FusedMultiplyAdd(x, t5, a5); a6 = Vector512.FusedMultiplyAdd(x, t6, a6); a7 = Vector512.FusedMultiplyAdd(x, t7, a7);
                b0 = Vector512.FusedMultiplyAdd(y, t0, b0); b1 = Vector512.FusedMultiplyAdd(y, t1, b1); b2 = Vector512.FusedMultiplyAdd(y, t2, b2); b3 = Vector512.FusedMultiplyAdd(y, t3, b3);
                b4 = Vector512.FusedMultiplyAdd(y, t4, b4); b5 = Vector512.FusedMultiplyAdd(y, t5, b5); b6 = Vector512.FusedMultiplyAdd(y, t6, b6); b7 = Vector512.FusedMultiplyAdd(y, t7, b7);
            }
            a0.Store(accA); a1.Store(accA + 16); a2.Store(accA + 32); a3.Store(accA + 48); a4.Store(accA + 64); a5.Store(accA + 80); a6.Store(accA + 96); a7.Store(accA + 112);
            if (!pair) return;
            b0.Store(accB); b1.Store(accB + 16); b2.Store(accB + 32); b3.Store(accB + 48); b4.Store(accB + 64); b5.Store(accB + 80); b6.Store(accB + 96); b7.Store(accB + 112);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, M, Out; internal int B, C, H, W, Q, MH, MW, QBlocks; internal MaskType Type; internal float Threshold, Eps;
        internal float[][]? Scratch;

        private float* XRow(int b, int c) => X + ((long)b * C + c) * H * W;

        public void Execute(int item, int worker)
        {
            int b = item / QBlocks, q0 = item % QBlocks * QBlock, nq = Math.Min(QBlock, Q - q0), hw = H * W;
            var scratch = Scratch![worker];
            Span<float> denom = stackalloc float[QBlock];
            for (int j = 0; j < nq; j++)
            {
                var wts = scratch.AsSpan(j * hw, hw);
                ComputeWeights(M + ((long)b * Q + q0 + j) * MH * MW, MH, MW, H, W, Type, Threshold, wts);
                denom[j] = TensorPrimitives.Sum(wts) + Eps;
            }
            float* t = stackalloc float[16];
            fixed (float* w = scratch)
            {
                for (int c = 0; c < C; c += 4)
                {
                    int mc = Math.Min(4, C - c);
                    float* x0 = XRow(b, c), x1 = XRow(b, c + Math.Min(1, mc - 1)), x2 = XRow(b, c + Math.Min(2, mc - 1)), x3 = XRow(b, c + Math.Min(3, mc - 1));
                    for (int j = 0; j < nq; j += 4)
                    {
                        int mj = Math.Min(4, nq - j);
                        DotTile.Dot4x4(x0, x1, x2, x3, w + (long)j * hw, w + (long)(j + Math.Min(1, mj - 1)) * hw, w + (long)(j + Math.Min(2, mj - 1)) * hw,
                            w + (long)(j + Math.Min(3, mj - 1)) * hw, hw, t);
                        for (int a = 0; a < mc; a++)
                            for (int e = 0; e < mj; e++)
                                Out[((long)b * Q + q0 + j + e) * C + c + a] = denom[j + e] == 0 ? 0 : t[a * 4 + e] / denom[j + e];
                    }
                }
            }
        }
    }
}
