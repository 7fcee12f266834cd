using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>regional_gem</c>, managed. With AVX-512 and planes of at most <see cref="LanePlane"/> floats (CNN feature maps:
/// 7×7 … 64×64), a work item is (b, group of 16 channels): the group's planes are transposed into [H·W][16]
/// (<see cref="Transpose16"/>), so every step is a vector over 16 channels with no row tails — xc = max(x, 0) and xc^p
/// over the whole block (<see cref="VectorMath.Pow"/>), the k×k box sum separably (k vector adds per position and
/// direction, the reflect padding by index mapping), out = 0.5·(sum/k²)^(1/p) + 0.5·xc — and transposed back (masked
/// stores past the last channel). Otherwise one (b,c) plane per item, the same steps along the plane's rows (the k
/// horizontal adds as shifted whole-row adds, border columns through the index map). No padded copy of x either way.
/// <para>[8,512,14,14] p = 2.5, k = 5: the per-plane form spent ~6 ns per element on 14-float rows (1–2% of the FMA
/// peak, 3% of the streaming read); see the README for the channel-lane figures.</para>
/// </summary>
internal static unsafe class RegionalGemSimd
{
    /// <summary>Largest H·W that takes the channel-lane path (3 blocks of H·W·16 floats per worker: 768 KB).</summary>
    public const int LanePlane = 4096;

    /// <summary>Runs into output [B,C,H,W].</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, int batch, int channels, int height, int width, float p, int kernel,
        WorkerPool pool)
    {
        int hw = height * width;
        if ((long)batch * channels * hw == 0) return;
        fixed (float* px = x) fixed (float* po = output)
        {
            var job = Job.Cached ??= new();
            job.X = px; job.Out = po; job.H = height; job.W = width; job.P = p; job.K = kernel; job.C = channels;
            job.Lanes = Vector512.IsHardwareAccelerated && hw <= LanePlane;
            job.Groups = (channels + 15) / 16;
            pool.EnsureScratch(ref job.Scratch, job.Lanes ? 3L * hw * 16 + 16 : 3L * hw, pinned: job.Lanes);
            pool.Run(job, job.Lanes ? batch * job.Groups : batch * channels);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Out; internal int H, W, K, C, Groups; internal float P; internal bool Lanes;
        internal float[]?[] Scratch = [];

        public void Execute(int item, int worker)
        {
            if (Lanes) { ExecuteLanes(item, worker); return; }
            int hw = H * W, pad = K / 2;
            var buf = Scratch[worker]!.AsSpan();
            var pw = buf[..hw]; var rows = buf.Slice(hw, hw); var box = buf.Slice(2 * hw, hw);
            var src = new ReadOnlySpan<float>(X + (long)item * hw, hw);
            var dst = new Span<float>(Out + (long)item * hw, hw);
            TensorPrimitives.Max(src, 0f, dst);            // xc (NaN stays NaN)
            VectorMath.Pow(dst, P, pw);
            // horizontal box sums
            // (interior columns as K shifted whole-row adds, the 2·pad border columns through the reflect index map)
            int inner = W - 2 * pad;
            for (int h = 0; h < H; h++)
            {
                var r = pw.Slice(h * W, W); var o = rows.Slice(h * W, W);
                if (inner > 0)
                {
                    var oi = o.Slice(pad, inner);
                    r.Slice(0, inner).CopyTo(oi);
                    for (int b = 1; b < K; b++) TensorPrimitives.Add(oi, r.Slice(b, inner), oi);
                }
                for (int w = 0; w < W; w++)
                {
                    if (w >= pad && w + pad < W) continue;
                    float s = 0;
                    for (int b = 0; b < K; b++) s += r[PadIndex.Map(w + b, pad, W, PadIndex.Reflect)];
                    o[w] = s;
                }
            }
            // vertical box sums, whole rows at a time
            for (int h = 0; h < H; h++)
            {
                var o = box.Slice(h * W, W);
                o.Clear();
                for (int a = 0; a < K; a++) TensorPrimitives.Add(o, rows.Slice(PadIndex.Map(h + a, pad, H, PadIndex.Reflect) * W, W), o);
            }
            TensorPrimitives.Multiply(box, 1f / (K * K), box);
            VectorMath.Pow(box, 1f / P, box);
            TensorPrimitives.Add(box, dst, dst);
            TensorPrimitives.Multiply(dst, 0.5f, dst);
        }

        /// <summary>One (b, group of 16 channels) with the channels as vector lanes (see the class summary).</summary>
        private void ExecuteLanes(int item, int worker)
        {
            int hw = H * W, pad = K / 2, k = K, w0 = W, h0 = H;
            int g = item % Groups, b = item / Groups, c0 = g * 16, nc = Math.Min(16, C - c0);
            var buf = Scratch[worker]!; // pinned (EnsureScratch in Run)
            float* xc = WorkerPool.Aligned64(buf), pw = xc + hw * 16, rs = pw + hw * 16;
            float* planes = X + ((long)b * C + c0) * hw;
            Transpose16.Pack(planes, hw, nc, hw, xc, 16); // xc[t·16 + c] = x[c, t]; lanes past nc are 0
            var all = new Span<float>(xc, hw * 16);
            TensorPrimitives.Max(all, 0f, all); // NaN stays NaN
            VectorMath.Pow(all, P, new Span<float>(pw, hw * 16));
            // horizontal then vertical box sums, k vector adds per position (reflect by index map at the borders)
            for (int h = 0; h < h0; h++)
            {
                float* src = pw + (long)h * w0 * 16, dst = rs + (long)h * w0 * 16;
                for (int w = 0; w < w0; w++)
                {
                    var acc = Vector512<float>.Zero;
                    bool inner = w >= pad && w + pad < w0;
                    for (int j = 0; j < k; j++)
                        acc += Vector512.Load(src + (inner ? w + j - pad : PadIndex.Map(w + j, pad, w0, PadIndex.Reflect)) * 16);
                    acc.Store(dst + w * 16);
                }
            }
            float scale = 1f / (k * k);
            for (int h = 0; h < h0; h++)
            {
                float* dst = pw + (long)h * w0 * 16; // the box sums replace xc^p
                bool inner = h >= pad && h + pad < h0;
                for (int w = 0; w < w0; w++)
                {
                    var acc = Vector512<float>.Zero;
                    for (int i = 0; i < k; i++)
                        acc += Vector512.Load(rs + ((long)(inner ? h + i - pad : PadIndex.Map(h + i, pad, h0,
                            PadIndex.Reflect)) * w0 + w) * 16);
                    (acc * scale).Store(dst + w * 16);
                }
            }
            var box = new Span<float>(pw, hw * 16);
            VectorMath.Pow(box, 1f / P, box);
            TensorPrimitives.Add(box, all, box);
            TensorPrimitives.Multiply(box, 0.5f, box);
            // back to planes: 16 positions at a time, only the group's nc channels and the positions that exist stored
            Transpose16.Unpack(pw, hw, nc, Out + ((long)b * C + c0) * hw, hw);
        }
    }
}
