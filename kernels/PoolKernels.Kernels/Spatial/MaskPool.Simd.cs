using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>mask_pool</c>, managed: out[b,q,c] = Σ_p w_q[p]·x[b,c,p] / (Σ_p w_q[p] + eps), a [Q,HW]·[C,HW]ᵀ product per batch.
/// With AVX-512 or Vector128 only (NEON, SSE4; <see cref="MicroTile.Packed"/>) one batched <see cref="DotGemm"/>
/// (see the comment at <c>RunDot</c>);
/// otherwise a work item is (b, block of 16 masks): the 16 weight planes are built in per-worker scratch (bilinear
/// resize fused into the weight computation, no resized mask tensor), then x[b] is read once per block, 4 channel planes
/// × 4 weight planes at a time through the <see cref="DotTile"/> register micro-kernel.
/// </summary>
internal static unsafe class MaskPoolSimd
{
    private const int QBlock = 16;

    /// <summary>Runs into output [B,Q,C].</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> masks, Span<float> output, int batch, int channels, int height,
        int width,
        int queries, int mh, int mw, MaskType type, float threshold, float eps, WorkerPool pool)
    {
        if ((long)batch * queries * channels == 0) return;
        int hw = height * width;
        fixed (float* px = x) fixed (float* pm = masks) fixed (float* po = output)
        {
            if (MicroTile.Packed && hw > 0)
            {
                RunDot(px, pm, po, batch, channels, height, width, queries, mh, mw, type, threshold, eps, pool);
                return;
            }
            var job = Job.Cached ??= new();
            job.X = px; job.M = pm; job.Out = po; job.B = batch; job.C = channels; job.H = height; job.W = width; job.Q = queries;
            job.MH = mh; job.MW = mw; job.Type = type; job.Threshold = threshold; job.Eps = eps;
            job.QBlocks = (queries + QBlock - 1) / QBlock;
            pool.EnsureScratch(ref job.Scratch, (long)QBlock * hw);
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
                float v = (1 - lh) * ((1 - lw) * m[h0 * mw + w0] + lw * m[h0 * mw + w1]) + lh * ((1 - lw) * m[h1 * mw + w0] + lw * m[h1 * mw
                    + w1]);
                wts[h * width + w] = Bilinear.Weight(v, (int)type, threshold);
            }
        }
    }

    // AVX-512 path: out[b,q,c] = (w_q · x_c) / (Σ w_q + eps), both operands K-contiguous rows of H·W floats: one batched
    // DotGemm (which also returns Σ w_q; it packs both operands per k block by register transposes). Soft masks of the
    // output size are their own weights and are read in place; other masks become weight planes [B,Q,HW] first (items
    // b × 16 masks). Tried ([8,256,64,64], 100 masks, same process, min of 36 calls, FMA loop of the same FLOPs 4.8 ms):
    // the heads' GEMM with x rows packed in scalar code 21 ms; a dot-product GEMM (4 × 6 tile of lane-wise dot products
    // over copied rows) 8.3-11 ms, 55-57% of the FMA loop; the packed broadcast GEMM 7.3-7.4 ms, 64-66%, with its
    // prefetch and 4-row edge kernel 6.6-6.9 ms, 68-72% — ONNX Runtime's MatMul (MLAS, which also transposes x) 7.1-7.2 ms.
    private static void RunDot(float* x, float* m, float* o, int batch, int channels, int height, int width, int queries, int mh, int mw,
        MaskType type, float threshold, float eps, WorkerPool pool)
    {
        int hw = height * width;
        bool direct = type == MaskType.Soft && mh == height && mw == width;
        var wj = WeightJob.Cached ??= new();
        if (!direct)
        {
            long wLen = (long)batch * queries * hw;
            if (wj.Weights.Length < wLen) wj.Weights = GC.AllocateUninitializedArray<float>((int)wLen, pinned: true);
        }
        if (wj.Sums.Length < batch * queries) wj.Sums = new float[batch * queries];
        fixed (float* wp = wj.Weights) fixed (float* sums = wj.Sums)
        {
            if (!direct)
            {
                wj.M = m; wj.Wts = wp; wj.B = batch; wj.H = height; wj.W = width; wj.Q = queries; wj.MH = mh; wj.MW = mw;
                wj.Type = type; wj.Threshold = threshold; wj.QBlocks = (queries + QBlock - 1) / QBlock;
                pool.Run(wj, batch * wj.QBlocks);
            }
            float* a = direct ? m : wp;
            DotGemm.Run(a, hw, (long)queries * hw, x, hw, (long)channels * hw, o, channels, (long)queries * channels,
                queries, channels, hw, batch, sums, pool);
            for (int r = 0; r < batch * queries; r++)
            {
                float d = sums[r] + eps;
                var row = new Span<float>(o + (long)r * channels, channels);
                if (d == 0) row.Clear();
                else TensorPrimitives.Divide(row, d, row);
            }
        }
    }

    private sealed class WeightJob : IParallelJob
    {
        [ThreadStatic] internal static WeightJob? Cached;
        internal float[] Weights = [], Sums = [];
        internal float* M, Wts; internal int B, H, W, Q, MH, MW, QBlocks; internal MaskType Type; internal float Threshold;

        public void Execute(int item, int worker)
        {
            int b = item / QBlocks, q0 = item % QBlocks * QBlock, q1 = Math.Min(Q, q0 + QBlock), hw = H * W;
            for (int q = q0; q < q1; q++)
            {
                long at = (long)b * Q + q;
                ComputeWeights(M + at * MH * MW, MH, MW, H, W, Type, Threshold, new Span<float>(Wts + at * hw, hw));
            }
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, M, Out; internal int B, C, H, W, Q, MH, MW, QBlocks; internal MaskType Type; internal float Threshold, Eps;
        internal float[]?[] Scratch = [];

        private float* XRow(int b, int c) => X + ((long)b * C + c) * H * W;

        public void Execute(int item, int worker)
        {
            int b = item / QBlocks, q0 = item % QBlocks * QBlock, nq = Math.Min(QBlock, Q - q0), hw = H * W;
            var scratch = Scratch[worker]!;
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
                    float* x0 = XRow(b, c), x1 = XRow(b, c + Math.Min(1, mc - 1)), x2 = XRow(b, c + Math.Min(2, mc - 1)), x3 = XRow(b,
                        c + Math.Min(3, mc - 1));
                    for (int j = 0; j < nq; j += 4)
                    {
                        int mj = Math.Min(4, nq - j);
                        DotTile.Dot4x4(x0, x1, x2, x3, w + (long)j * hw, w + (long)(j + Math.Min(1, mj - 1)) * hw,
                            w + (long)(j + Math.Min(2, mj - 1)) * hw,
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
