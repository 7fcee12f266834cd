using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Sequence;

/// <summary>Scalar parameters of the <c>sequence_pool</c> kernel (one struct: ILGPU passes it by value).</summary>
internal struct SequencePoolParams
{
    /// <summary>Shape and output width.</summary>
    public int Batch, SeqLen, Dim, Dims;
    /// <summary>Distance between output rows (>= Dims).</summary>
    public int OutStride;
    /// <summary>Number of modes and the modes, 4 bits each, first mode in the low bits.</summary>
    public int ModeCount, Modes;
    /// <summary>GeM power and clamp.</summary>
    public float P, Eps;
    /// <summary>1 when a prefix_len view is given.</summary>
    public int HasPrefix;
    /// <summary>GGeM: D / G when a p_groups view is given (feature d of gem uses p_groups[d / GroupSize]), 0 = plain p.</summary>
    public int GroupSize;
}

/// <summary>
/// <c>sequence_pool</c>, ILGPU (ilgpu-cpu, opencl, cuda). One thread per (batch row, feature): it walks
/// the row's mask once and accumulates every mode's statistic in registers, so neighbouring threads
/// read neighbouring features (coalesced) and <c>hidden</c> is read once. A second kernel, one group
/// per row, L2-normalizes through a shared-memory reduction when asked.
/// </summary>
internal static class SequencePoolIlgpu
{
    /// <summary>The pooling kernel; <paramref name="i"/> runs over Batch·Dim. <paramref name="pGroups"/> is read only when
    /// <see cref="SequencePoolParams.GroupSize"/> > 0 (GGeM).</summary>
    [GpuKernel(typeof(float), typeof(F32Reader), typeof(long), typeof(I64Mask), typeof(long), typeof(I64Index))]
    [GpuKernel(typeof(ushort), typeof(Bf16Reader), typeof(byte), typeof(U8Mask), typeof(int), typeof(I32Index))]
    public static void Kernel<TRaw, TElem, TMask, TMaskOp, TIdx, TIdxOp>(Index1D i, ArrayView<TRaw> hidden, ArrayView<TMask> mask,
        ArrayView<TIdx> prefix, ArrayView<float> pGroups, ArrayView<float> output, SequencePoolParams prm)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        int b = i / prm.Dim, d = i % prm.Dim;
        if (b >= prm.Batch) return;
        float p = prm.GroupSize > 0 ? pGroups[d / prm.GroupSize] : prm.P;
        long skip = prm.HasPrefix != 0 ? default(TIdxOp).Get(prefix[b]) : 0;
        long seen = 0, rowBase = (long)b * prm.SeqLen;
        int count = 0, first = -1, last = -1;
        float sum = 0, wsum = 0, wtotal = 0, max = float.NegativeInfinity, gem = 0;
        for (int t = 0; t < prm.SeqLen; t++)
        {
            if (!default(TMaskOp).Keep(mask[rowBase + t])) continue;
            if (seen++ < skip) continue;
            float x = default(TElem).ToFloat(hidden[(rowBase + t) * prm.Dim + d]);
            if (first < 0) first = t;
            last = t; count++;
            sum += x;
            wsum += (t + 1) * x; wtotal += t + 1;
            max = Numerics.MaxNaN(max, x);
            gem += XMath.Pow(Numerics.MaxNaN(x, prm.Eps), p);
        }
        for (int m = 0; m < prm.ModeCount; m++)
        {
            int f = m * prm.Dim + d;
            if (f >= prm.Dims) return;
            float v = 0;
            if (count > 0)
            {
                switch ((SequencePoolMode)((prm.Modes >> (4 * m)) & 15))
                {
                    case SequencePoolMode.Cls: v = default(TElem).ToFloat(hidden[(rowBase + first) * prm.Dim + d]); break;
                    case SequencePoolMode.LastToken: v = default(TElem).ToFloat(hidden[(rowBase + last) * prm.Dim + d]); break;
                    case SequencePoolMode.Mean: v = sum / count; break;
                    case SequencePoolMode.MeanSqrtLen: v = sum * XMath.Rsqrt((float)count); break;
                    case SequencePoolMode.WeightedMean: v = wsum / wtotal; break;
                    case SequencePoolMode.Max: v = max; break;
                    default: v = XMath.Pow(gem / count, 1f / p); break;
                }
            }
            output[(long)b * prm.OutStride + f] = v;
        }
    }

    /// <summary>Row-wise L2 normalization of the first <paramref name="width"/> entries of rows <paramref name="stride"/> apart: one group
    /// per row.</summary>
    [GpuKernel]
    public static void NormalizeRowsKernel(ArrayView<float> data, int width, int stride)
    {
        long row = (long)Grid.IdxX * stride;
        float ss = 0;
        for (int f = Group.IdxX; f < width; f += Group.DimX)
        {
            float v = data[row + f];
            ss += v * v;
        }
        float scale = 1f / Numerics.MaxNaN(XMath.Sqrt(GroupReduce.Sum(ss)), 1e-12f); // NaN norm stays NaN, as clamp_min
        for (int f = Group.IdxX; f < width; f += Group.DimX) data[row + f] *= scale;
    }

    /// <summary>Launches <see cref="NormalizeRowsKernel"/> over <paramref name="rows"/> rows.</summary>
    public static void NormalizeRows(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> data, int rows, int width,
        int stride)
    {
        if (rows == 0 || width == 0) return;
        var k = KernelCache.Get(accelerator, NormalizeRowsKernel,
            a => a.LoadKernel<ArrayView<float>, int, int>(NormalizeRowsKernel));
        k(stream, new KernelConfig(rows, GroupReduce.GroupSize(accelerator)), data, width, stride);
    }

    /// <summary>Launches the pooling kernel (and the normalization when asked) on <paramref name="stream"/>. The byte views
    /// are reinterpreted as the kernel's storage types. <paramref name="groupSize"/> (tunable <c>group</c>) is rounded
    /// down to a power of two the device supports. <paramref name="pGroups"/>: the GGeM powers (any view when
    /// <see cref="SequencePoolParams.GroupSize"/> is 0).</summary>
    public static void Launch<TRaw, TElem, TMask, TMaskOp, TIdx, TIdxOp>(Accelerator accelerator, AcceleratorStream stream,
        ArrayView<byte> hidden, ArrayView<byte> mask, ArrayView<byte> prefix, ArrayView<float> pGroups, ArrayView<float> output,
        SequencePoolParams prm, bool normalize, int groupSize)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
        where TIdx : unmanaged where TIdxOp : struct, IIndexReader<TIdx>
    {
        if (prm.Batch == 0 || prm.Dims == 0) return;
        groupSize = GroupReduce.GroupSize(accelerator, groupSize);
        var k = KernelCache.Get(accelerator, Kernel<TRaw, TElem, TMask, TMaskOp, TIdx, TIdxOp>, groupSize,
            a => a.LoadImplicitlyGroupedKernel<Index1D, ArrayView<TRaw>, ArrayView<TMask>, ArrayView<TIdx>, ArrayView<float>,
                ArrayView<float>, SequencePoolParams>(Kernel<TRaw, TElem, TMask, TMaskOp, TIdx, TIdxOp>, groupSize));
        k(stream, (int)((long)prm.Batch * prm.Dim), hidden.Cast<TRaw>(), mask.Cast<TMask>(), prefix.Cast<TIdx>(), pGroups, output, prm);
        if (normalize) NormalizeRows(accelerator, stream, output, prm.Batch, prm.Dims, prm.OutStride);
    }
}

/// <summary>Signature of <see cref="SequencePoolIlgpu.Launch{TRaw, TElem, TMask, TMaskOp, TIdx, TIdxOp}"/> once its types are
/// closed.</summary>
internal delegate void SequencePoolLaunch(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> hidden, ArrayView<byte> mask,
    ArrayView<byte> prefix, ArrayView<float> pGroups, ArrayView<float> output, SequencePoolParams prm, bool normalize, int groupSize);
