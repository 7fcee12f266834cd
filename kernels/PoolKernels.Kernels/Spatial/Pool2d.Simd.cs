using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>pool2d</c>, <c>adaptive_pool2d</c> and <c>spp</c>, managed, multi-threaded over (b,c) planes. Max/min with zero
/// padding, no dilation, stride 2 and kernel width ≤ 3 (the CNN stem case) run in one vectorized pass from the input rows
/// (<c>StrideTwo</c> with AVX-512, <c>StrideTwo128</c> with Vector128 only: NEON, SSE4);
/// other zero-padded max/min without dilation run separably: each output row first takes the vertical max of its
/// KH input rows into a stack row (TensorPrimitives.Max, full-width vectors), then the horizontal strided max of
/// that row; everything else walks the window per output cell in float. Adaptive levels on planes up to 64×64 take
/// the channels as vector lanes (see <c>AdaptiveJob.ExecuteLanes</c>).
/// </summary>
internal static unsafe class Pool2dSimd
{
    /// <summary>The built-in input floats per work item (the tunable <c>item</c>): whole planes, at least one.</summary>
    public const int DefaultItemFloats = 16384;

    /// <summary>Runs into output [B,C,OutH,OutW]. A work item covers max(1, <paramref name="itemFloats"/> / (H·W)) planes;
    /// any positive value is correct.</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, in Pool2dParams q, WorkerPool pool,
        int itemFloats = DefaultItemFloats)
    {
        long planes = (long)q.Batch * q.Channels;
        if (planes == 0 || q.OutH == 0 || q.OutW == 0) return;
        fixed (float* px = x) fixed (float* po = output)
        {
            var job = Job.Cached ??= new();
            job.X = px; job.Out = po; job.Q = q;
            job.PlanesPerItem = (int)Math.Max(1, Math.Max(1, itemFloats) / Math.Max(1L, (long)q.H * q.W));
            pool.Run(job, (int)((planes + job.PlanesPerItem - 1) / job.PlanesPerItem));
        }
    }

    /// <summary>Runs one adaptive level.</summary>
    public static void RunAdaptive(ReadOnlySpan<float> x, Span<float> output, in AdaptivePoolParams q, WorkerPool pool)
    {
        if ((long)q.Batch * q.Channels * q.OutH * q.OutW == 0) return;
        fixed (float* px = x) fixed (float* po = output)
        {
            var job = AdaptiveJob.Cached ??= new();
            job.X = px; job.Out = po; job.Q = q;
            long hw = (long)q.H * q.W, bins = (long)q.OutH * q.OutW;
            job.Lanes = Vector512.IsHardwareAccelerated && hw <= RegionalGemSimd.LanePlane && bins <= RegionalGemSimd.LanePlane;
            job.Groups = (q.Channels + 15) / 16;
            if (job.Lanes) pool.EnsureScratch(ref job.Rows, (hw + bins) * 16 + 16, pinned: true);
            else pool.EnsureScratch(ref job.Rows, q.W);
            pool.Run(job, job.Lanes ? q.Batch * job.Groups : q.Batch * q.Channels);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Out; internal Pool2dParams Q; internal int PlanesPerItem;

        public void Execute(int item, int worker)
        {
            long planes = (long)Q.Batch * Q.Channels;
            for (long p = (long)item * PlanesPerItem, end = Math.Min(planes, p + PlanesPerItem); p < end; p++) Plane(p);
        }

        private void Plane(long plane)
        {
            ref readonly var q = ref Q;
            float* src = X + plane * q.H * q.W, dst = Out + plane * q.OutH * q.OutW;
            var mode = (Pool2dMode)q.Mode;
            bool minmax = mode is Pool2dMode.Max or Pool2dMode.Min;
            if (minmax && q.PadMode == PadIndex.Zeros && q.DH == 1 && q.DW == 1 && q.SW == 2 && q.KW <= 3 && Avx512F.IsSupported
                && q.W >= 34)
            {
                StrideTwo(src, dst, mode == Pool2dMode.Max);
                return;
            }
            if (minmax && q.PadMode == PadIndex.Zeros && q.DH == 1 && q.DW == 1 && q.SW == 2 && q.KW <= 3 && VectorMath.Narrow && q.W >= 10)
            {
                StrideTwo128(src, dst, mode == Pool2dMode.Max);
                return;
            }
            if (minmax && q.PadMode == PadIndex.Zeros && q.DH == 1 && q.DW == 1 && q.SW <= 2
                && (long)(q.OutW + q.KW) * q.SW + q.W + 2 * q.PW <= 8192)
            {
                Separable(src, dst, mode == Pool2dMode.Max);
                return;
            }
            for (int oh = 0; oh < q.OutH; oh++)
                for (int ow = 0; ow < q.OutW; ow++)
                    dst[(long)oh * q.OutW + ow] = Window(src, oh, ow, mode);
        }

        // Max/min with zero padding, no dilation, horizontal stride 1 or 2 (every CNN stem / downsampling pool), all in
        // full-width vectors: per output row, the vertical max of its KH input rows is written into a row R whose pad
        // cells hold -inf (+inf for min: ignored, as PyTorch's -inf padding; every window holds a real cell); stride 2
        // splits R into its even and odd cells, after which each of the KW window taps is a contiguous slice, so the
        // horizontal max is KW TensorPrimitives.Max calls over OutW entries. NaN propagates (TensorPrimitives.Max/Min).
        private void Separable(float* src, float* dst, bool isMax)
        {
            ref readonly var q = ref Q;
            int len = (q.OutW + q.KW) * q.SW + q.W + 2 * q.PW, half = len / 2 + 1;
            float* buf = stackalloc float[len + 2 * half];
            var r = new Span<float>(buf, len);
            var even = new Span<float>(buf + len, half); var odd = new Span<float>(buf + len + half, half);
            float pad = isMax ? float.NegativeInfinity : float.PositiveInfinity;
            r.Fill(pad);
            var mid = r.Slice(q.PW, q.W);
            for (int oh = 0; oh < q.OutH; oh++)
            {
                var o = new Span<float>(dst + (long)oh * q.OutW, q.OutW);
                int h0 = Math.Max(oh * q.SH - q.ImpH, 0), h1 = Math.Min(oh * q.SH - q.ImpH + q.KH, q.H);
                if (h0 >= h1) { o.Clear(); continue; }
                var first = new ReadOnlySpan<float>(src + (long)h0 * q.W, q.W);
                if (h1 - h0 == 1) first.CopyTo(mid);
                else
                {
                    // the first two rows straight into R (no copy), then the rest
                    var second = new ReadOnlySpan<float>(src + (long)(h0 + 1) * q.W, q.W);
                    if (isMax) TensorPrimitives.Max(first, second, mid); else TensorPrimitives.Min(first, second, mid);
                    for (int h = h0 + 2; h < h1; h++)
                    {
                        var next = new ReadOnlySpan<float>(src + (long)h * q.W, q.W);
                        if (isMax) TensorPrimitives.Max(mid, next, mid); else TensorPrimitives.Min(mid, next, mid);
                    }
                }
                if (q.SW == 1)
                {
                    r.Slice(0, q.OutW).CopyTo(o);
                    for (int c = 1; c < q.KW; c++)
                        if (isMax) TensorPrimitives.Max(o, r.Slice(c, q.OutW), o); else TensorPrimitives.Min(o, r.Slice(c, q.OutW), o);
                    continue;
                }
                Deinterleave(buf, buf + len, buf + len + half, Math.Min(half, len / 2));
                even.Slice(0, q.OutW).CopyTo(o);
                for (int c = 1; c < q.KW; c++)
                {
                    var tap = ((c & 1) == 0 ? even : odd).Slice(c >> 1, q.OutW);
                    if (isMax) TensorPrimitives.Max(o, tap, o); else TensorPrimitives.Min(o, tap, o);
                }
            }
        }

        // Max/min, zero padding, horizontal stride 2, kernel width <= 3 (the ResNet stem's 3×3 s2 p1): one pass, 16
        // outputs per step straight from the input rows. Per input row of the window, tap c of output lane l is
        // x[2(j0 + l) - pad + c]: taps 0 and 1 are the even and odd lanes of the 32 floats at the window start (two loads,
        // two vpermt2ps), tap 2 the even lanes of the 32 floats one further on; the row maxima meet in one register.
        // Windows that touch the padding or the row end (the first and last few outputs) take the scalar Window.
        // Before: the separable path's per-row TensorPrimitives calls and stack rows ([32,64,112,112] 3×3 s2 p1 ~18 ms).
        private void StrideTwo(float* src, float* dst, bool isMax)
        {
            ref readonly var q = ref Q;
            var ie = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            var io = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            int jLo = (q.ImpW + 1) / 2;                 // first output whose window starts inside the row
            int jLast = (q.W - 34 + q.ImpW) / 2;        // last block start whose loads (up to 2j - pad + 33) stay in the row
            for (int oh = 0; oh < q.OutH; oh++)
            {
                float* o = dst + (long)oh * q.OutW;
                int h0 = Math.Max(oh * q.SH - q.ImpH, 0), h1 = Math.Min(oh * q.SH - q.ImpH + q.KH, q.H);
                int j = 0;
                for (; j < Math.Min(jLo, q.OutW); j++) o[j] = Edge(src, h0, h1, j, isMax);
                if (h0 < h1 && jLast >= jLo && q.OutW - jLo >= 16)
                    for (int end = Math.Min(q.OutW, jLast + 16); j < end; j = Math.Min(j + 16, end))
                    {
                        j = Math.Min(j, end - 16); // the last block shifts left (recomputing a few outputs) to stay in the row
                        Vector512<float> acc = default;
                        for (int h = h0; h < h1; h++)
                        {
                            float* b = src + (long)h * q.W + 2 * j - q.ImpW;
                            var lo = Vector512.Load(b); var hi = Vector512.Load(b + 16);
                            var m = Avx512F.PermuteVar16x32x2(lo, ie, hi);
                            if (q.KW > 1)
                            {
                                var t1 = Avx512F.PermuteVar16x32x2(lo, io, hi);
                                m = isMax ? Vector512.Max(m, t1) : Vector512.Min(m, t1);
                            }
                            if (q.KW > 2)
                            {
                                var t2 = Avx512F.PermuteVar16x32x2(Vector512.Load(b + 2), ie, Vector512.Load(b + 18));
                                m = isMax ? Vector512.Max(m, t2) : Vector512.Min(m, t2);
                            }
                            acc = h == h0 ? m : isMax ? Vector512.Max(acc, m) : Vector512.Min(acc, m);
                        }
                        acc.Store(o + j);
                    }
                for (; j < q.OutW; j++) o[j] = Edge(src, h0, h1, j, isMax);
            }
        }

        // StrideTwo with Vector128 only (NEON, SSE4): 4 outputs per step, taps 0 and 1 the even and odd lanes of the 8
        // floats at the window start (uzp1/uzp2 or shufps), tap 2 the even lanes of the 8 floats at +2.
        private void StrideTwo128(float* src, float* dst, bool isMax)
        {
            ref readonly var q = ref Q;
            int jLo = (q.ImpW + 1) / 2;                 // first output whose window starts inside the row
            int jLast = (q.W - 10 + q.ImpW) / 2;        // last block start whose loads (up to 2j - pad + 9) stay in the row
            for (int oh = 0; oh < q.OutH; oh++)
            {
                float* o = dst + (long)oh * q.OutW;
                int h0 = Math.Max(oh * q.SH - q.ImpH, 0), h1 = Math.Min(oh * q.SH - q.ImpH + q.KH, q.H);
                int j = 0;
                for (; j < Math.Min(jLo, q.OutW); j++) o[j] = Edge(src, h0, h1, j, isMax);
                if (h0 < h1 && jLast >= jLo && q.OutW - jLo >= 4)
                    for (int end = Math.Min(q.OutW, jLast + 4); j < end; j = Math.Min(j + 4, end))
                    {
                        j = Math.Min(j, end - 4); // the last block shifts left (recomputing a few outputs) to stay in the row
                        Vector128<float> acc = default;
                        for (int h = h0; h < h1; h++)
                        {
                            float* b = src + (long)h * q.W + 2 * j - q.ImpW;
                            var lo = Vector128.Load(b); var hi = Vector128.Load(b + 4);
                            var m = VectorMath.Even(lo, hi);
                            if (q.KW > 1)
                            {
                                var t1 = VectorMath.Odd(lo, hi);
                                m = isMax ? Vector128.Max(m, t1) : Vector128.Min(m, t1);
                            }
                            if (q.KW > 2)
                            {
                                var t2 = VectorMath.Even(Vector128.Load(b + 2), Vector128.Load(b + 6));
                                m = isMax ? Vector128.Max(m, t2) : Vector128.Min(m, t2);
                            }
                            acc = h == h0 ? m : isMax ? Vector128.Max(acc, m) : Vector128.Min(acc, m);
                        }
                        acc.Store(o + j);
                    }
                for (; j < q.OutW; j++) o[j] = Edge(src, h0, h1, j, isMax);
            }
        }

        // One output of StrideTwo whose window meets the padding: max/min over its real cells (none: 0, as Window).
        private float Edge(float* src, int h0, int h1, int j, bool isMax)
        {
            ref readonly var q = ref Q;
            int w0 = Math.Max(2 * j - q.ImpW, 0), w1 = Math.Min(2 * j - q.ImpW + q.KW, q.W);
            if (h0 >= h1 || w0 >= w1) return 0;
            float r = src[(long)h0 * q.W + w0];
            for (int h = h0; h < h1; h++)
                for (int w = w0; w < w1; w++)
                {
                    float v = src[(long)h * q.W + w];
                    r = isMax ? Numerics.MaxNaN(r, v) : Numerics.MinNaN(r, v);
                }
            return r;
        }

        // even[j] = r[2j], odd[j] = r[2j+1] for j < n: two-source permutes, 16 pairs per step.
        private static void Deinterleave(float* r, float* even, float* odd, int n)
        {
            int j = 0;
            if (Avx512F.IsSupported)
            {
                var ie = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                var io = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
                for (; j + 16 <= n; j += 16)
                {
                    var lo = Vector512.Load(r + 2 * j); var hi = Vector512.Load(r + 2 * j + 16);
                    Avx512F.PermuteVar16x32x2(lo, ie, hi).Store(even + j);
                    Avx512F.PermuteVar16x32x2(lo, io, hi).Store(odd + j);
                }
            }
            else if (VectorMath.Narrow)
                for (; j + 4 <= n; j += 4)
                {
                    var lo = Vector128.Load(r + 2 * j); var hi = Vector128.Load(r + 2 * j + 4);
                    VectorMath.Even(lo, hi).Store(even + j);
                    VectorMath.Odd(lo, hi).Store(odd + j);
                }
            for (; j < n; j++) { even[j] = r[2 * j]; odd[j] = r[2 * j + 1]; }
        }

        private float Window(float* src, int oh, int ow, Pool2dMode mode)
        {
            ref readonly var q = ref Q;
            int hs = oh * q.SH - q.ImpH, ws = ow * q.SW - q.ImpW;
            if (mode is Pool2dMode.Max or Pool2dMode.Min)
            {
                float r = 0; bool any = false;
                for (int a = 0; a < q.KH; a++)
                {
                    int h = hs + a * q.DH;
                    if (h < 0 || h >= q.DataH) continue;
                    float* row = src + (long)PadIndex.Map(h, q.PH, q.H, q.PadMode) * q.W;
                    for (int c = 0; c < q.KW; c++)
                    {
                        int w = ws + c * q.DW;
                        if (w < 0 || w >= q.DataW) continue;
                        float v = row[PadIndex.Map(w, q.PW, q.W, q.PadMode)];
                        r = !any ? v : mode == Pool2dMode.Max ? Numerics.MaxNaN(r, v) : Numerics.MinNaN(r, v);
                        any = true;
                    }
                }
                return r;
            }
            int he = Math.Min(hs + q.KH, q.DataH + q.ImpH), we = Math.Min(ws + q.KW, q.DataW + q.ImpW);
            int poolSize = (he - hs) * (we - ws);
            int h0 = Math.Max(hs, 0), w0 = Math.Max(ws, 0);
            he = Math.Min(he, q.DataH); we = Math.Min(we, q.DataW);
            if (h0 >= he || w0 >= we) return 0;
            float s = 0;
            bool lp = mode == Pool2dMode.Lp;
            for (int h = h0; h < he; h++)
            {
                float* row = src + (long)PadIndex.Map(h, q.PH, q.H, q.PadMode) * q.W;
                for (int w = w0; w < we; w++)
                {
                    float v = row[PadIndex.Map(w, q.PW, q.W, q.PadMode)];
                    s += !lp ? v : q.P == 2f ? v * v : MathF.Pow(v, q.P);
                }
            }
            return lp ? MathF.Pow(s, 1f / q.P) : s / (q.CountIncludePad != 0 ? poolSize : (he - h0) * (we - w0));
        }
    }

    private sealed class AdaptiveJob : IParallelJob
    {
        [ThreadStatic] internal static AdaptiveJob? Cached;
        internal float* X, Out; internal AdaptivePoolParams Q;
        internal float[]?[] Rows = [];
        internal bool Lanes; internal int Groups;

        // AVX-512, planes and bin grids of at most 64×64: an item is (b, group of 16 channels), the planes transposed into
        // [H·W][16] (Transpose16), each bin reduced as whole vectors over the 16 channels (no per-plane row tails or
        // per-cell calls), the bins [OutH·OutW][16] transposed back with masked stores. [8,256,13,13] spp 1,2,4 spent
        // ~6 ns per input element in the per-plane form below.
        private void ExecuteLanes(int item, int worker)
        {
            ref readonly var q = ref Q;
            int hw = q.H * q.W, bins = q.OutH * q.OutW;
            int g = item % Groups, b = item / Groups, c0 = g * 16, nc = Math.Min(16, q.Channels - c0);
            bool max = q.Mode == (int)Pool2dMode.Max;
            float* xt = WorkerPool.Aligned64(Rows[worker]!), bt = xt + (long)hw * 16;
            Transpose16.Pack(X + ((long)b * q.Channels + c0) * hw, hw, nc, hw, xt, 16);
            for (int i = 0; i < q.OutH; i++)
            {
                int h0 = (int)((long)i * q.H / q.OutH), h1 = (int)(((long)(i + 1) * q.H + q.OutH - 1) / q.OutH);
                for (int j = 0; j < q.OutW; j++)
                {
                    int w0 = (int)((long)j * q.W / q.OutW), w1 = (int)(((long)(j + 1) * q.W + q.OutW - 1) / q.OutW);
                    int n = (h1 - h0) * (w1 - w0);
                    var acc = max ? Vector512.Create(float.NegativeInfinity) : Vector512<float>.Zero;
                    for (int h = h0; h < h1; h++)
                    {
                        float* row = xt + (long)h * q.W * 16;
                        for (int w = w0; w < w1; w++)
                            // Max propagates NaN
                            acc = max ? Vector512.Max(acc, Vector512.Load(row + w * 16)) : acc + Vector512.Load(row + w * 16);
                    }
                    if (n == 0) acc = Vector512<float>.Zero;
                    else if (!max) acc /= n;
                    acc.Store(bt + (i * q.OutW + j) * 16);
                }
            }
            Transpose16.Unpack(bt, bins, nc, Out + (long)b * q.OutStride + q.OutOffset + (long)c0 * bins, bins);
        }

        // Per output row i: the input rows h0..h1-1 are first reduced element-wise into one row (vectorized along W),
        // then each cell reduces its w0..w1-1 stretch of that row. Reducing each cell's short row segments one call at a
        // time cost ~1 ns per element (spp [8,256,52,52] level 2: 6.7 ms).
        public void Execute(int item, int worker)
        {
            if (Lanes) { ExecuteLanes(item, worker); return; }
            ref readonly var q = ref Q;
            int b = item / q.Channels, c = item % q.Channels;
            float* src = X + (long)item * q.H * q.W;
            var acc = Rows[worker]!.AsSpan(0, q.W);
            bool max = q.Mode == (int)Pool2dMode.Max;
            for (int i = 0; i < q.OutH; i++)
            {
                int h0 = (int)((long)i * q.H / q.OutH), h1 = (int)(((long)(i + 1) * q.H + q.OutH - 1) / q.OutH);
                if (h1 > h0)
                {
                    new ReadOnlySpan<float>(src + (long)h0 * q.W, q.W).CopyTo(acc);
                    for (int h = h0 + 1; h < h1; h++)
                    {
                        var row = new ReadOnlySpan<float>(src + (long)h * q.W, q.W);
                        if (max) TensorPrimitives.Max(acc, row, acc);
                        else TensorPrimitives.Add(acc, row, acc);
                    }
                }
                for (int j = 0; j < q.OutW; j++)
                {
                    int w0 = (int)((long)j * q.W / q.OutW), w1 = (int)(((long)(j + 1) * q.W + q.OutW - 1) / q.OutW);
                    int n = (h1 - h0) * (w1 - w0);
                    float v = 0;
                    if (n > 0)
                    {
                        var cell = acc.Slice(w0, w1 - w0);
                        if (max)
                        {
                            v = float.NegativeInfinity;
                            if (cell.Length >= 32) v = TensorPrimitives.Max(cell);
                            else foreach (float e in cell) v = Numerics.MaxNaN(v, e);
                        }
                        else v = (cell.Length >= 32 ? TensorPrimitives.Sum(cell) : Sum(cell)) / n;
                    }
                    Out[(long)b * q.OutStride + q.OutOffset + ((long)c * q.OutH + i) * q.OutW + j] = v;
                }
            }
        }

        private static float Sum(ReadOnlySpan<float> v)
        {
            float s = 0;
            foreach (float e in v) s += e;
            return s;
        }
    }
}
