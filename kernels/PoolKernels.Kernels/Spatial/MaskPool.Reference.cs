namespace PoolKernels.Kernels.Spatial;

/// <summary>Bilinear sampling as F.interpolate(mode="bilinear", align_corners=False) without scale_factor.</summary>
internal static class Bilinear
{
    /// <summary>Source taps of output coordinate <paramref name="o"/> for an axis resized from <paramref name="inSize"/> to
    /// <paramref name="outSize"/>: src = (o + 0.5)·in/out − 0.5 clamped at 0, i0 = floor(src), i1 = min(i0+1, in−1),
    /// weight of i1 = src − i0.</summary>
    public static void Taps(int o, int inSize, int outSize, out int i0, out int i1, out float l1)
    {
        float scale = (float)inSize / outSize;
        float src = scale * (o + 0.5f) - 0.5f;
        if (src < 0) src = 0;
        i0 = (int)src;
        i1 = i0 < inSize - 1 ? i0 + 1 : i0;
        l1 = src - i0;
    }

    /// <summary>Weight of a mask value.</summary>
    public static float Weight(float m, int type, float threshold) => type switch
    {
        (int)MaskType.BinaryLogits => m > 0 ? 1f : 0f,
        (int)MaskType.Soft => m,
        (int)MaskType.Gated => m > threshold ? m : 0f,
        _ => 1f / (1f + ILGPU.Algorithms.XMath.Exp(-m)),
    };
}

/// <summary>
/// <c>mask_pool</c> (FC-CLIP / Mask-Adapter), scalar reference (double): masks [B,Q,Hm,Wm] are resized bilinearly to
/// H×W when their size differs, turned into weights w, then out[b,q,c] = Σ_hw x[b,c,hw]·w / (Σ_hw w + eps); a zero
/// denominator (an empty mask with eps = 0) gives 0.
/// </summary>
internal static class MaskPoolReference
{
    /// <summary>Runs into output [B,Q,C].</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> masks, Span<float> output, int batch, int channels, int height,
        int width,
        int queries, int mh, int mw, MaskType type, float threshold, float eps)
    {
        int hw = height * width;
        var w = new double[hw];
        for (int b = 0; b < batch; b++)
            for (int q = 0; q < queries; q++)
            {
                long mBase = ((long)b * queries + q) * mh * mw;
                double wsum = 0;
                for (int h = 0; h < height; h++)
                    for (int ww = 0; ww < width; ww++)
                    {
                        double m;
                        if (mh == height && mw == width) m = masks[(int)(mBase + (long)h * mw + ww)];
                        else
                        {
                            // in double, with the same tap rule as PyTorch
                            double sh = Math.Max((double)mh / height * (h + 0.5) - 0.5, 0),
                                sw = Math.Max((double)mw / width * (ww + 0.5) - 0.5, 0);
                            int h0 = (int)sh, w0 = (int)sw, h1 = h0 < mh - 1 ? h0 + 1 : h0, w1 = w0 < mw - 1 ? w0 + 1 : w0;
                            double lh = sh - h0, lw = sw - w0;
                            double m00 = masks[(int)(mBase + (long)h0 * mw + w0)], m01 = masks[(int)(mBase + (long)h0 * mw + w1)];
                            double m10 = masks[(int)(mBase + (long)h1 * mw + w0)], m11 = masks[(int)(mBase + (long)h1 * mw + w1)];
                            m = (1 - lh) * ((1 - lw) * m00 + lw * m01) + lh * ((1 - lw) * m10 + lw * m11);
                        }
                        double wt = type switch
                        {
                            MaskType.BinaryLogits => m > 0 ? 1 : 0,
                            MaskType.Soft => m,
                            MaskType.Gated => m > threshold ? m : 0,
                            _ => 1 / (1 + Math.Exp(-m)),
                        };
                        w[h * width + ww] = wt;
                        wsum += wt;
                    }
                double denom = wsum + eps;
                for (int c = 0; c < channels; c++)
                {
                    double s = 0;
                    long xBase = ((long)b * channels + c) * hw;
                    for (int i = 0; i < hw; i++) s += x[(int)(xBase + i)] * w[i];
                    output[(int)(((long)b * queries + q) * channels + c)] = denom == 0 ? 0 : (float)(s / denom);
                }
            }
    }
}
