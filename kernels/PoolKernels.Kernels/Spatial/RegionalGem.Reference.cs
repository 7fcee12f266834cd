namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>regional_gem</c> (SuperGlobal R-GeM), scalar reference (double): with xc = max(x, 0),
/// out = 0.5·((1/k²) Σ over the k×k window of the reflect-padded xc of xc^p)^(1/p) + 0.5·xc.
/// The kernel is odd, the padding k/2 on each side (smaller than H and W).
/// </summary>
internal static class RegionalGemReference
{
    /// <summary>Runs into output [B,C,H,W].</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, int batch, int channels, int height, int width, float p, int kernel)
    {
        int pad = kernel / 2;
        for (long plane = 0; plane < (long)batch * channels; plane++)
            for (int h = 0; h < height; h++)
                for (int w = 0; w < width; w++)
                {
                    double s = 0;
                    for (int a = 0; a < kernel; a++)
                    {
                        int hh = PadIndex.Map(h + a, pad, height, PadIndex.Reflect);
                        for (int b = 0; b < kernel; b++)
                        {
                            int ww = PadIndex.Map(w + b, pad, width, PadIndex.Reflect);
                            s += Math.Pow(Clamp(x[(int)((plane * height + hh) * width + ww)]), p);
                        }
                    }
                    double xc = Clamp(x[(int)((plane * height + h) * width + w)]);
                    output[(int)((plane * height + h) * width + w)] = (float)(0.5 * Math.Pow(s / ((double)kernel * kernel),
                        1.0 / p) + 0.5 * xc);
                }
    }

    private static double Clamp(double v) => double.IsNaN(v) ? v : Math.Max(v, 0);
}
