namespace PoolKernels;

/// <summary>The reduction of <c>segment_pool</c> / <c>gather_segment_pool</c>.</summary>
public enum SegmentPoolMode
{
    /// <summary>Σ w·x.</summary>
    Sum,
    /// <summary>Σ w·x / entry count.</summary>
    Mean,
    /// <summary>Elementwise max of w·x (NaN propagates).</summary>
    Max,
    /// <summary>Elementwise min of w·x (NaN propagates).</summary>
    Min,
}
