using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>attention_combine</c>, managed SIMD (the rules of <see cref="AttentionCombineReference"/>, in float): rows are split
/// into chunks over the <see cref="WorkerPool"/>; per row the weights e^{lse_n - max} are computed once and the partial
/// outputs are accumulated in the fixed order n = 0..N-1 with TensorPrimitives (the same bits for any thread count).
/// Memory-bound: reads N·R·(Ev + 1) floats once. A steady-state call allocates nothing.
/// </summary>
internal static unsafe class AttentionCombineSimd
{
    /// <summary>Runs the operation on <paramref name="pool"/>. Arguments are assumed validated.</summary>
    public static void Run(ReadOnlySpan<float> outs, ReadOnlySpan<float> lses, Span<float> output, Span<float> lse, int n, int rows, int ev,
        WorkerPool pool)
    {
        if (rows == 0) return;
        fixed (float* po = outs) fixed (float* pl = lses) fixed (float* oo = output) fixed (float* ol = lse)
        {
            var job = Job.Cached ??= new Job();
            job.Outs = po; job.Lses = pl; job.Out = oo; job.Lse = ol; job.N = n; job.Rows = rows; job.Ev = ev;
            int chunk = Math.Max(1, 4096 / Math.Max(1, n * (ev + 1)));
            job.Chunk = chunk;
            pool.Run(job, (rows + chunk - 1) / chunk);
            job.Outs = null; job.Lses = null; job.Out = null; job.Lse = null;
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* Outs, Lses, Out, Lse;
        internal int N, Rows, Ev, Chunk;

        public void Execute(int item, int worker)
        {
            int r0 = item * Chunk, r1 = Math.Min(Rows, r0 + Chunk), n = N, ev = Ev, rows = Rows;
            for (int r = r0; r < r1; r++)
            {
                float m = float.NegativeInfinity;
                bool nan = false;
                for (int i = 0; i < n; i++)
                {
                    float l = Lses[(long)i * rows + r];
                    nan |= float.IsNaN(l);
                    m = MathF.Max(m, l);
                }
                var dst = new Span<float>(Out + (long)r * ev, ev);
                if (nan || float.IsPositiveInfinity(m)) { Lse[r] = float.NaN; dst.Fill(float.NaN); continue; }
                if (float.IsNegativeInfinity(m)) { Lse[r] = float.NegativeInfinity; dst.Clear(); continue; }
                float s = 0;
                for (int i = 0; i < n; i++)
                {
                    float l = Lses[(long)i * rows + r];
                    if (!float.IsNegativeInfinity(l)) s += MathF.Exp(l - m);
                }
                bool first = true;
                for (int i = 0; i < n; i++)
                {
                    float l = Lses[(long)i * rows + r];
                    if (float.IsNegativeInfinity(l)) continue;
                    float w = MathF.Exp(l - m) / s;
                    var src = new ReadOnlySpan<float>(Outs + ((long)i * rows + r) * ev, ev);
                    if (first) TensorPrimitives.Multiply(src, w, dst);
                    else TensorPrimitives.MultiplyAdd(src, w, dst, dst);
                    first = false;
                }
                Lse[r] = m + MathF.Log(s);
            }
        }
    }
}
