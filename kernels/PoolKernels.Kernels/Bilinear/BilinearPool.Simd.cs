using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>
/// <c>bilinear_pool</c>, managed SIMD: work items are (batch row, i); each accumulates its output row
/// z[i, :] = Σ_n x[n,i]·y[n,:] with TensorPrimitives.MultiplyAdd straight in the output, scales by 1/count and
/// applies the signed square root; the L2 normalization runs per batch row afterwards. No allocation.
/// </summary>
public static unsafe class BilinearPoolSimd
{
    /// <summary>See <see cref="BilinearPoolReference.Run"/>.</summary>
    public static void Run<TMask>(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<TMask> mask, Span<float> output,
        int batch, int n, int dx, int dy, bool signedSqrt, bool normalize, WorkerPool? pool = null) where TMask : unmanaged
    {
        if (batch == 0 || dx == 0 || dy == 0) return;
        pool ??= WorkerPool.Shared;
        fixed (float* xp = x) fixed (float* yp = y) fixed (TMask* mp = mask) fixed (float* op = output)
        {
            var job = Job<TMask>.Cached ??= new();
            job.X = xp; job.Y = y.IsEmpty ? xp : yp; job.Mask = mask.IsEmpty ? null : mp; job.Out = op;
            job.N = n; job.Dx = dx; job.Dy = dy; job.SignedSqrt = signedSqrt;
            pool.Run(job, batch * dx);
            job.X = job.Y = job.Out = null;
        }
        if (normalize)
            for (int b = 0; b < batch; b++) Sequence.SequencePoolSimd.NormalizeInPlace(output.Slice(b * dx * dy, dx * dy));
    }

    /// <summary>sign(z)·√|z| in place.</summary>
    public static void SignedSqrt(Span<float> z, Span<float> tmp)
    {
        TensorPrimitives.Abs(z, tmp);
        TensorPrimitives.Sqrt(tmp, tmp);
        TensorPrimitives.CopySign(tmp, z, z);
    }

    private sealed class Job<TMask> : IParallelJob where TMask : unmanaged
    {
        [ThreadStatic] internal static Job<TMask>? Cached;
        internal float* X, Y, Out;
        internal TMask* Mask;
        internal int N, Dx, Dy;
        internal bool SignedSqrt;

        public void Execute(int item, int worker)
        {
            int b = item / Dx, i = item % Dx;
            var acc = new Span<float>(Out + ((long)b * Dx + i) * Dy, Dy);
            acc.Clear();
            int count = 0;
            for (int t = 0; t < N; t++)
            {
                long row = (long)b * N + t;
                if (Mask != null && !Elements.Keep(Mask[row])) continue;
                count++;
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(Y + row * Dy, Dy), X[row * Dx + i], acc, acc);
            }
            if (count == 0) return;
            TensorPrimitives.Multiply(acc, 1f / count, acc);
            if (!SignedSqrt) return;
            float* tmp = stackalloc float[256];
            for (int f = 0; f < Dy; f += 256)
            {
                int len = Math.Min(256, Dy - f);
                BilinearPoolSimd.SignedSqrt(acc.Slice(f, len), new Span<float>(tmp, len));
            }
        }
    }
}
