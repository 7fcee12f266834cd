using System.Numerics.Tensors;

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
                float* m = M + ((long)b * Q + q0 + j) * MH * MW;
                if (MH == H && MW == W)
                {
                    var src = new ReadOnlySpan<float>(m, hw);
                    switch (Type)
                    {
                        case MaskType.Soft: src.CopyTo(wts); break;
                        case MaskType.SigmoidNormalized: TensorPrimitives.Sigmoid(src, wts); break;
                        default: for (int i = 0; i < hw; i++) wts[i] = Bilinear.Weight(src[i], (int)Type, Threshold); break;
                    }
                }
                else
                {
                    for (int h = 0; h < H; h++)
                    {
                        Bilinear.Taps(h, MH, H, out int h0, out int h1, out float lh);
                        for (int w = 0; w < W; w++)
                        {
                            Bilinear.Taps(w, MW, W, out int w0, out int w1, out float lw);
                            float v = (1 - lh) * ((1 - lw) * m[h0 * MW + w0] + lw * m[h0 * MW + w1]) + lh * ((1 - lw) * m[h1 * MW + w0] + lw * m[h1 * MW + w1]);
                            wts[h * W + w] = Bilinear.Weight(v, (int)Type, Threshold);
                        }
                    }
                }
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
