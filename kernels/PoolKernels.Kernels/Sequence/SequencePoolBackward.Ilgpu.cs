using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoolKernels.Kernels.Spatial;

namespace PoolKernels.Kernels.Sequence;

/// <summary>Scalar parameters of the pooling backward kernels (<c>sequence_pool_backward</c>, <c>spatial_pool_backward</c>),
/// shared by the reference, simd and ILGPU forms.</summary>
internal struct PoolBackwardParams
{
    /// <summary>Batch rows, positions per row (T, or H·W cells), features per mode (D, or C) and output width.</summary>
    public int Batch, Len, Dim, Dims;
    /// <summary>Number of modes and the modes (<see cref="SequencePoolMode"/> codes), 4 bits each, first in the low bits.</summary>
    public int ModeCount, Modes;
    /// <summary>GeM power and clamp.</summary>
    public float P, Eps;
    /// <summary>GGeM: D / G when p_groups is given (feature d of gem uses p_groups[d / GroupSize]), 0 = plain p; G.</summary>
    public int GroupSize, Groups;
    /// <summary>Bytes per mask element (0 = no mask: every position kept) and per prefix_len element (0 = none, 4 or 8).</summary>
    public int MaskSize, PrefixSize;
    /// <summary>1 when the output rows are L2-normalized.</summary>
    public int Normalize;
    /// <summary>Element (b, t, d) of x (and of dx) is at b·StrideB + t·StrideT + d·StrideD.</summary>
    public long StrideB, StrideT, StrideD;
}

/// <summary>
/// <c>sequence_pool_backward</c> / <c>spatial_pool_backward</c>, ILGPU (ilgpu-cpu, opencl, cuda); the math of
/// <see cref="SequencePoolBackwardReference"/>. With normalize, a first kernel (one thread per (b, d)) writes the forward row
/// y and a second (one group per row, shared-memory sums) turns d_out into g = dL/dy; without, g is d_out. The gradient
/// kernel, one thread per (b, d), recomputes the column's statistics, writes dx for every position of its column and its
/// gem dy/dp·g partial; a last kernel, one thread per group, sums the partials in a fixed order (b, then d) into
/// d_p_groups. No atomics: the same bits on every run.
/// </summary>
internal static class SequencePoolBackwardIlgpu
{
    /// <summary>A column's statistics over its kept positions.</summary>
    private struct Stats
    {
        public int Count, First, Last;
        public float Sum, WSum, WTotal, Max, Gem, GemLog;
    }

    private static long Prefix(ArrayView<byte> prefix, int size, int b)
    {
        if (size == 0) return 0;
        long v = 0, o = (long)b * size;
        for (int k = size - 1; k >= 0; k--) v = (v << 8) | prefix[o + k];
        return size == 4 ? (int)v : v;
    }

    private static bool Kept(ArrayView<byte> mask, PoolBackwardParams q, int b, int t) =>
        q.MaskSize == 0 || MaskBytes.Keep(mask, q.MaskSize, (long)b * q.Len + t);

    private static Stats Gather<TRaw, TElem>(ArrayView<TRaw> x, ArrayView<byte> mask, ArrayView<byte> prefix, PoolBackwardParams q,
        int b, int d, float p)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
    {
        long skip = Prefix(prefix, q.PrefixSize, b), seen = 0;
        var s = new Stats { First = -1, Last = -1, Max = float.NegativeInfinity };
        for (int t = 0; t < q.Len; t++)
        {
            if (!Kept(mask, q, b, t)) continue;
            if (seen++ < skip) continue;
            float v = default(TElem).ToFloat(x[b * q.StrideB + t * q.StrideT + d * q.StrideD]);
            if (s.First < 0) s.First = t;
            s.Last = t; s.Count++;
            s.Sum += v;
            s.WSum += (t + 1) * v; s.WTotal += t + 1;
            s.Max = Numerics.MaxNaN(s.Max, v);
            float c = Numerics.MaxNaN(v, q.Eps), cp = XMath.Pow(c, p);
            s.Gem += cp; s.GemLog += cp * XMath.Log(c);
        }
        return s;
    }

    private static float Value<TRaw, TElem>(ArrayView<TRaw> x, PoolBackwardParams q, Stats s, int b, int d, SequencePoolMode mode, float p)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
    {
        if (s.Count == 0) return 0;
        switch (mode)
        {
            case SequencePoolMode.Cls: return default(TElem).ToFloat(x[b * q.StrideB + s.First * q.StrideT + d * q.StrideD]);
            case SequencePoolMode.LastToken: return default(TElem).ToFloat(x[b * q.StrideB + s.Last * q.StrideT + d * q.StrideD]);
            case SequencePoolMode.Mean: return s.Sum / s.Count;
            case SequencePoolMode.MeanSqrtLen: return s.Sum * XMath.Rsqrt((float)s.Count);
            case SequencePoolMode.WeightedMean: return s.WSum / s.WTotal;
            case SequencePoolMode.Max: return s.Max;
            default: return XMath.Pow(s.Gem / s.Count, 1f / p);
        }
    }

