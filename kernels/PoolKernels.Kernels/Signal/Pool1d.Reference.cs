namespace PoolKernels.Kernels.Signal;

/// <summary>
/// A window of <c>pool1d</c> in stream coordinates, shared by the one-shot and the streaming forms. Output o covers
/// stream positions [o·Stride - Padding, o·Stride - Padding + Kernel); positions outside [0, ValidEnd) are padding.
/// The samples held are stream positions [BufStart, BufStart + BufLen) of each row; the caller guarantees that every
/// real position of the windows O0 .. O0+NOut-1 is held.
/// </summary>
internal struct Pool1dParams
{
    /// <summary>Rows (B·C), samples held per row, outputs per row.</summary>
    public int Rows, BufLen, NOut;
    /// <summary>Stream position of the first held sample; end of the real samples; first output index.</summary>
    public long BufStart, ValidEnd, O0;
    /// <summary>Window, hop and implicit padding.</summary>
    public int Kernel, Stride, Padding;
    /// <summary><see cref="Pool1dMode"/> as int.</summary>
    public int Mode;

    /// <summary>The one-shot pool1d of rows of length <paramref name="len"/>.</summary>
    public static Pool1dParams Whole(int rows, int len, int kernel, int stride, int padding, Pool1dMode mode) => new()
    {
        Rows = rows,
        BufLen = len,
        NOut = OutLength(len, kernel, stride, padding),
        BufStart = 0,
        ValidEnd = len,
        O0 = 0,
        Kernel = kernel,
        Stride = stride,
        Padding = padding,
        Mode = (int)mode,
    };

    /// <summary>Lo = floor((L + 2p - k) / s) + 1 (0 when the padded signal is shorter than one window).</summary>
    public static int OutLength(long len, int kernel, int stride, int padding)
    {
        long span = len + 2L * padding - kernel;
        return span < 0 ? 0 : (int)(span / stride + 1);
    }
}

/// <summary><c>pool1d</c>, scalar reference (double).</summary>
internal static class Pool1dReference
{
    /// <summary>out[row, i] for i &lt; NOut; x is [Rows, BufLen], out is [Rows, outStride] (default NOut).</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, in Pool1dParams p, int outStride = -1)
    {
        if (outStride < 0) outStride = p.NOut;
        for (int row = 0; row < p.Rows; row++)
            for (int i = 0; i < p.NOut; i++)
            {
                long t0 = (p.O0 + i) * p.Stride - p.Padding;
                double acc = p.Mode == (int)Pool1dMode.Max ? double.NegativeInfinity : 0;
                int real = 0;
                for (long t = t0; t < t0 + p.Kernel; t++)
                {
                    if (t < 0 || t >= p.ValidEnd) continue;
                    double v = x[(int)((long)row * p.BufLen + (t - p.BufStart))];
                    acc = p.Mode == (int)Pool1dMode.Max ? Math.Max(acc, v) : acc + v;
                    real++;
                }
                output[row * outStride + i] = (float)(p.Mode == (int)Pool1dMode.Max ? (real == 0 ? 0 : acc) : acc / p.Kernel);
            }
    }
}
