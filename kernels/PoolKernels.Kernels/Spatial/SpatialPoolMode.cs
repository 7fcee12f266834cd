namespace PoolKernels;

/// <summary>A global spatial pooling mode (docs/operations.md "Spatial and region pooling").</summary>
public enum SpatialPoolMode
{
    /// <summary>Mean over the valid cells.</summary>
    Avg,
    /// <summary>Max over the valid cells (NaN propagates).</summary>
    Max,
    /// <summary>GeM: ((1/|V|) Σ max(x,eps)^p)^(1/p).</summary>
    Gem,
}