    /// <summary>The forward row y [B, Dims] (before normalization); <paramref name="i"/> runs over Batch·Dim.</summary>
    [GpuKernel(typeof(float), typeof(F32Reader))]
    [GpuKernel(typeof(ushort), typeof(Bf16Reader))]
    public static void ForwardKernel<TRaw, TElem>(Index1D i, ArrayView<TRaw> x, ArrayView<byte> mask, ArrayView<byte> prefix,
        ArrayView<float> pGroups, ArrayView<float> y, PoolBackwardParams q)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
    {
        int b = i / q.Dim, d = i % q.Dim;
        if (b >= q.Batch) return;
        float p = q.GroupSize > 0 ? pGroups[d / q.GroupSize] : q.P;
        var s = Gather<TRaw, TElem>(x, mask, prefix, q, b, d, p);
        for (int m = 0; m < q.ModeCount; m++)
        {
            int f = m * q.Dim + d;
            if (f >= q.Dims) return;
            y[(long)b * q.Dims + f] = Value<TRaw, TElem>(x, q, s, b, d, (SequencePoolMode)((q.Modes >> (4 * m)) & 15), p);
        }
    }

    /// <summary>g = dL/dy through y / max(‖y‖, 1e-12), one group per row: g = d_out/n − y·(y·d_out)/n³ (n > 1e-12), else
    /// d_out/1e-12 (clamp_min passes no gradient to the norm).</summary>
    [GpuKernel]
    public static void NormalizeGradKernel(ArrayView<float> dOut, ArrayView<float> y, ArrayView<float> g, int width)
    {
        long row = (long)Grid.IdxX * width;
        float ss = 0, dot = 0;
        for (int f = Group.IdxX; f < width; f += Group.DimX)
        {
            float v = y[row + f];
            ss += v * v; dot += v * dOut[row + f];
        }
        ss = GroupReduce.Sum(ss);
        dot = GroupReduce.Sum(dot);
        float n = XMath.Sqrt(ss);
        for (int f = Group.IdxX; f < width; f += Group.DimX)
            g[row + f] = n > 1e-12f ? dOut[row + f] / n - y[row + f] * (dot / (n * n * n)) : dOut[row + f] / 1e-12f;
    }

    /// <summary>dx for column (b, d) at every position, and the column's gem partial of d_p_groups (gp [B·D]);
    /// <paramref name="i"/> runs over Batch·Dim. <paramref name="g"/> is dL/dy [B, Dims].</summary>
    [GpuKernel(typeof(float), typeof(F32Reader))]
    [GpuKernel(typeof(ushort), typeof(Bf16Reader))]
    public static void GradKernel<TRaw, TElem>(Index1D i, ArrayView<TRaw> x, ArrayView<byte> mask, ArrayView<byte> prefix,
        ArrayView<float> pGroups, ArrayView<float> g, ArrayView<float> dx, ArrayView<float> gp, PoolBackwardParams q)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
    {
        int b = i / q.Dim, d = i % q.Dim;
        if (b >= q.Batch) return;
        float p = q.GroupSize > 0 ? pGroups[d / q.GroupSize] : q.P;
        var s = Gather<TRaw, TElem>(x, mask, prefix, q, b, d, p);
        float lin = 0, wco = 0, gCls = 0, gLast = 0, gMax = 0, gGem = 0, yGem = 0;
        bool gem = false;
        if (s.Count > 0)
        {
            yGem = XMath.Pow(s.Gem / s.Count, 1f / p);
            for (int m = 0; m < q.ModeCount; m++)
            {
                int f = m * q.Dim + d;
                if (f >= q.Dims) break;
                float gm = g[(long)b * q.Dims + f];
                switch ((SequencePoolMode)((q.Modes >> (4 * m)) & 15))
                {
                    case SequencePoolMode.Cls: gCls += gm; break;
                    case SequencePoolMode.LastToken: gLast += gm; break;
                    case SequencePoolMode.Mean: lin += gm / s.Count; break;
                    case SequencePoolMode.MeanSqrtLen: lin += gm * XMath.Rsqrt((float)s.Count); break;
                    case SequencePoolMode.WeightedMean: wco += gm / s.WTotal; break;
                    case SequencePoolMode.Max: gMax += gm; break;
                    default: gGem += gm; gem = true; break;
                }
            }
        }
        long skip = Prefix(prefix, q.PrefixSize, b), seen = 0;
        bool maxDone = false;
        for (int t = 0; t < q.Len; t++)
        {
            long at = b * q.StrideB + t * q.StrideT + d * q.StrideD;
            float r = 0;
            if (Kept(mask, q, b, t) && seen++ >= skip)
            {
                float v = default(TElem).ToFloat(x[at]);
                r = lin + (t + 1) * wco;
                if (t == s.First) r += gCls;
                if (t == s.Last) r += gLast;
                if (!maxDone && (v == s.Max || (float.IsNaN(s.Max) && float.IsNaN(v)))) { r += gMax; maxDone = true; }
                if (gem && v >= q.Eps) r += gGem * XMath.Pow(v / yGem, p - 1) / s.Count;
            }
            dx[at] = r;
        }
        if (q.Groups > 0) gp[i] = gem ? gGem * yGem * (-XMath.Log(s.Gem / s.Count) / (p * p) + s.GemLog / (p * s.Gem)) : 0;
    }

