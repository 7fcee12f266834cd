using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Signal;

/// <summary>
/// <c>pool1d</c>, managed SIMD: rows in parallel (groups of rows per work item); each window is one
/// TensorPrimitives.Sum / Max over its real samples (contiguous), so long windows vectorize and short ones cost a
/// few scalar steps. No allocation.
/// </summary>
public static unsafe class Pool1dSimd
{
    /// <summary>See <see cref="Pool1dReference.Run"/>.</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, in Pool1dParams p, int outStride = -1, WorkerPool? pool = null)
    {
        if (p.Rows == 0 || p.NOut == 0) return;
        pool ??= WorkerPool.Shared;
        if (outStride < 0) outStride = p.NOut;
        fixed (float* xp = x) fixed (float* op = output)
        {
            var job = Job.Cached ??= new();
            job.X = xp; job.Out = op; job.P = p; job.OutStride = outStride;
            job.PerItem = Math.Max(1, (int)Math.Min(p.Rows, 16384L / Math.Max(1, p.NOut * (long)p.Kernel) + 1));
            pool.Run(job, (p.Rows + job.PerItem - 1) / job.PerItem);
            job.X = null; job.Out = null;
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Out;
        internal Pool1dParams P;
        internal int OutStride, PerItem;

        public void Execute(int item, int worker)
        {
            var p = P;
            int r1 = Math.Min(p.Rows, (item + 1) * PerItem);
            float inv = 1f / p.Kernel;
            for (int row = item * PerItem; row < r1; row++)
            {
                float* xr = X + (long)row * p.BufLen;
                float* orow = Out + (long)row * OutStride;
                for (int i = 0; i < p.NOut; i++)
                {
                    long t0 = (p.O0 + i) * p.Stride - p.Padding;
                    long a = Math.Max(t0, 0), b = Math.Min(t0 + p.Kernel, p.ValidEnd);
                    if (b <= a) { orow[i] = 0; continue; }
                    var w = new ReadOnlySpan<float>(xr + (a - p.BufStart), (int)(b - a));
                    orow[i] = p.Mode == (int)Pool1dMode.Max ? TensorPrimitives.Max(w) : TensorPrimitives.Sum(w) * inv;
                }
            }
        }
    }
}
