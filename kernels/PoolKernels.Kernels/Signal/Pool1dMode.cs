namespace PoolKernels;

/// <summary>The reduction of <c>pool1d</c>.</summary>
public enum Pool1dMode
{
    /// <summary>Window mean, padded zeros counted (PyTorch avg_pool1d, count_include_pad=True).</summary>
    Avg,
    /// <summary>Window max over the real samples (padding never wins; NaN propagates).</summary>
    Max,
}
