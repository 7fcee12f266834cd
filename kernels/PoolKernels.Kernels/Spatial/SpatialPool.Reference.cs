namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>spatial_pool</c>, scalar reference (double accumulation). x is [B,C,H,W] (or [B,H,W,C] when
/// <c>nhwc</c>); valid, when given, is [B,H,W] raw mask bytes of <c>maskSize</c>-byte elements. For each (b,c)
/// the valid cells V are reduced by the mode; an empty V gives 0; rows are then L2-normalized when asked. GGeM:
/// with p_groups [G] given, channel c of gem uses p = p_groups[c / (C/G)] instead of p.
/// </summary>
internal static class SpatialPoolReference
{
    /// <summary>Runs the operation into output [B,C]. Arguments are assumed validated; <paramref name="pGroups"/> empty =
    /// plain GeM.</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<byte> valid, int maskSize, Span<float> output,
        int batch, int channels, int height, int width, bool nhwc, SpatialPoolMode mode, float pw, float eps, bool normalize,
        ReadOnlySpan<float> pGroups = default)
    {
        int hw = height * width;
        var acc = new double[channels];
        for (int b = 0; b < batch; b++)
        {
            for (int c = 0; c < channels; c++)
            {
                double p = pGroups.IsEmpty ? pw : pGroups[c / (channels / pGroups.Length)];
                double s = 0, mx = double.NegativeInfinity;
                int n = 0;
                for (int i = 0; i < hw; i++)
                {
                    if (maskSize > 0 && !MaskBytes.Keep(valid, maskSize, (long)b * hw + i)) continue;
                    double v = nhwc ? x[(int)(((long)b * hw + i) * channels + c)] : x[(int)(((long)b * channels + c) * hw + i)];
                    n++;
                    switch (mode)
                    {
                        case SpatialPoolMode.Avg: s += v; break;
                        case SpatialPoolMode.Max: if (v > mx || double.IsNaN(v)) mx = double.IsNaN(mx) ? mx : v; break;
                        default: s += Math.Pow(Math.Max(v, eps), p); break;
                    }
                }
                acc[c] = n == 0 ? 0 : mode switch
                {
                    SpatialPoolMode.Avg => s / n,
                    SpatialPoolMode.Max => mx,
                    _ => Math.Pow(s / n, 1.0 / p),
                };
            }
            double norm = 0;
            foreach (double a in acc) norm += a * a;
            double scale = normalize ? 1.0 / Math.Max(Math.Sqrt(norm), 1e-12) : 1.0;
            for (int c = 0; c < channels; c++) output[b * channels + c] = (float)(acc[c] * scale);
        }
    }
}
