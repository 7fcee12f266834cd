using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>
/// <c>mfb_pool</c> / <c>mfh_pool</c>, managed SIMD: work items are (batch row, 32 pooled outputs); each projection
/// is one TensorPrimitives.Dot over a weight row (the weights stream once per batch row), the k factors are summed in
/// registers, the signed square root follows in place, and the per-block L2 normalization runs afterwards.
/// </summary>
public static unsafe class MfbSimd
{
    private const int Outputs = 32;

    /// <summary>See <see cref="MfbReference.Run"/>.</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> y, MfbBlock block1, MfbBlock block2, Span<float> output,
        int batch, int dx, int dy, int o, int k, MfbActivation act, bool signedSqrt, bool normalize, WorkerPool? pool = null)
    {
        if (batch == 0 || o == 0) return;
        pool ??= WorkerPool.Shared;
        int blocks = block2.Wx.IsEmpty ? 1 : 2;
        fixed (float* xp = x) fixed (float* yp = y) fixed (float* op = output)
        fixed (float* wx1 = block1.Wx) fixed (float* bx1 = block1.Bx) fixed (float* wy1 = block1.Wy) fixed (float* by1 = block1.By)
        fixed (float* wx2 = block2.Wx) fixed (float* bx2 = block2.Bx) fixed (float* wy2 = block2.Wy) fixed (float* by2 = block2.By)
        {
            var job = Job.Cached ??= new();
            job.X = xp; job.Y = yp; job.Out = op; job.Wx1 = wx1; job.Bx1 = bx1; job.Wy1 = wy1; job.By1 = by1;
            job.Wx2 = wx2; job.Bx2 = bx2; job.Wy2 = wy2; job.By2 = by2;
            job.Dx = dx; job.Dy = dy; job.O = o; job.K = k; job.Act = act; job.Blocks = blocks; job.SignedSqrt = signedSqrt;
            job.Chunks = (o + Outputs - 1) / Outputs;
            pool.Run(job, batch * job.Chunks);
            job.X = job.Y = job.Out = null;
        }
        if (normalize)
            for (int r = 0; r < batch * blocks; r++) Sequence.SequencePoolSimd.NormalizeInPlace(output.Slice(r * o, o));
    }

    /// <summary>act(v) in float.</summary>
    public static float Act(float v, MfbActivation a) => a switch
    {
        MfbActivation.Relu => MathF.Max(v, 0),
        MfbActivation.Tanh => MathF.Tanh(v),
        MfbActivation.LeakyRelu => v < 0 ? 0.01f * v : v,
        _ => v,
    };

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Y, Out, Wx1, Bx1, Wy1, By1, Wx2, Bx2, Wy2, By2;
        internal int Dx, Dy, O, K, Blocks, Chunks;
        internal MfbActivation Act;
        internal bool SignedSqrt;

        public void Execute(int item, int worker)
        {
            int b = item / Chunks, j0 = item % Chunks * Outputs, j1 = Math.Min(O, j0 + Outputs);
            var xb = new ReadOnlySpan<float>(X + (long)b * Dx, Dx);
            var yb = new ReadOnlySpan<float>(Y + (long)b * Dy, Dy);
            float* z1 = Out + (long)b * Blocks * O, z2 = z1 + O;
            for (int j = j0; j < j1; j++)
            {
                float s1 = 0, s2 = 0;
                for (int t = 0; t < K; t++)
                {
                    long r = (long)j * K + t;
                    float e1 = MfbSimd.Act(TensorPrimitives.Dot(xb, new ReadOnlySpan<float>(Wx1 + r * Dx, Dx)) + Bx1[r], Act)
                             * MfbSimd.Act(TensorPrimitives.Dot(yb, new ReadOnlySpan<float>(Wy1 + r * Dy, Dy)) + By1[r], Act);
                    s1 += e1;
                    if (Blocks == 2)
                        s2 += MfbSimd.Act(TensorPrimitives.Dot(xb, new ReadOnlySpan<float>(Wx2 + r * Dx, Dx)) + Bx2[r], Act)
                            * MfbSimd.Act(TensorPrimitives.Dot(yb, new ReadOnlySpan<float>(Wy2 + r * Dy, Dy)) + By2[r], Act) * e1;
                }
                z1[j] = SignedSqrt ? MathF.CopySign(MathF.Sqrt(MathF.Abs(s1)), s1) : s1;
                if (Blocks == 2) z2[j] = SignedSqrt ? MathF.CopySign(MathF.Sqrt(MathF.Abs(s2)), s2) : s2;
            }
        }
    }
}
