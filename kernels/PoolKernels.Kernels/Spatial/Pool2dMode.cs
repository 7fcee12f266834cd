namespace PoolKernels;

/// <summary>A windowed pooling mode of <c>pool2d</c>.</summary>
public enum Pool2dMode
{
    /// <summary>avg_pool2d.</summary>
    Avg,
    /// <summary>max_pool2d (implicit padding is -inf, NaN propagates).</summary>
    Max,
    /// <summary>-max_pool2d(-x).</summary>
    Min,
    /// <summary>lp_pool2d: (Σ x^p)^(1/p).</summary>
    Lp,
}
