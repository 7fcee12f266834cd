namespace PoolKernels.Kernels.Bilinear;

/// <summary>
/// <c>bilinear_pool</c>, scalar reference (double): out[b] = vec(mean over the valid n of x_n·y_nᵀ), row-major over
/// [Dx, Dy] (index i·Dy + j), then sign(z)·√|z| when signedSqrt, then z / max(‖z‖₂, 1e-12) when normalize.
/// y empty means y = x; mask empty keeps every n. A batch row with no valid n gives zeros.
/// </summary>
internal static class BilinearPoolReference
{
    /// <summary>Runs on validated arguments.</summary>
    public static void Run<TMask>(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<TMask> mask, Span<float> output,
        int batch, int n, int dx, int dy, bool signedSqrt, bool normalize) where TMask : unmanaged
    {
        bool self = y.IsEmpty;
        var z = new double[(long)dx * dy];
        for (int b = 0; b < batch; b++)
        {
            Array.Clear(z);
            int count = 0;
            for (int t = 0; t < n; t++)
            {
                if (!mask.IsEmpty && !Elements.Keep(mask[b * n + t])) continue;
                count++;
                for (int i = 0; i < dx; i++)
                    for (int j = 0; j < dy; j++)
                        z[i * dy + j] += (double)x[(b * n + t) * dx + i] * (self ? x[(b * n + t) * dx + j] : y[(b * n + t) * dy + j]);
            }
            if (count > 0) for (int f = 0; f < z.Length; f++) z[f] /= count;
            Finish(z, output.Slice(b * z.Length, z.Length), signedSqrt, normalize);
        }
    }

    /// <summary>Signed square root and L2 normalization in double, then stored as float.</summary>
    public static void Finish(Span<double> z, Span<float> dst, bool signedSqrt, bool normalize)
    {
        // torch.sign(z)·sqrt(|z|): NaN stays NaN (Math.Sign throws on NaN)
        if (signedSqrt) for (int f = 0; f < z.Length; f++) z[f] = double.IsNaN(z[f]) ? z[f] : Math.Sign(z[f]) * Math.Sqrt(Math.Abs(z[f]));
        double scale = 1;
        if (normalize)
        {
            double ss = 0;
            foreach (double v in z) ss += v * v;
            scale = 1 / Math.Max(Math.Sqrt(ss), 1e-12);
        }
        for (int f = 0; f < z.Length; f++) dst[f] = (float)(z[f] * scale);
    }
}
