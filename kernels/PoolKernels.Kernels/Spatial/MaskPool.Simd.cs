using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using PoolKernels.Kernels.Heads;

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

    private const int Lanes = HeadsSimd.NR;

    // AVX-512 path. Phase 1 (items: b × 16 consecutive masks) writes every weight plane straight into the packed form
    // HeadsSimd.Gemm reads, WT[b][32-mask panel][hw][32 lanes] (zero past Q), and its sum. Phase 2, per batch: the packed
    // GEMM y[C,Q] = x[b][C,HW] · W[b]ᵀ (x[b] is already the row-major left operand), then out[b,q,c] = y[c,q] / (Σw + eps).
    private static void RunBroadcast(float* x, float* m, float* o, int batch, int channels, int height, int width, int queries, int mh, int mw,
        MaskType type, float threshold, float eps, WorkerPool pool)
    {
        int hw = height * width, qTiles = (queries + Lanes - 1) / Lanes;
        var wj = WeightJob.Cached ??= new();
        long wtLen = (long)batch * qTiles * hw * Lanes;
        if (wj.WT.Length < wtLen) wj.WT = GC.AllocateArray<float>((int)wtLen, pinned: true);
        if (wj.Denom.Length < batch * queries) wj.Denom = new float[batch * queries];
        if (wj.Y.Length < channels * queries) wj.Y = new float[channels * queries];
        if (wj.Row.Length < pool.Workers) wj.Row = new float[pool.Workers][];
        for (int w = 0; w < pool.Workers; w++) if (wj.Row[w] is null || wj.Row[w].Length < 16 * (hw + 16)) wj.Row[w] = new float[16 * (hw + 16)];
        fixed (float* wt = wj.WT) fixed (float* den = wj.Denom) fixed (float* y = wj.Y)
        {
            wj.M = m; wj.WTp = wt; wj.Den = den; wj.B = batch; wj.H = height; wj.W = width; wj.Q = queries; wj.MH = mh; wj.MW = mw;
            wj.Type = type; wj.Threshold = threshold; wj.Eps = eps; wj.QTiles = qTiles;
            pool.Run(wj, batch * ((queries + 15) / 16));
            for (int b = 0; b < batch; b++)
            {
                HeadsSimd.Gemm(x + (long)b * channels * hw, wt + (long)b * qTiles * hw * Lanes, null, null, y, channels, queries, hw, pool);
                for (int q = 0; q < queries; q++)
                {
                    float d = den[b * queries + q];
                    float* dst = o + ((long)b * queries + q) * channels;
                    if (d == 0) { new Span<float>(dst, channels).Clear(); continue; }
                    for (int c = 0; c < channels; c++) dst[c] = y[c * queries + q] / d;
                }
            }
        }
    }

    private sealed class WeightJob : IParallelJob
    {
        [ThreadStatic] internal static WeightJob? Cached;
        internal float[] WT = [], Denom = [], Y = [];
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
