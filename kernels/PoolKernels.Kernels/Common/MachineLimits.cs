using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels;

/// <summary>
/// Kernels that measure this machine's limits, so speed can be reported as a share of what the hardware does
/// in the same run: a streaming read (the memory/cache bandwidth a pooling kernel can hope for) and a
/// register-resident FMA loop (the F32 peak a GEMM or attention kernel can hope for). Both use every worker.
/// </summary>
internal static unsafe class MachineLimits
{
    /// <summary>Sums <paramref name="data"/> on every worker of <paramref name="pool"/> (a read-bandwidth probe);
    /// the sum is returned so the work cannot be elided.</summary>
    public static float StreamingSum(ReadOnlySpan<float> data, WorkerPool? pool = null)
    {
        pool ??= WorkerPool.Shared;
        fixed (float* p = data)
        {
            var job = SumJob.Cached ??= new SumJob();
            job.Data = p; job.Length = data.Length; job.Chunk = 1 << 16;
            int items = (data.Length + job.Chunk - 1) / job.Chunk;
            Array.Clear(job.Partial);
            pool.Run(job, items);
            float s = 0;
            foreach (var v in job.Partial) s += v;
            return s;
        }
    }

    /// <summary>Runs <paramref name="iterations"/> rounds of 8 independent Vector512 (or Vector256, Vector128) FMA chains per
    /// worker; returns the F32 FLOPs performed (2 per lane per FMA). The work is cut into 64 items handed out
    /// dynamically, so one worker delayed by another process does not stretch the whole loop.</summary>
    public static double FmaLoop(long iterations, WorkerPool? pool = null)
    {
        pool ??= WorkerPool.Shared;
        var job = FmaJob.Cached ??= new FmaJob();
        job.Iterations = Math.Max(1, iterations * pool.Workers / FmaItems);
        pool.Run(job, FmaItems);
        int lanes = FmaLanes;
        return 2.0 * 8 * lanes * job.Iterations * FmaItems;
    }

    /// <summary>Runs about <paramref name="flops"/> F32 FLOPs of <see cref="FmaLoop"/>: the time a compute-bound kernel of
    /// that many FLOPs would take at the machine's peak. Returns the FLOPs performed.</summary>
    public static double FmaFlops(double flops, WorkerPool? pool = null)
    {
        pool ??= WorkerPool.Shared;
        int lanes = FmaLanes;
        return FmaLoop((long)(flops / (2.0 * 8 * lanes * pool.Workers)), pool);
    }

    private const int FmaItems = 64;

    /// <summary>Floats per vector of the FMA loop: the widest accelerated width (Vector128 also when none is).</summary>
    private static int FmaLanes => Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;

    private sealed class SumJob : IParallelJob
    {
        [ThreadStatic] internal static SumJob? Cached;
        internal float* Data; internal int Length, Chunk;
        internal readonly float[] Partial = new float[256];
        public void Execute(int item, int worker)
        {
            int start = item * Chunk, n = Math.Min(Chunk, Length - start);
            float s = TensorPrimitives.Sum(new ReadOnlySpan<float>(Data + start, n));
            lock (Partial) Partial[worker % Partial.Length] += s;
        }
    }

    private sealed class FmaJob : IParallelJob
    {
        [ThreadStatic] internal static FmaJob? Cached;
        internal long Iterations;
        internal float Sink;
        public void Execute(int item, int worker)
        {
            if (Vector512.IsHardwareAccelerated)
            {
                var a = Vector512.Create(0.999f); var b = Vector512.Create(1e-3f);
                Vector512<float> c0 = Vector512.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
                for (long i = 0; i < Iterations; i++)
                {
                    c0 = Vector512.FusedMultiplyAdd(c0, a, b); c1 = Vector512.FusedMultiplyAdd(c1, a, b);
                    c2 = Vector512.FusedMultiplyAdd(c2, a, b); c3 = Vector512.FusedMultiplyAdd(c3, a, b);
                    c4 = Vector512.FusedMultiplyAdd(c4, a, b); c5 = Vector512.FusedMultiplyAdd(c5, a, b);
                    c6 = Vector512.FusedMultiplyAdd(c6, a, b); c7 = Vector512.FusedMultiplyAdd(c7, a, b);
                }
                Sink += Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7);
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var a = Vector256.Create(0.999f); var b = Vector256.Create(1e-3f);
                Vector256<float> c0 = Vector256.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
                for (long i = 0; i < Iterations; i++)
                {
                    c0 = Vector256.FusedMultiplyAdd(c0, a, b); c1 = Vector256.FusedMultiplyAdd(c1, a, b);
                    c2 = Vector256.FusedMultiplyAdd(c2, a, b); c3 = Vector256.FusedMultiplyAdd(c3, a, b);
                    c4 = Vector256.FusedMultiplyAdd(c4, a, b); c5 = Vector256.FusedMultiplyAdd(c5, a, b);
                    c6 = Vector256.FusedMultiplyAdd(c6, a, b); c7 = Vector256.FusedMultiplyAdd(c7, a, b);
                }
                Sink += Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7);
            }
            else
            {
                // Vector128 (NEON, SSE4): the multiply-add the Vector128 kernels use (fused on NEON; mul + add on SSE)
                var a = Vector128.Create(0.999f); var b = Vector128.Create(1e-3f);
                Vector128<float> c0 = Vector128.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
                for (long i = 0; i < Iterations; i++)
                {
                    c0 = Vector128.MultiplyAddEstimate(c0, a, b); c1 = Vector128.MultiplyAddEstimate(c1, a, b);
                    c2 = Vector128.MultiplyAddEstimate(c2, a, b); c3 = Vector128.MultiplyAddEstimate(c3, a, b);
                    c4 = Vector128.MultiplyAddEstimate(c4, a, b); c5 = Vector128.MultiplyAddEstimate(c5, a, b);
                    c6 = Vector128.MultiplyAddEstimate(c6, a, b); c7 = Vector128.MultiplyAddEstimate(c7, a, b);
                }
                Sink += Vector128.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7);
            }
        }
    }
}
