namespace PoolKernels.Kernels.Quantized;

/// <summary>
/// The arithmetic of <c>quantize</c>, shared by every backend so they agree bit for bit: the per-dimension step is
/// (end − start)/255 and t = (x − start)/step, both in double (every float32 input is exact in double and IEEE
/// division is correctly rounded everywhere, so no backend can land on the other side of an integer); q = 255 for
/// t &gt;= 255, trunc(t) for 0 &lt; t &lt; 255, else 0 (NaN x and step 0 included).
/// </summary>
internal static class QuantizeMath
{
    /// <summary>q in [0, 255] of x for one dimension's start/end.</summary>
    public static int Level(float x, float start, float end)
    {
        double step = ((double)end - start) / 255.0;
        if (step == 0) return 0;
        double t = ((double)x - start) / step;
        return t >= 255.0 ? 255 : t > 0 ? (int)t : 0;
    }

    /// <summary>Bit reversal of a byte: the dimension mask with lane 0 in bit 0 becomes numpy packbits order (lane 0 in bit 7).</summary>
    public static byte Reverse(uint b)
    {
        b = ((b & 0xF0) >> 4) | ((b & 0x0F) << 4);
        b = ((b & 0xCC) >> 2) | ((b & 0x33) << 2);
        b = ((b & 0xAA) >> 1) | ((b & 0x55) << 1);
        return (byte)b;
    }
}

/// <summary>
/// <c>quantize</c>, scalar reference: ranges per dimension (given, else min/max of calibration, else of the embeddings),
/// uint8 = <see cref="QuantizeMath.Level"/>, int8 = uint8 − 128; ubinary = packbits(x &gt; 0) per row (first dimension in
/// the most significant bit, last byte zero-padded), binary = ubinary − 128.
/// </summary>
internal static class QuantizeReference
{
    /// <summary>Per-dimension min and max over rows [rows, dim]; returns the first dimension holding a NaN or an infinity
    /// (its range is not finite), or −1.</summary>
    public static int Ranges(ReadOnlySpan<float> data, int rows, int dim, Span<float> start, Span<float> end)
    {
        int bad = -1;
        for (int d = 0; d < dim; d++)
        {
            float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
            for (int r = 0; r < rows; r++)
            {
                float x = data[r * dim + d];
                if (!float.IsFinite(x) && bad < 0) bad = d;
                if (x < lo) lo = x;
                if (x > hi) hi = x;
            }
            start[d] = lo; end[d] = hi;
        }
        return bad;
    }

    /// <summary>int8/uint8 levels into out [N,D] (bytes; int8 as two's complement).</summary>
    public static void Levels(ReadOnlySpan<float> x, ReadOnlySpan<float> start, ReadOnlySpan<float> end, Span<byte> output, int n,
        int dim, bool signed)
    {
        for (int i = 0; i < n; i++)
            for (int d = 0; d < dim; d++)
            {
                int q = QuantizeMath.Level(x[i * dim + d], start[d], end[d]);
                output[i * dim + d] = (byte)(signed ? q - 128 : q);
            }
    }

    /// <summary>ubinary/binary bits into out [N, ceil(D/8)].</summary>
    public static void Pack(ReadOnlySpan<float> x, Span<byte> output, int n, int dim, bool signed)
    {
        int w = (dim + 7) / 8;
        for (int i = 0; i < n; i++)
            for (int b = 0; b < w; b++)
            {
                int v = 0;
                for (int j = 0; j < 8; j++)
                {
                    int d = b * 8 + j;
                    if (d < dim && x[i * dim + d] > 0) v |= 0x80 >> j;
                }
                output[i * w + b] = (byte)(signed ? v - 128 : v);
            }
    }
}
