using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>spatiotemporal_pool</c>, managed. Work items: one per output row of out (a frame: the mean of its N patch rows;
/// a patch: the mean of its F frame rows) and one per region (the kept rows of its mask); each accumulates whole
/// D-rows with TensorPrimitives straight into its output row.
/// </summary>
internal static unsafe class SpatioTemporalPoolSimd
{
    /// <summary>Runs into out and (when maskSize > 0) regions.</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<byte> regionMasks, int maskSize, Span<float> output, Span<float> regions,
        int batch, int frames, int patches, int dim, int regionCount, WorkerPool pool)
    {
        if (batch == 0 || dim == 0) return;
        fixed (float* px = x) fixed (byte* pm = regionMasks) fixed (float* po = output) fixed (float* pr = regions)
        {
            var job = Job.Cached ??= new();
            job.X = px; job.Mask = pm; job.MaskSize = maskSize; job.Out = po; job.Regions = pr;
            job.B = batch; job.F = frames; job.N = patches; job.D = dim; job.R = maskSize > 0 ? regionCount : 0;
            pool.Run(job, batch * (frames + patches + job.R));
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Out, Regions; internal byte* Mask; internal int MaskSize, B, F, N, D, R;

        private ReadOnlySpan<float> Row(int b, int f, int n) => new(X + (((long)b * F + f) * N + n) * D, D);

        public void Execute(int item, int worker)
        {
            int per = F + N + R, b = item / per, k = item % per;
            if (k < F + N)
            {
                var dst = new Span<float>(Out + ((long)b * (F + N) + k) * D, D);
                dst.Clear();
                int count = k < F ? N : F;
                for (int j = 0; j < count; j++) TensorPrimitives.Add(dst, k < F ? Row(b, k, j) : Row(b, j, k - F), dst);
                if (count > 0) TensorPrimitives.Multiply(dst, 1f / count, dst);
                return;
            }
            int r = k - F - N;
            var reg = new Span<float>(Regions + ((long)b * R + r) * D, D);
            reg.Clear();
            int kept = 0;
            long mBase = ((long)b * R + r) * F * N;
            for (int f = 0; f < F; f++)
                for (int n = 0; n < N; n++)
                    if (MaskBytes.Keep(Mask, MaskSize, mBase + (long)f * N + n)) { TensorPrimitives.Add(reg, Row(b, f, n), reg); kept++; }
            if (kept > 0) TensorPrimitives.Multiply(reg, 1f / kept, reg);
        }
    }
}
