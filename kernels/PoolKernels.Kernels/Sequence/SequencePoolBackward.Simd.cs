using System.Numerics.Tensors;
using PoolKernels.Kernels.Spatial;

namespace PoolKernels.Kernels.Sequence;

/// <summary>
/// <c>sequence_pool_backward</c> / <c>spatial_pool_backward</c>, managed SIMD on the <see cref="WorkerPool"/>; the math of
/// <see cref="SequencePoolBackwardReference"/> in float. Work items are (batch row, block of <see cref="Block"/> features):
/// with normalize a first pass writes the forward row y, then each row's g = dL/dy is formed; the gradient pass streams the
/// block's kept rows once for the statistics (TensorPrimitives) and once more to write dx for every position of the block.
/// Each (b, d) is owned by one item and the gem partials of d_p_groups are summed on the calling thread in a fixed order
/// (b, then d), so the bits do not depend on the thread count. Scratch lives on the stack and in per-thread arrays that
/// grow once: a steady-state call allocates nothing.
/// </summary>
internal static unsafe class SequencePoolBackwardSimd
{
    /// <summary>Features per work item.</summary>
    public const int Block = 64;

    [ThreadStatic] private static float[]? _scratch;

    /// <summary>Runs the operation (see <see cref="SequencePoolBackwardReference.Run"/> for the arguments).</summary>
    public static void Run<T>(ReadOnlySpan<T> x, ReadOnlySpan<byte> mask, ReadOnlySpan<byte> prefix, ReadOnlySpan<float> dOut,
        ReadOnlySpan<float> pGroups, Span<float> dx, Span<float> dPGroups, in PoolBackwardParams q, WorkerPool? pool = null,
        int maxWorkers = int.MaxValue) where T : unmanaged
    {
        dPGroups.Clear();
        if (q.Batch == 0 || q.Dim == 0) return;
        pool ??= WorkerPool.Shared;
        int blocks = (q.Dim + Block - 1) / Block;
        long rowsLen = (long)q.Batch * q.Dims, gpLen = pGroups.IsEmpty ? 0 : (long)q.Batch * q.Dim;
        long need = (q.Normalize != 0 ? 2 * rowsLen : 0) + gpLen;
        if (_scratch is null || _scratch.Length < need) _scratch = new float[Math.Max(need, 1)];
        fixed (T* xp = x) fixed (byte* mp = mask) fixed (byte* pp = prefix) fixed (float* gop = dOut) fixed (float* pgp = pGroups)
        fixed (float* dxp = dx) fixed (float* sp = _scratch)
        {
            var job = Job<T>.Cached ??= new();
            job.X = xp; job.Mask = mp; job.Prefix = pp; job.PGroups = pGroups.IsEmpty ? null : pgp; job.Dx = dxp; job.Q = q;
            job.Blocks = blocks;
            job.Y = sp; job.G = q.Normalize != 0 ? sp + rowsLen : gop; job.DOut = gop;
            job.Gp = gpLen == 0 ? null : sp + (q.Normalize != 0 ? 2 * rowsLen : 0);
            if (q.Normalize != 0)
            {
                job.Phase = 0; pool.Run(job, q.Batch * blocks, maxWorkers);
                job.Phase = 1; pool.Run(job, q.Batch, maxWorkers);
            }
            job.Phase = 2; pool.Run(job, q.Batch * blocks, maxWorkers);
            if (job.Gp != null)
                for (int k = 0; k < q.Groups; k++)
                {
                    float acc = 0;
                    for (int b = 0; b < q.Batch; b++)
                        for (int d = k * q.GroupSize; d < (k + 1) * q.GroupSize; d++) acc += job.Gp[(long)b * q.Dim + d];
                    dPGroups[k] = acc;
                }
            job.X = null; job.Mask = null; job.Prefix = null; job.PGroups = null; job.Dx = null; job.Y = job.G = job.DOut = job.Gp = null;
        }
    }

    private sealed class Job<T> : IParallelJob where T : unmanaged
    {
        [ThreadStatic] internal static Job<T>? Cached;
        internal T* X; internal byte* Mask, Prefix; internal float* PGroups, Dx, Y, G, DOut, Gp;
        internal PoolBackwardParams Q;
        internal int Blocks, Phase;

