namespace PoolKernels;

/// <summary>The activation applied to both projections of an MFB block.</summary>
public enum MfbActivation
{
    /// <summary>Identity.</summary>
    None,
    /// <summary>max(v, 0).</summary>
    Relu,
    /// <summary>tanh(v).</summary>
    Tanh,
    /// <summary>v, or 0.01·v below 0.</summary>
    LeakyRelu,
}
