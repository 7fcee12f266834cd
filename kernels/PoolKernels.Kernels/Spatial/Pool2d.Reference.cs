namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// Geometry and options of one <c>pool2d</c> call, already validated and resolved. Pooling runs on a "data" grid of
/// DataH × DataW cells with implicit padding ImpH/ImpW: for padding_mode zeros the data grid is x itself and
/// the implicit padding is <c>padding</c>; for replicate/reflect the data grid is the padded input (never
/// materialized: <see cref="PadIndex.Map"/> maps its cells back to x) and there is no implicit padding.
/// </summary>
internal struct Pool2dParams
{
    /// <summary>Input shape.</summary>
    public int Batch, Channels, H, W;
    /// <summary>Output size.</summary>
    public int OutH, OutW;
    /// <summary>Window.</summary>
    public int KH, KW, SH, SW, DH, DW;
    /// <summary>Explicit padding (the padding argument).</summary>
    public int PH, PW;
    /// <summary>Data grid and implicit padding (see type docs).</summary>
    public int DataH, DataW, ImpH, ImpW;
    /// <summary>A <see cref="Pool2dMode"/>, a <see cref="PadIndex"/> code, count_include_pad (0/1).</summary>
    public int Mode, PadMode, CountIncludePad;
    /// <summary>Lp power.</summary>
    public float P;

    /// <summary>PyTorch's pooling_output_shape: floor or ceil of (in + 2·pad − dil·(k−1) − 1)/stride + 1, the last
    /// window dropped in ceil mode when it would start in the right padding. May return &lt;= 0 (caller rejects).</summary>
    public static long OutputSize(long input, long kernel, long pad, long stride, long dilation, bool ceil)
    {
        long num = input + 2 * pad - dilation * (kernel - 1) - 1 + (ceil ? stride - 1 : 0);
        long o = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
        if (ceil && (o - 1) * stride >= input + pad) o--;
        return o;
    }
}

/// <summary>
/// <c>pool2d</c>, scalar reference (double), written as PyTorch's CPU kernels are: avg divides by the window clipped
/// to [−pad, in+pad) when count_include_pad, else by its cells inside the data; max/min skip cells outside the data;
/// lp sums x^p over the cells inside the data. A window with no data cell gives 0.
/// </summary>
internal static class Pool2dReference
{
    /// <summary>Runs into output [B,C,OutH,OutW].</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, in Pool2dParams q)
    {
        for (long plane = 0; plane < (long)q.Batch * q.Channels; plane++)
            for (int oh = 0; oh < q.OutH; oh++)
                for (int ow = 0; ow < q.OutW; ow++)
                    output[(int)((plane * q.OutH + oh) * q.OutW + ow)] = (float)Window(x, plane, oh, ow, q);
    }

    private static double At(ReadOnlySpan<float> x, long plane, int h, int w, in Pool2dParams q) =>
        x[(int)((plane * q.H + PadIndex.Map(h, q.PH, q.H, q.PadMode)) * q.W + PadIndex.Map(w, q.PW, q.W, q.PadMode))];

    private static double Window(ReadOnlySpan<float> x, long plane, int oh, int ow, in Pool2dParams q)
    {
        int hs = oh * q.SH - q.ImpH, ws = ow * q.SW - q.ImpW;
        var mode = (Pool2dMode)q.Mode;
        if (mode is Pool2dMode.Max or Pool2dMode.Min)
        {
            double best = 0; bool any = false;
            for (int i = 0; i < q.KH; i++)
            {
                int h = hs + i * q.DH;
                if (h < 0 || h >= q.DataH) continue;
                for (int j = 0; j < q.KW; j++)
                {
                    int w = ws + j * q.DW;
                    if (w < 0 || w >= q.DataW) continue;
                    double v = At(x, plane, h, w, q);
                    if (!any) best = v;
                    else if (!double.IsNaN(best) && (double.IsNaN(v) || (mode == Pool2dMode.Max ? v > best : v < best))) best = v;
                    any = true;
                }
            }
            return any ? best : 0;
        }
        int he = Math.Min(hs + q.KH, q.DataH + q.ImpH), we = Math.Min(ws + q.KW, q.DataW + q.ImpW);
        int poolSize = (he - hs) * (we - ws);
        int h0 = Math.Max(hs, 0), w0 = Math.Max(ws, 0);
        he = Math.Min(he, q.DataH); we = Math.Min(we, q.DataW);
        if (h0 >= he || w0 >= we) return 0;
        double s = 0;
        for (int h = h0; h < he; h++)
            for (int w = w0; w < we; w++)
            {
                double v = At(x, plane, h, w, q);
                s += mode == Pool2dMode.Avg ? v : Math.Pow(v, q.P);
            }
        if (mode == Pool2dMode.Lp) return Math.Pow(s, 1.0 / q.P);
        return s / (q.CountIncludePad != 0 ? poolSize : (he - h0) * (we - w0));
    }
}

/// <summary>
/// <c>adaptive_pool2d</c> / <c>spp</c> geometry: bin i of n over an axis of length L covers [floor(i·L/n), ceil((i+1)·L/n)).
/// Output element (b, c, i, j) goes to output[b·OutStride + OutOffset + (c·OutH + i)·OutW + j], so spp writes each
/// level straight into its slice of the concatenated row.
/// </summary>
internal struct AdaptivePoolParams
{
    /// <summary>Input shape.</summary>
    public int Batch, Channels, H, W;
    /// <summary>Bins.</summary>
    public int OutH, OutW;
    /// <summary>Output placement.</summary>
    public int OutStride, OutOffset;
    /// <summary>0 avg, 1 max (a <see cref="Pool2dMode"/>).</summary>
    public int Mode;
}

/// <summary><c>adaptive_pool2d</c> / <c>spp</c>, scalar reference (double). An empty bin (H or W = 0) gives 0.</summary>
internal static class AdaptivePoolReference
{
    /// <summary>Runs one level into output.</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, in AdaptivePoolParams q)
    {
        for (int b = 0; b < q.Batch; b++)
            for (int c = 0; c < q.Channels; c++)
                for (int i = 0; i < q.OutH; i++)
                    for (int j = 0; j < q.OutW; j++)
                    {
                        int h0 = (int)((long)i * q.H / q.OutH), h1 = (int)(((long)(i + 1) * q.H + q.OutH - 1) / q.OutH);
                        int w0 = (int)((long)j * q.W / q.OutW), w1 = (int)(((long)(j + 1) * q.W + q.OutW - 1) / q.OutW);
                        double s = 0, mx = double.NegativeInfinity; int n = 0;
                        for (int h = h0; h < h1; h++)
                            for (int w = w0; w < w1; w++)
                            {
                                double v = x[(int)((((long)b * q.Channels + c) * q.H + h) * q.W + w)];
                                s += v; n++;
                                if (v > mx || double.IsNaN(v)) mx = double.IsNaN(mx) ? mx : v;
                            }
                        double r = n == 0 ? 0 : q.Mode == (int)Pool2dMode.Max ? mx : s / n;
                        output[(int)((long)b * q.OutStride + q.OutOffset + ((long)c * q.OutH + i) * q.OutW + j)] = (float)r;
                    }
    }
}