        public void Execute(int item, int worker)
        {
            if (Phase == 1) { NormalizeGrad(item); return; }
            ref readonly var q = ref Q;
            int b = item / Blocks, d0 = item % Blocks * Block, n = Math.Min(Block, q.Dim - d0);
            float* buf = stackalloc float[14 * Block];
            Span<float> Row(int k) => new(buf + k * Block, n);
            Span<float> xs = Row(0), mx = Row(1), sum = Row(2), wsum = Row(3), gs = Row(4), gl = Row(5), pr = Row(6);
            for (int i = 0; i < n; i++) pr[i] = PGroups != null ? PGroups[(d0 + i) / q.GroupSize] : q.P;
            mx.Fill(float.NegativeInfinity); sum.Clear(); wsum.Clear(); gs.Clear(); gl.Clear();
            long skip = Math.Max(0, Prefix == null ? 0 : PoolBackwardCommon.Prefix(new ReadOnlySpan<byte>(Prefix + (long)b * q.PrefixSize,
                q.PrefixSize), q.PrefixSize, 0)), seen = 0;
            int count = 0, first = -1, last = -1;
            float wtotal = 0;
            bool gem = false, max = false;
            for (int m = 0; m < q.ModeCount; m++)
            {
                gem |= PoolBackwardCommon.Mode(q, m) == SequencePoolMode.Gem;
                max |= PoolBackwardCommon.Mode(q, m) == SequencePoolMode.Max;
            }
            for (int t = 0; t < q.Len; t++)
            {
                if (!Kept(b, t) || seen++ < skip) continue;
                if (first < 0) first = t;
                last = t; count++; wtotal += t + 1;
                var v = Load(b, t, d0, xs);
                TensorPrimitives.Add(sum, v, sum);
                TensorPrimitives.MultiplyAdd(v, (float)(t + 1), wsum, wsum);
                if (max) TensorPrimitives.Max(mx, v, mx);
                if (gem)
                    for (int i = 0; i < n; i++)
                    {
                        float c = Numerics.MaxNaN(v[i], q.Eps), cp = MathF.Pow(c, pr[i]);
                        gs[i] += cp; gl[i] += cp * MathF.Log(c);
                    }
            }
            if (Phase == 0) { Forward(b, d0, count, first, last, wtotal, sum, wsum, mx, gs, pr, xs); return; }

            Span<float> lin = Row(7), wco = Row(8), gCls = Row(9), gLast = Row(10), gMax = Row(11), gGem = Row(12), yGem = Row(13);
            lin.Clear(); wco.Clear(); gCls.Clear(); gLast.Clear(); gMax.Clear(); gGem.Clear(); yGem.Clear();
            bool anyGem = false;
            if (count > 0)
            {
                for (int i = 0; i < n; i++) yGem[i] = MathF.Pow(gs[i] / count, 1f / pr[i]);
                float inv = 1f / count, invSqrt = (float)(1.0 / Math.Sqrt(count)), invW = 1f / wtotal;
                for (int m = 0; m < q.ModeCount; m++)
                {
                    int f0 = m * q.Dim + d0;
                    if (f0 >= q.Dims) break;
                    int k = Math.Min(n, q.Dims - f0);
                    var gm = new ReadOnlySpan<float>(G + (long)b * q.Dims + f0, k);
                    switch (PoolBackwardCommon.Mode(q, m))
                    {
                        case SequencePoolMode.Cls: TensorPrimitives.Add(gCls[..k], gm, gCls[..k]); break;
                        case SequencePoolMode.LastToken: TensorPrimitives.Add(gLast[..k], gm, gLast[..k]); break;
                        case SequencePoolMode.Mean: TensorPrimitives.MultiplyAdd(gm, inv, lin[..k], lin[..k]); break;
                        case SequencePoolMode.MeanSqrtLen: TensorPrimitives.MultiplyAdd(gm, invSqrt, lin[..k], lin[..k]); break;
                        case SequencePoolMode.WeightedMean: TensorPrimitives.MultiplyAdd(gm, invW, wco[..k], wco[..k]); break;
                        case SequencePoolMode.Max: TensorPrimitives.Add(gMax[..k], gm, gMax[..k]); break;
                        default: TensorPrimitives.Add(gGem[..k], gm, gGem[..k]); anyGem = true; break;
                    }
                }
            }
            // Row 2 (sum) becomes the output row, row 3 (wsum) the "max already routed" flags
            Span<float> r = sum, done = wsum;
            done.Clear();
            seen = 0;
            for (int t = 0; t < q.Len; t++)
            {
                if (!Kept(b, t) || seen++ < skip) { r.Clear(); Store(b, t, d0, r); continue; }
                var v = Load(b, t, d0, xs);
                TensorPrimitives.MultiplyAdd(wco, (float)(t + 1), lin, r);
                if (t == first) TensorPrimitives.Add(r, gCls, r);
                if (t == last) TensorPrimitives.Add(r, gLast, r);
                if (max)
                    for (int i = 0; i < n; i++)
                        if (done[i] == 0 && (v[i] == mx[i] || (float.IsNaN(mx[i]) && float.IsNaN(v[i])))) { r[i] += gMax[i]; done[i] = 1; }
                if (anyGem)
                    for (int i = 0; i < n; i++)
                        if (v[i] >= q.Eps) r[i] += gGem[i] * MathF.Pow(v[i] / yGem[i], pr[i] - 1) / count;
                Store(b, t, d0, r);
            }
            if (Gp != null)
                for (int i = 0; i < n; i++)
                    Gp[(long)b * q.Dim + d0 + i] = anyGem
                        ? gGem[i] * yGem[i] * (-MathF.Log(gs[i] / count) / (pr[i] * pr[i]) + gl[i] / (pr[i] * gs[i])) : 0;
        }

