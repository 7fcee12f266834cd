namespace PoolKernels.Kernels.Attention;

/// <summary>placeholder</summary>
public static class SdpaSimd
{
    /// <summary>placeholder</summary>
    public static void Run<T, TBias, TMask, TIdx>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<TBias> attnMask,
        ReadOnlySpan<TMask> keyPadding, ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK, Span<float> output, Span<float> lse, in SdpaParams p, WorkerPool? pool = null)
        where T : unmanaged where TBias : unmanaged where TMask : unmanaged where TIdx : unmanaged
        => SdpaReference.Run(q, k, v, attnMask, keyPadding, cuQ, cuK, output, lse, p);
}
