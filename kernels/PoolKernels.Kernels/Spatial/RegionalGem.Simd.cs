using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>regional_gem</c>, managed, one (b,c) plane per work item: the plane's xc^p is computed once into per-worker
/// scratch (<see cref="VectorMath.Pow"/>), the k×k box sum is taken separably (rows as k shifted row adds, then columns) with the reflect padding done by
/// index mapping at the borders only, then out = 0.5·(sum/k²)^(1/p) + 0.5·xc vector-wise. No padded copy of x.
/// </summary>
public static unsafe class RegionalGemSimd
{
    /// <summary>Runs into output [B,C,H,W].</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, int batch, int channels, int height, int width, float p, int kernel, WorkerPool pool)
    {
        int hw = height * width;
        if ((long)batch * channels * hw == 0) return;
        fixed (float* px = x) fixed (float* po = output)
        {
            var job = Job.Cached ??= new();
            job.X = px; job.Out = po; job.H = height; job.W = width; job.P = p; job.K = kernel;
            if (job.Scratch is null || job.Scratch.Length < pool.Workers) job.Scratch = new float[pool.Workers][];
            for (int w = 0; w < pool.Workers; w++)
                if (job.Scratch[w] is null || job.Scratch[w].Length < 3 * hw) job.Scratch[w] = new float[3 * hw];
            pool.Run(job, batch * channels);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Out; internal int H, W, K; internal float P;
        internal float[][]? Scratch;

        public void Execute(int item, int worker)
        {
            int hw = H * W, pad = K / 2;
            var buf = Scratch![worker].AsSpan();
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
    }
}