        private void Forward(int b, int d0, int count, int first, int last, float wtotal, Span<float> sum, Span<float> wsum,
            Span<float> mx, Span<float> gs, Span<float> pr, Span<float> xs)
        {
            ref readonly var q = ref Q;
            int n = sum.Length;
            for (int m = 0; m < q.ModeCount; m++)
            {
                int f0 = m * q.Dim + d0;
                if (f0 >= q.Dims) break;
                var dst = new Span<float>(Y + (long)b * q.Dims + f0, Math.Min(n, q.Dims - f0));
                int k = dst.Length;
                if (count == 0) { dst.Clear(); continue; }
                switch (PoolBackwardCommon.Mode(q, m))
                {
                    case SequencePoolMode.Cls: Load(b, first, d0, xs)[..k].CopyTo(dst); break;
                    case SequencePoolMode.LastToken: Load(b, last, d0, xs)[..k].CopyTo(dst); break;
                    case SequencePoolMode.Mean: TensorPrimitives.Multiply(sum[..k], 1f / count, dst); break;
                    case SequencePoolMode.MeanSqrtLen: TensorPrimitives.Multiply(sum[..k], (float)(1.0 / Math.Sqrt(count)), dst); break;
                    case SequencePoolMode.WeightedMean: TensorPrimitives.Multiply(wsum[..k], 1f / wtotal, dst); break;
                    case SequencePoolMode.Max: mx[..k].CopyTo(dst); break;
                    default: for (int i = 0; i < k; i++) dst[i] = MathF.Pow(gs[i] / count, 1f / pr[i]); break;
                }
            }
        }

        /// <summary>g = dL/dy of row b through y / max(‖y‖, 1e-12).</summary>
        private void NormalizeGrad(int b)
        {
            int w = Q.Dims;
            var y = new ReadOnlySpan<float>(Y + (long)b * w, w);
            var go = new ReadOnlySpan<float>(DOut + (long)b * w, w);
            var g = new Span<float>(G + (long)b * w, w);
            float n = TensorPrimitives.Norm(y), dot = TensorPrimitives.Dot(y, go);
            if (n > 1e-12f)
            {
                TensorPrimitives.Multiply(go, 1f / n, g);
                TensorPrimitives.MultiplyAdd(y, -(dot / (n * n * n)), g, g);
            }
            else TensorPrimitives.Multiply(go, 1f / 1e-12f, g);
        }

        private bool Kept(int b, int t) => Q.MaskSize == 0 || MaskBytes.Keep(Mask, Q.MaskSize, (long)b * Q.Len + t);

        /// <summary>x[b, t, d0 .. d0 + n) as floats (the row itself for contiguous F32 features).</summary>
        private ReadOnlySpan<float> Load(int b, int t, int d0, Span<float> scratch)
        {
            ref readonly var q = ref Q;
            T* p = X + b * q.StrideB + t * q.StrideT + d0 * q.StrideD;
            if (q.StrideD == 1) return Elements.AsFloats(new ReadOnlySpan<T>(p, scratch.Length), scratch);
            for (int i = 0; i < scratch.Length; i++) scratch[i] = Elements.ToFloat(p[i * q.StrideD]);
            return scratch;
        }

        private void Store(int b, int t, int d0, ReadOnlySpan<float> r)
        {
            ref readonly var q = ref Q;
            float* p = Dx + b * q.StrideB + t * q.StrideT + d0 * q.StrideD;
            if (q.StrideD == 1) { r.CopyTo(new Span<float>(p, r.Length)); return; }
            for (int i = 0; i < r.Length; i++) p[i * q.StrideD] = r[i];
        }
    }
}
