using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using PoolKernels.Kernels.Sequence;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>spatial_pool</c>, managed SIMD. NCHW: a work item is a run of (b,c) planes; each contiguous plane is
/// reduced with TensorPrimitives (Sum / Max, GeM through a 512-float stack chunk: clamp, power, sum), so x is
/// read once. NHWC: a work item is (b, block of 256 channels); each valid cell's channel row is accumulated
/// vector-wise as in sequence_pool. A valid mask is tested per cell. GeM + normalize is one pass over x followed
/// by a pass over the tiny [B,C] result. Accumulation is float. GGeM (p_groups): an NCHW plane takes its channel's p
/// (the per-plane path); an NHWC block of channels raises with its group's p, or with a per-channel p row when it
/// straddles groups (<see cref="GroupGem"/>).
/// </summary>
internal static unsafe class SpatialPoolSimd
{
    private const int Chunk = 512, Block = 256;

    /// <summary>Runs the operation into output [B,C] on <paramref name="pool"/>; <paramref name="pGroups"/> (GGeM, empty =
    /// off; G divides C) replaces p for gem: channel c uses pGroups[c / (C / G)].</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<byte> valid, int maskSize, Span<float> output,
        int batch, int channels, int height, int width, bool nhwc, SpatialPoolMode mode, float p, float eps, bool normalize,
        WorkerPool pool, ReadOnlySpan<float> pGroups = default)
    {
        if (batch == 0 || channels == 0) return;
        int hw = height * width;
        fixed (float* px = x) fixed (byte* pm = valid) fixed (float* po = output) fixed (float* pg = pGroups)
        {
            var job = Job.Cached ??= new();
            job.X = px; job.Mask = maskSize > 0 ? pm : null; job.MaskSize = maskSize; job.Out = po;
            job.B = batch; job.C = channels; job.HW = hw; job.Mode = mode; job.P = p; job.Eps = eps; job.Nhwc = nhwc;
            bool groups = !pGroups.IsEmpty && mode == SpatialPoolMode.Gem;
            job.PGroups = groups ? pg : null; job.GroupSize = groups ? channels / pGroups.Length : 0;
            int items;
            if (nhwc) { job.Blocks = (channels + Block - 1) / Block; items = batch * job.Blocks; }
            else
            {
                job.PlanesPerItem = Math.Max(1, 8192 / Math.Max(1, hw)); items = (int)(((long)batch * channels
                + job.PlanesPerItem - 1) / job.PlanesPerItem);
            }
            pool.Run(job, items);
            job.PGroups = null;
        }
        if (normalize)
            for (int b = 0; b < batch; b++) SequencePoolSimd.NormalizeInPlace(output.Slice(b * channels, channels));
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Out; internal byte* Mask;
        internal float* PGroups; // GGeM (gem only): null = off, else channel c uses PGroups[c / GroupSize]
        internal int MaskSize, B, C, HW, Blocks, PlanesPerItem, GroupSize;
        internal SpatialPoolMode Mode; internal float P, Eps; internal bool Nhwc;

        public void Execute(int item, int worker)
        {
            if (Nhwc) { Rows(item); return; }
            long first = (long)item * PlanesPerItem, end = Math.Min(first + PlanesPerItem, (long)B * C);
            if (PGroups != null)
            {
                for (long plane = first; plane < end; plane++) Out[plane] = Plane(plane, PGroups[(int)(plane % C) / GroupSize]);
                return;
            }
            if (Mode == SpatialPoolMode.Gem && Mask == null && HW > 0 && (P == 3f || P == 2f))
            {
                // GeM over whole planes: the means first, then one vectorized power for the item's run of outputs
                // (a scalar pow per 7×7 plane would cost as much as the plane's sum)
                for (long plane = first; plane < end; plane++) Out[plane] = GemSumFused(X + plane * HW, HW, P) / HW;
                var means = new Span<float>(Out + first, (int)(end - first));
                if (P == 2f) TensorPrimitives.Sqrt(means, means); else VectorMath.Cbrt(means, means);
                return;
            }
            for (long plane = first; plane < end; plane++) Out[plane] = Plane(plane, P);
        }

        private float Plane(long plane, float p)
        {
            float* src = X + plane * HW;
            if (Mask != null)
            {
                byte* m = Mask + plane / C * HW * MaskSize;
                int n = 0; float s = 0, mx = float.NegativeInfinity;
                for (int i = 0; i < HW; i++)
                {
                    if (!MaskBytes.Keep(m, MaskSize, i)) continue;
                    float v = src[i]; n++;
                    if (Mode == SpatialPoolMode.Avg) s += v;
                    else if (Mode == SpatialPoolMode.Max) mx = Numerics.MaxNaN(mx, v);
                    else s += Pow(MathF.Max(v, Eps), p);
                }
                return n == 0 ? 0 : Finish(s, mx, n, p);
            }
            if (HW == 0) return 0;
            var row = new ReadOnlySpan<float>(src, HW);
            if (Mode == SpatialPoolMode.Avg) return TensorPrimitives.Sum(row) / HW;
            if (Mode == SpatialPoolMode.Max) return TensorPrimitives.Max(row);
            if (p == 3f || p == 2f) return Finish(GemSumFused(src, HW, p), 0, HW, p);
            float* buf = stackalloc float[Chunk];
            float sum = 0;
            for (int i = 0; i < HW; i += Chunk)
            {
                int n = Math.Min(Chunk, HW - i);
                var tmp = new Span<float>(buf, n);
                TensorPrimitives.Max(row.Slice(i, n), Eps, tmp);
                VectorMath.Pow(tmp, p, tmp);
                sum += TensorPrimitives.Sum(tmp);
            }
            return Finish(sum, 0, HW, p);
        }

        private void Rows(int item)
        {
            int b = item / Blocks, c0 = item % Blocks * Block, n = Math.Min(Block, C - c0);
            bool groups = PGroups != null;
            float* buf = stackalloc float[(groups ? 4 : 2) * Block];
            var acc = new Span<float>(buf, n); var tmp = new Span<float>(buf + Block, n);
            // GGeM: the block's one p (plain GeM's path), or NaN with a per-channel p and 1/p row (a block across groups)
            Span<float> pRow = default, invRow = default;
            float p = P;
            if (groups)
            {
                pRow = new Span<float>(buf + 2 * Block, n); invRow = new Span<float>(buf + 3 * Block, n);
                p = GroupGem.Fill(PGroups, GroupSize, c0, pRow, invRow);
            }
            bool perChannel = float.IsNaN(p);
            acc.Fill(Mode == SpatialPoolMode.Max ? float.NegativeInfinity : 0f);
            int count = 0;
            for (int i = 0; i < HW; i++)
            {
                if (Mask != null && !MaskBytes.Keep(Mask, MaskSize, (long)b * HW + i)) continue;
                count++;
                var row = new ReadOnlySpan<float>(X + ((long)b * HW + i) * C + c0, n);
                if (Mode == SpatialPoolMode.Avg) TensorPrimitives.Add(acc, row, acc);
                else if (Mode == SpatialPoolMode.Max) TensorPrimitives.Max(acc, row, acc);
                else
                {
                    TensorPrimitives.Max(row, Eps, tmp);
                    if (perChannel) GroupGem.Pow(tmp, pRow, tmp); else VectorMath.Pow(tmp, p, tmp);
                    TensorPrimitives.Add(acc, tmp, acc);
                }
            }
            var dst = new Span<float>(Out + (long)b * C + c0, n);
            if (count == 0) { dst.Clear(); return; }
            if (Mode == SpatialPoolMode.Max) { acc.CopyTo(dst); return; }
            TensorPrimitives.Multiply(acc, 1f / count, dst);
            if (Mode != SpatialPoolMode.Gem) return;
            if (perChannel) GroupGem.Pow(dst, invRow, dst);
            else if (p != 1f) VectorMath.Pow(dst, 1f / p, dst);
        }

        // Σ max(x,eps)^p for p = 2 or 3 in one pass of registers: no scratch row. Small planes (7×7 CNN maps) are
        // dominated by per-call overhead in the TensorPrimitives chain, so this is the path GeM + normalize takes.
        private float GemSumFused(float* src, int n, float p)
        {
            int i = 0;
            float s = 0;
            bool cube = p == 3f;
            if (Vector512.IsHardwareAccelerated && n >= 16)
            {
                var acc = Vector512<float>.Zero; var e = Vector512.Create(Eps);
                for (; i + 16 <= n; i += 16)
                {
                    var x = Vector512.Load(src + i);
                    var v = Vector512.ConditionalSelect(Vector512.Equals(x, x), Vector512.Max(x, e), x); // NaN stays NaN
                    acc += cube ? v * v * v : v * v;
                }
                s = Vector512.Sum(acc);
            }
            else if (Vector256.IsHardwareAccelerated && n >= 8)
            {
                var acc = Vector256<float>.Zero; var e = Vector256.Create(Eps);
                for (; i + 8 <= n; i += 8)
                {
                    var x = Vector256.Load(src + i);
                    var v = Vector256.ConditionalSelect(Vector256.Equals(x, x), Vector256.Max(x, e), x);
                    acc += cube ? v * v * v : v * v;
                }
                s = Vector256.Sum(acc);
            }
            else if (Vector128.IsHardwareAccelerated && n >= 4)
            {
                var acc = Vector128<float>.Zero; var e = Vector128.Create(Eps);
                for (; i + 4 <= n; i += 4)
                {
                    var x = Vector128.Load(src + i);
                    var v = Vector128.ConditionalSelect(Vector128.Equals(x, x), Vector128.Max(x, e), x);
                    acc += cube ? v * v * v : v * v;
                }
                s = Vector128.Sum(acc);
            }
            for (; i < n; i++) s += Pow(MathF.Max(src[i], Eps), p);
            return s;
        }

        private static float Pow(float v, float p) => p == 3f ? v * v * v : p == 2f ? v * v : MathF.Pow(v, p);

        private float Finish(float s, float mx, int n, float p) => Mode switch
        {
            SpatialPoolMode.Avg => s / n,
            SpatialPoolMode.Max => mx,
            _ => p == 1f ? s / n : MathF.Pow(s / n, 1f / p),
        };
    }
}
