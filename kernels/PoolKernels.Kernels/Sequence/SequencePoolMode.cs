namespace PoolKernels;

/// <summary>A sequence pooling mode (docs/operations.md "Sequence pooling").</summary>
public enum SequencePoolMode
{
    /// <summary>First kept token.</summary>
    Cls,
    /// <summary>Last kept token (correct for left, right and ragged padding).</summary>
    LastToken,
    /// <summary>Σx / |V|.</summary>
    Mean,
    /// <summary>Σx / √|V|.</summary>
    MeanSqrtLen,
    /// <summary>Σ(t+1)·x_t / Σ(t+1), t the absolute position.</summary>
    WeightedMean,
    /// <summary>Elementwise max (NaN propagates).</summary>
    Max,
    /// <summary>Generalized mean ((1/|V|) Σ max(x,eps)^p)^(1/p).</summary>
    Gem,
}
