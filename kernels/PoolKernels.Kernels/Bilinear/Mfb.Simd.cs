using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>
/// <c>mfb_pool</c> / <c>mfh_pool</c>, managed SIMD. With AVX-512 or Vector128 only (<see cref="MicroTile.Packed"/>) each
/// projection is one <see cref="DotGemm"/>
/// ([B, D]·[o·k, D]ᵀ, the weights read about once per call instead of once per batch row) into per-call scratch
/// [B, o·k] (grown once, kept), then per batch row the bias, activation, product of the two projections and the
/// sum over k in a vector pass. Otherwise work items are (batch row, 32 pooled outputs) with one TensorPrimitives.Dot
/// per weight row. The signed square root follows in place, the per-block L2 normalization afterwards.
/// <para>Measured (poolkernels bench, Dx 2048, Dy 1024, o 1000, k 5, same run): the per-row dots reached 10-13% of the
/// FMA peak (memory-bound on the weights, read once per batch row).</para>
/// </summary>
internal static unsafe class MfbSimd
{
    private const int Outputs = 32;

    /// <summary>See <see cref="MfbReference.Run"/>.</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> y, MfbBlock block1, MfbBlock block2, Span<float> output,
        int batch, int dx, int dy, int o, int k, MfbActivation act, bool signedSqrt, bool normalize, WorkerPool? pool = null)
    {
        if (batch == 0 || o == 0) return;
        pool ??= WorkerPool.Shared;
        int blocks = block2.Wx.IsEmpty ? 1 : 2;
        if (MicroTile.Packed && dx > 0 && dy > 0)
        {
            RunGemm(x, y, block1, block2, output, batch, dx, dy, o, k, act, signedSqrt, blocks, pool);
            if (normalize)
                for (int r = 0; r < batch * blocks; r++) Sequence.SequencePoolSimd.NormalizeInPlace(output.Slice(r * o, o));
            return;
        }
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

    [ThreadStatic] private static float[]? _proj;

    private static void RunGemm(ReadOnlySpan<float> x, ReadOnlySpan<float> y, MfbBlock block1, MfbBlock block2, Span<float> output,
        int batch, int dx, int dy, int o, int k, MfbActivation act, bool signedSqrt, int blocks, WorkerPool pool)
    {
        int r = o * k;
        long one = (long)batch * r, need = 2 * blocks * one;
        if (_proj is null || _proj.Length < need) _proj = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
        fixed (float* xp = x) fixed (float* yp = y) fixed (float* pr = _proj)
        fixed (float* wx1 = block1.Wx) fixed (float* wy1 = block1.Wy) fixed (float* wx2 = block2.Wx) fixed (float* wy2 = block2.Wy)
        {
            DotGemm.Run(xp, dx, 0, wx1, dx, 0, pr, r, 0, batch, r, dx, 1, null, pool);
            DotGemm.Run(yp, dy, 0, wy1, dy, 0, pr + one, r, 0, batch, r, dy, 1, null, pool);
            if (blocks == 2)
            {
                DotGemm.Run(xp, dx, 0, wx2, dx, 0, pr + 2 * one, r, 0, batch, r, dx, 1, null, pool);
                DotGemm.Run(yp, dy, 0, wy2, dy, 0, pr + 3 * one, r, 0, batch, r, dy, 1, null, pool);
            }
        }
        var p = _proj.AsSpan();
        for (int b = 0; b < batch; b++)
        {
            // e1 = act(px1 + bx1) ⊙ act(py1 + by1) in place of px1; MFH: e2 = act(px2 + bx2) ⊙ act(py2 + by2) ⊙ e1
            var e1 = p.Slice(b * r, r);
            Activate(e1, block1.Bx, act);
            var q1 = p.Slice((int)one + b * r, r);
            Activate(q1, block1.By, act);
            TensorPrimitives.Multiply(e1, q1, e1);
            SumGroups(e1, k, output.Slice(b * blocks * o, o), signedSqrt);
            if (blocks == 1) continue;
            var e2 = p.Slice((int)(2 * one) + b * r, r);
            Activate(e2, block2.Bx, act);
            var q2 = p.Slice((int)(3 * one) + b * r, r);
            Activate(q2, block2.By, act);
            TensorPrimitives.Multiply(e2, q2, e2);
            TensorPrimitives.Multiply(e2, e1, e2);
            SumGroups(e2, k, output.Slice((b * blocks + 1) * o, o), signedSqrt);
        }
    }

    private static void Activate(Span<float> v, ReadOnlySpan<float> bias, MfbActivation act)
    {
        TensorPrimitives.Add(v, bias, v);
        switch (act)
        {
            case MfbActivation.Relu: TensorPrimitives.Max(v, 0f, v); break;
            case MfbActivation.Tanh: TensorPrimitives.Tanh(v, v); break;
            case MfbActivation.LeakyRelu: for (int i = 0; i < v.Length; i++) v[i] = Act(v[i], act); break;
        }
    }

    private static void SumGroups(ReadOnlySpan<float> e, int k, Span<float> z, bool signedSqrt)
    {
        for (int j = 0; j < z.Length; j++)
        {
            float s = 0;
            for (int t = 0; t < k; t++) s += e[j * k + t];
            z[j] = signedSqrt ? MathF.CopySign(MathF.Sqrt(MathF.Abs(s)), s) : s;
        }
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
