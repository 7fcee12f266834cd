using System.Collections;

namespace PoolKernels.Onnx;

/// <summary>
/// Embeddings quantized by PoolKernels <c>quantize</c> (sentence-transformers <c>quantize_embeddings</c>): the packed or
/// integer rows, the precision and, for int8/uint8, the per-dimension ranges that were used (so queries can be
/// quantized on the same scale as a corpus). Made by <see cref="SentenceEmbedder.EmbedQuantized"/> or
/// <see cref="Quantize(Device, HostTensor, QuantizePrecision, HostTensor?, HostTensor?)"/>.
/// </summary>
public sealed class QuantizedEmbeddings
{
    internal QuantizedEmbeddings(QuantizePrecision precision, HostTensor values, HostTensor? ranges, int dimensions)
    {
        Precision = precision;
        Values = values;
        Ranges = ranges;
        Dimensions = dimensions;
    }

    /// <summary>The precision of <see cref="Values"/>.</summary>
    public QuantizePrecision Precision { get; }

    /// <summary>The quantized rows: I8|U8 [N,D] for int8|uint8, I8|U8 [N, ceil(D/8)] packed bits for binary|ubinary
    /// (first dimension in the most significant bit of byte 0, as numpy <c>packbits</c>).</summary>
    public HostTensor Values { get; }

    /// <summary>int8/uint8: the ranges used, F32 [2,D] (row 0 start, row 1 end of each dimension): the given ones, else
    /// the per-dimension min and max of the calibration data, else of the embeddings themselves. Null for binary and
    /// ubinary, and for no rows without ranges or calibration.</summary>
    public HostTensor? Ranges { get; }

    /// <summary>D, the width of the float embeddings (for binary precisions more than 8 × the bytes of a row is never
    /// needed: the last byte's padding bits are 0).</summary>
    public int Dimensions { get; }

    /// <summary>Number of rows.</summary>
    public int Count => Values.Shape[0];

    /// <summary>Bytes per row: D, or ceil(D/8) for binary precisions.</summary>
    public int RowBytes => Values.Shape[1];

    /// <summary>Row <paramref name="i"/>'s bytes (I8 values as their two's-complement bytes).</summary>
    public ReadOnlySpan<byte> Row(int i)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(i);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(i, Count);
        return Values.Data.Span.Slice(i * RowBytes, RowBytes);
    }

    /// <summary>Binary and ubinary: row <paramref name="i"/> as a <see cref="BitArray"/> of <see cref="Dimensions"/> bits,
    /// bit d = (embedding[d] &gt; 0). Packed rows keep dimension d in bit 7 − d % 8 of byte d / 8 (most significant bit
    /// first); a BitArray numbers bits from the least significant bit of its first byte, so the bits are reordered here.</summary>
    /// <exception cref="InvalidOperationException">Int8 or uint8 precision.</exception>
    public BitArray ToBitArray(int i)
    {
        if (Precision is not (QuantizePrecision.Binary or QuantizePrecision.Ubinary))
            throw new InvalidOperationException($"ToBitArray needs binary or ubinary embeddings, these are "
                + $"{Quantization.Name(Precision)}.");
        var row = Row(i);
        // binary (I8) = ubinary − 128: the same bits with the top bit of each byte flipped
        byte flip = Precision == QuantizePrecision.Binary ? (byte)0x80 : (byte)0;
        var bits = new BitArray(Dimensions);
        for (int d = 0; d < Dimensions; d++)
            bits[d] = (((row[d >> 3] ^ flip) >> (7 - (d & 7))) & 1) != 0;
        return bits;
    }

    /// <summary>
    /// Quantizes float embeddings [N,D] F32 with <c>quantize</c> on <paramref name="device"/>. int8/uint8 take each
    /// dimension's range from <paramref name="ranges"/> [2,D], else from <paramref name="calibration"/> [M,D], else from
    /// the embeddings themselves (as sentence-transformers does without calibration); binary/ubinary ignore both.
    /// </summary>
    /// <exception cref="ArgumentException">The errors of <c>Quantization.Quantize</c>: shapes or dtypes, ranges not finite or
    /// with end &lt; start, a NaN or infinity in the data a range is derived from, an unknown precision.</exception>
    public static QuantizedEmbeddings Quantize(Device device, HostTensor embeddings, QuantizePrecision precision, HostTensor? ranges = null,
        HostTensor? calibration = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(embeddings);
        var values = device.Quantize(embeddings, precision, ranges, calibration); // checks everything first
        int d = embeddings.Shape[1];
        HostTensor? used = null;
        if (precision is QuantizePrecision.Int8 or QuantizePrecision.Uint8)
        {
            if (ranges is not null) used = HostTensor.From(ranges.AsSpan<float>(), 2, d);
            else if ((calibration ?? embeddings) is { } source && source.Shape[0] > 0) used = MinMax(source, d);
        }
        return new QuantizedEmbeddings(precision, values, used, d);
    }

    /// <summary>Quantizes one float vector per row (see the tensor overload).</summary>
    public static QuantizedEmbeddings Quantize(Device device, IReadOnlyList<float[]> embeddings, int dimensions,
        QuantizePrecision precision,
        HostTensor? ranges = null, HostTensor? calibration = null)
    {
        ArgumentNullException.ThrowIfNull(embeddings);
        var flat = new float[(long)embeddings.Count * dimensions];
        for (int i = 0; i < embeddings.Count; i++)
        {
            if (embeddings[i].Length != dimensions)
                throw new ArgumentException($"embeddings[{i}] has {embeddings[i].Length} values, expected {dimensions}.",
                    nameof(embeddings));
            embeddings[i].CopyTo(flat, (long)i * dimensions);
        }
        return Quantize(device, HostTensor.From(flat, embeddings.Count, dimensions), precision, ranges, calibration);
    }

    // the per-dimension min and max (exact, so equal to the ranges the op derives); the op has already rejected NaN
    internal static HostTensor MinMax(HostTensor data, int d)
    {
        var x = data.AsSpan<float>();
        var r = new float[2 * d];
        x[..d].CopyTo(r);
        x[..d].CopyTo(r.AsSpan(d));
        for (int row = 1; row < data.Shape[0]; row++)
        {
            var v = x.Slice(row * d, d);
            for (int j = 0; j < d; j++)
            {
                if (v[j] < r[j]) r[j] = v[j];
                if (v[j] > r[d + j]) r[d + j] = v[j];
            }
        }
        return HostTensor.From(r, 2, d);
    }
}
