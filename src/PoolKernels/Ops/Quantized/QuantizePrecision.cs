namespace PoolKernels;

/// <summary>The output form of <c>quantize</c> (sentence-transformers' <c>quantize_embeddings</c> precisions).</summary>
public enum QuantizePrecision
{
    /// <summary>I8 [N,D] = uint8 − 128.</summary>
    Int8,
    /// <summary>U8 [N,D] = clamp(trunc((x − start)/step), 0, 255), step = (end − start)/255.</summary>
    Uint8,
    /// <summary>I8 [N, ceil(D/8)] = ubinary − 128 (the same bits with the top bit flipped).</summary>
    Binary,
    /// <summary>U8 [N, ceil(D/8)] = packbits(x &gt; 0), first dimension in the most significant bit.</summary>
    Ubinary,
}
