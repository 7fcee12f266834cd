namespace PoolKernels;

/// <summary>How <c>mask_pool</c> turns a (resized) mask value m into a weight.</summary>
public enum MaskType
{
    /// <summary>1[m > 0].</summary>
    BinaryLogits,
    /// <summary>m.</summary>
    Soft,
    /// <summary>m·1[m > threshold].</summary>
    Gated,
    /// <summary>σ(m) (callers pass eps = 0).</summary>
    SigmoidNormalized,
}
