using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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

    // AVX-512 path. Phase 1 (items: b × 32-mask panel) writes every weight plane straight into the packed form
    // HeadsSimd.Gemm reads, WT[b][32-mask panel][hw][32 lanes] (zero past Q), and its sum. Phase 2: one batched packed
    // GEMM y[b][C,Q] = x[b][C,HW] · W[b]ᵀ (x[b] is already the row-major left operand), then out[b,q,c] = y[c,q] / (Σw + eps).
    private static void RunBroadcast(float* x, float* m, float* o, int batch, int channels, int height, int width, int queries, int mh, int mw,
        MaskType type, float threshold, float eps, WorkerPool pool)
    {
        int hw = height * width, qTiles = (queries + Lanes - 1) / Lanes;
        var wj = WeightJob.Cached ??= new();
        long wtLen = (long)batch * qTiles * hw * Lanes;
        if (wj.WT.Length < wtLen) wj.WT = GC.AllocateArray<float>((int)wtLen, pinned: true);
        if (wj.Denom.Length < batch * queries) wj.Denom = new float[batch * queries];
        if (wj.Y.Length < (long)batch * channels * queries) wj.Y = new float[(long)batch * channels * queries];
        if (wj.Row.Length < pool.Workers) wj.Row = new float[pool.Workers][];
        for (int w = 0; w < pool.Workers; w++) if (wj.Row[w] is null || wj.Row[w].Length < Lanes * (hw + 16)) wj.Row[w] = new float[Lanes * (hw + 16)];
        fixed (float* wt = wj.WT) fixed (float* den = wj.Denom) fixed (float* y = wj.Y)
        {
            wj.M = m; wj.WTp = wt; wj.Den = den; wj.B = batch; wj.H = height; wj.W = width; wj.Q = queries; wj.MH = mh; wj.MW = mw;
            wj.Type = type; wj.Threshold = threshold; wj.Eps = eps; wj.QTiles = qTiles;
            pool.Run(wj, batch * qTiles);
            // one parallel run over every batch's row blocks (batch b's panels at wt + b·qTiles·hw·32)
            HeadsSimd.Gemm(x, wt, null, null, y, channels, queries, hw, pool, batches: batch, packedStride: (long)qTiles * hw * Lanes);
            for (int b = 0; b < batch; b++)
            {
                float* yb = y + (long)b * channels * queries;
                for (int q = 0; q < queries; q++)
                {
                    float d = den[b * queries + q];
                    float* dst = o + ((long)b * queries + q) * channels;
                    if (d == 0) { new Span<float>(dst, channels).Clear(); continue; }
                    for (int c = 0; c < channels; c++) dst[c] = yb[c * queries + q] / d;
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

        // one item = one panel of 32 consecutive masks, so each 128-byte row of WT is written by one worker only (the
        // array need not be 64-byte aligned: items of half a row shared cache lines between workers)
        public void Execute(int item, int worker)
        {
            int b = item / QTiles, q0 = item % QTiles * Lanes, nq = Math.Min(Lanes, Q - q0), hw = H * W;
            var rows = Row[worker];
            long stride = hw + 16; // rows exactly 2^k floats apart would share one L1 set in the gather below
            // soft masks of the output size are their own weights: gather straight from the mask planes
            bool direct = Type == MaskType.Soft && MH == H && MW == W;
            float* planes = M + ((long)b * Q + q0) * MH * MW;
            for (int j = 0; j < nq; j++)
            {
                if (direct) { Den[b * Q + q0 + j] = TensorPrimitives.Sum(new ReadOnlySpan<float>(planes + (long)j * hw, hw)) + Eps; continue; }
                var row = rows.AsSpan((int)(j * stride), hw);
                ComputeWeights(planes + (long)j * MH * MW, MH, MW, H, W, Type, Threshold, row);
                Den[b * Q + q0 + j] = TensorPrimitives.Sum(row) + Eps;
            }
            float* dst = WTp + (((long)b * QTiles + q0 / Lanes) * hw) * Lanes;
            fixed (float* rp = rows)
            {
                float* r = direct ? planes : rp;
                if (direct) stride = hw;
                int j0 = 0;
                // 4 rows at a time, 4×4 SSE transposes: 4 sequential read streams per pass
                if (Sse.IsSupported)
                    for (; j0 + 4 <= nq; j0 += 4)
                    {
                        float* s0 = r + j0 * stride, s1 = s0 + stride, s2 = s1 + stride, s3 = s2 + stride;
                        int i = 0;
                        for (; i + 4 <= hw; i += 4)
                        {
                            var t0 = Sse.UnpackLow(Sse.LoadVector128(s0 + i), Sse.LoadVector128(s1 + i));
                            var t1 = Sse.UnpackLow(Sse.LoadVector128(s2 + i), Sse.LoadVector128(s3 + i));
                            var t2 = Sse.UnpackHigh(Sse.LoadVector128(s0 + i), Sse.LoadVector128(s1 + i));
                            var t3 = Sse.UnpackHigh(Sse.LoadVector128(s2 + i), Sse.LoadVector128(s3 + i));
                            float* d = dst + (long)i * Lanes + j0;
                            Sse.Store(d, Sse.MoveLowToHigh(t0, t1));
                            Sse.Store(d + Lanes, Sse.MoveHighToLow(t1, t0));
                            Sse.Store(d + 2 * Lanes, Sse.MoveLowToHigh(t2, t3));
                            Sse.Store(d + 3 * Lanes, Sse.MoveHighToLow(t3, t2));
                        }
                        for (; i < hw; i++)
                        {
                            float* d = dst + (long)i * Lanes + j0;
                            d[0] = s0[i]; d[1] = s1[i]; d[2] = s2[i]; d[3] = s3[i];
                        }
                    }
                for (; j0 < nq; j0++)
                    for (int i = 0; i < hw; i++) dst[(long)i * Lanes + j0] = r[j0 * stride + i];
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
