using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoolKernels.Kernels.Sequence;

namespace PoolKernels.Kernels.Spatial;

/// <summary>Scalar parameters of the <c>spatial_pool</c> kernel.</summary>
internal struct SpatialPoolParams
{
    /// <summary>Shape.</summary>
    public int Batch, Channels, HW;
    /// <summary>1 for [B,H,W,C].</summary>
    public int Nhwc;
    /// <summary>Mask element size in bytes (0 = no mask).</summary>
    public int MaskSize;
    /// <summary>A <see cref="SpatialPoolMode"/>.</summary>
    public int Mode;
    /// <summary>GeM power and clamp.</summary>
    public float P, Eps;
    /// <summary>GGeM: C / G when a p_groups view is given (channel c of gem uses p_groups[c / GroupSize]), 0 = plain p.</summary>
    public int GroupSize;
}

/// <summary>
/// <c>spatial_pool</c>, ILGPU. One thread per (b,c) walks the valid cells once. In NHWC neighbouring threads read
/// neighbouring channels (coalesced); in NCHW each thread streams its own contiguous plane. The L2 normalization,
/// when asked, is sequence_pool's one-group-per-row kernel on the [B,C] result.
/// </summary>
internal static class SpatialPoolIlgpu
{
    /// <summary>The pooling kernel; <paramref name="i"/> runs over B·C. <paramref name="pGroups"/> is read only when
    /// <see cref="SpatialPoolParams.GroupSize"/> > 0 (GGeM).</summary>
    [GpuKernel]
    public static void Kernel(Index1D i, ArrayView<float> x, ArrayView<byte> valid, ArrayView<float> pGroups, ArrayView<float> output,
        SpatialPoolParams prm)
    {
        int b = i / prm.Channels, c = i % prm.Channels;
        if (b >= prm.Batch) return;
        float p = prm.GroupSize > 0 ? pGroups[c / prm.GroupSize] : prm.P;
        int n = 0;
        float s = 0, mx = float.NegativeInfinity;
        for (int k = 0; k < prm.HW; k++)
        {
            long cell = (long)b * prm.HW + k;
            if (prm.MaskSize > 0 && !MaskBytes.Keep(valid, prm.MaskSize, cell)) continue;
            float v = prm.Nhwc != 0 ? x[cell * prm.Channels + c] : x[((long)b * prm.Channels + c) * prm.HW + k];
            n++;
            if (prm.Mode == (int)SpatialPoolMode.Avg) s += v;
            else if (prm.Mode == (int)SpatialPoolMode.Max) mx = Numerics.MaxNaN(mx, v);
            else s += XMath.Pow(Numerics.MaxNaN(v, prm.Eps), p);
        }
        float r = 0;
        if (n > 0)
        {
            if (prm.Mode == (int)SpatialPoolMode.Avg) r = s / n;
            else if (prm.Mode == (int)SpatialPoolMode.Max) r = mx;
            else r = XMath.Pow(s / n, 1f / p);
        }
        output[i] = r;
    }

    /// <summary>Launches the kernel, then the row normalization when asked. <paramref name="pGroups"/>: the GGeM powers (any
    /// view when <see cref="SpatialPoolParams.GroupSize"/> is 0).</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<byte> valid,
        ArrayView<float> pGroups, ArrayView<float> output, SpatialPoolParams prm, bool normalize)
    {
        if (prm.Batch == 0 || prm.Channels == 0) return;
        var k = KernelCache.Get(accelerator, Kernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<byte>, ArrayView<float>, ArrayView<float>,
                SpatialPoolParams>(Kernel));
        k(stream, prm.Batch * prm.Channels, x, valid, pGroups, output, prm);
        if (normalize) SequencePoolIlgpu.NormalizeRows(accelerator, stream, output, prm.Batch, prm.Channels, prm.Channels);
    }
}