    /// <summary>d_p_groups[k] = Σ_b Σ_{d in group k} gp[b, d], in that order (one thread per group).</summary>
    [GpuKernel]
    public static void PGroupsKernel(Index1D k, ArrayView<float> gp, ArrayView<float> dPGroups, PoolBackwardParams q)
    {
        if (k >= q.Groups) return;
        float acc = 0;
        for (int b = 0; b < q.Batch; b++)
            for (int d = k * q.GroupSize; d < (k + 1) * q.GroupSize; d++) acc += gp[(long)b * q.Dim + d];
        dPGroups[k] = acc;
    }

    /// <summary>Enqueues the kernels on <paramref name="stream"/>. <paramref name="x"/> is reinterpreted as the storage type;
    /// <paramref name="y"/> and <paramref name="g"/> are [B, Dims] temporaries (used with normalize), <paramref name="gp"/> a
    /// [B·D] temporary (used with p_groups); <paramref name="dPGroups"/> [G] is written when p_groups is given.</summary>
    public static void Launch<TRaw, TElem>(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> x, ArrayView<byte> mask,
        ArrayView<byte> prefix, ArrayView<float> pGroups, ArrayView<float> dOut, ArrayView<float> dx, ArrayView<float> dPGroups,
        ArrayView<float> y, ArrayView<float> g, ArrayView<float> gp, PoolBackwardParams q)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
    {
        if (q.Batch == 0 || q.Dim == 0)
        {
            // nothing to route: dx is empty and d_p_groups is 0
            if (q.Groups > 0) dPGroups.MemSetToZero(stream);
            return;
        }
        var xs = x.Cast<TRaw>();
        int n = q.Batch * q.Dim;
        var grads = dOut;
        if (q.Normalize != 0 && q.Dims > 0)
        {
            var fk = KernelCache.Get(accelerator, ForwardKernel<TRaw, TElem>, a => a.LoadAutoGroupedKernel<Index1D, ArrayView<TRaw>,
                ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, PoolBackwardParams>(ForwardKernel<TRaw, TElem>));
            fk(stream, n, xs, mask, prefix, pGroups, y, q);
            var nk = KernelCache.Get(accelerator, NormalizeGradKernel,
                a => a.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(NormalizeGradKernel));
            nk(stream, new KernelConfig(q.Batch, GroupReduce.GroupSize(accelerator)), dOut, y, g, q.Dims);
            grads = g;
        }
        var gk = KernelCache.Get(accelerator, GradKernel<TRaw, TElem>, a => a.LoadAutoGroupedKernel<Index1D, ArrayView<TRaw>,
            ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            PoolBackwardParams>(GradKernel<TRaw, TElem>));
        gk(stream, n, xs, mask, prefix, pGroups, grads, dx, gp, q);
        if (q.Groups > 0)
        {
            var pk = KernelCache.Get(accelerator, PGroupsKernel,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, PoolBackwardParams>(PGroupsKernel));
            pk(stream, q.Groups, gp, dPGroups, q);
        }
    }
}

/// <summary>Signature of <see cref="SequencePoolBackwardIlgpu.Launch{TRaw, TElem}"/> once its types are closed.</summary>
internal delegate void PoolBackwardLaunch(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> x, ArrayView<byte> mask,
    ArrayView<byte> prefix, ArrayView<float> pGroups, ArrayView<float> dOut, ArrayView<float> dx, ArrayView<float> dPGroups,
    ArrayView<float> y, ArrayView<float> g, ArrayView<float> gp, PoolBackwardParams q);
