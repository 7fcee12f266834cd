using PoolKernels.Kernels.Sequence;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>spatial_pool_backward</c> is <c>sequence_pool_backward</c>'s math over the H·W cells of each (b, c) with one mode
/// (avg = mean, max, gem), no prefix and no truncation, so it runs the same three kernels
/// (<see cref="SequencePoolBackwardReference"/>, <see cref="SequencePoolBackwardSimd"/>, <see cref="SequencePoolBackwardIlgpu"/>)
/// with the layout's strides: NHWC is [B, H·W, C] exactly as a sequence; NCHW has cell stride 1 and channel stride H·W.
/// The cell order t = h·W + w is row-major, so max routes to the first maximal cell in row-major (h, w) order.
/// </summary>
internal static class SpatialPoolBackwardParams
{
    /// <summary>The kernels' parameters for x [B,C,H,W] (or [B,H,W,C] when <paramref name="nhwc"/>), a valid mask of
    /// <paramref name="maskSize"/>-byte elements (0 = none) and <paramref name="groups"/> GGeM powers (0 = off).</summary>
    public static PoolBackwardParams Of(int batch, int channels, int height, int width, bool nhwc, SpatialPoolMode mode, float p,
        float eps, bool normalize, int groups, int maskSize)
    {
        long hw = (long)height * width;
        var m = mode switch
        {
            SpatialPoolMode.Avg => SequencePoolMode.Mean,
            SpatialPoolMode.Max => SequencePoolMode.Max,
            _ => SequencePoolMode.Gem,
        };
        return new PoolBackwardParams
        {
            Batch = batch,
            Len = checked((int)hw),
            Dim = channels,
            Dims = channels,
            ModeCount = 1,
            Modes = (int)m,
            P = p,
            Eps = eps,
            GroupSize = groups == 0 ? 0 : channels / groups,
            Groups = groups,
            MaskSize = maskSize,
            PrefixSize = 0,
            Normalize = normalize ? 1 : 0,
            StrideB = hw * channels,
            StrideT = nhwc ? channels : 1,
            StrideD = nhwc ? 1 : hw,
        };
    }
}
