namespace PoolKernels;

/// <summary>Causal mode of <c>sdpa</c> (docs/operations.md "Masked attention").</summary>
public enum SdpaCausal
{
    /// <summary>No causal mask; windows (if any) are relative to the diagonal i.</summary>
    None = 0,
    /// <summary>Key j allowed for query i iff j &lt;= i (offset 0).</summary>
    TopLeft = 1,
    /// <summary>Key j allowed for query i iff j &lt;= i + Tk - Tq (the last query sees every key).</summary>
    BottomRight = 2,
}
