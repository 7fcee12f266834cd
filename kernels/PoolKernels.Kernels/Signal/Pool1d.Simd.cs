using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PoolKernels.Kernels.Signal;

/// <summary>
/// <c>pool1d</c>, managed SIMD: rows in parallel (groups of rows per work item); a window of 16 or more real samples
/// is one TensorPrimitives.Sum / Max, a shorter one a scalar loop; with AVX-512 and stride 1 or 2 the windows wholly
/// inside the signal run 16 at a time (stride 2 takes the even lanes of 32 floats with one vpermt2ps); with Vector128 only
/// (NEON, SSE4) 4 at a time (stride 2 by uzp1 / shufps, <see cref="VectorMath.Even"/>). A window of 3 per
/// TensorPrimitives call ran [32,256,1024] k3 s2 at ~2 GB/s. No allocation.
/// </summary>
internal static unsafe class Pool1dSimd
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
            bool max = p.Mode == (int)Pool1dMode.Max;
            // windows i in [lo, hi) lie wholly inside [0, ValidEnd): (O0+i)·s - pad >= 0 and (O0+i)·s - pad + k <= ValidEnd
            long s = p.Stride, k = p.Kernel;
            long lo = Math.Clamp((p.Padding + s - 1) / s - p.O0, 0, p.NOut);
            long hi = Math.Clamp((p.ValidEnd + p.Padding - k) >= 0 ? (p.ValidEnd + p.Padding - k) / s + 1 - p.O0 : 0, lo, p.NOut);
            bool vector = Vector512.IsHardwareAccelerated && (s == 1 || s == 2 && Avx512F.IsSupported);
            bool narrow = VectorMath.Narrow && (s == 1 || s == 2);
            for (int row = item * PerItem; row < r1; row++)
            {
                float* xr = X + (long)row * p.BufLen;
                float* orow = Out + (long)row * OutStride;
                int i = 0;
                for (; i < lo; i++) orow[i] = Window(xr, i, p, inv, max);
                if (vector)
                {
                    // 16 interior windows at a time: stride 1 reads shifted vectors, stride 2 the even lanes of 32 floats
                    // (a 17th real interior window guarantees the extra float read is held)
                    var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                    var vinv = Vector512.Create(inv);
                    for (; s == 1 ? i + 16 <= hi : i + 16 < hi; i += 16)
                    {
                        float* w = xr + ((p.O0 + i) * s - p.Padding - p.BufStart);
                        Vector512<float> acc = default;
                        for (int j = 0; j < k; j++)
                        {
                            var v = s == 1 ? Vector512.Load(w + j) : Avx512F.PermuteVar16x32x2(Vector512.Load(w + j), even,
                                Vector512.Load(w + j + 16));
                            acc = j == 0 ? v : max ? Vector512.Max(acc, v) : acc + v;
                        }
                        (max ? acc : acc * vinv).Store(orow + i);
                    }
                }
                else if (narrow)
                {
                    // 4 interior windows at a time, as above (a 5th real interior window holds the extra float of stride 2)
                    var vinv = Vector128.Create(inv);
                    for (; s == 1 ? i + 4 <= hi : i + 4 < hi; i += 4)
                    {
                        float* w = xr + ((p.O0 + i) * s - p.Padding - p.BufStart);
                        Vector128<float> acc = default;
                        for (int j = 0; j < k; j++)
                        {
                            var v = s == 1 ? Vector128.Load(w + j) : VectorMath.Even(Vector128.Load(w + j), Vector128.Load(w + j + 4));
                            acc = j == 0 ? v : max ? Vector128.Max(acc, v) : acc + v;
                        }
                        (max ? acc : acc * vinv).Store(orow + i);
                    }
                }
                for (; i < p.NOut; i++) orow[i] = Window(xr, i, p, inv, max);
            }
        }

        private static float Window(float* xr, int i, in Pool1dParams p, float inv, bool max)
        {
            long t0 = (p.O0 + i) * p.Stride - p.Padding;
            long a = Math.Max(t0, 0), b = Math.Min(t0 + p.Kernel, p.ValidEnd);
            if (b <= a) return 0;
            float* w = xr + (a - p.BufStart);
            int n = (int)(b - a);
            if (n >= 16)
            {
                var span = new ReadOnlySpan<float>(w, n);
                return max ? TensorPrimitives.Max(span) : TensorPrimitives.Sum(span) * inv;
            }
            if (max)
            {
                float m = w[0];
                for (int j = 1; j < n; j++) m = Numerics.MaxNaN(m, w[j]);
                return m;
            }
            float sum = 0;
            for (int j = 0; j < n; j++) sum += w[j];
            return sum * inv;
        }
    }
}
