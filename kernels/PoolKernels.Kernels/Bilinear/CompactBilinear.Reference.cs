namespace PoolKernels.Kernels.Bilinear;

/// <summary>
/// <c>compact_bilinear_pool</c> (MCB, Fukui et al. / Gao et al.), scalar reference: the definition itself, in double,
/// with no FFT — z[c] = Σ over (i, j) with (hx_i + hy_j) mod d = c of sx_i·x_i·sy_j·y_j (the circular convolution of
/// the two count sketches), then the optional signed square root and L2 normalization. O(Dx·Dy) per row: an oracle
/// independent of the FFT that the other backends use.
/// </summary>
internal static class CompactBilinearReference
{
    /// <summary>Runs on validated arguments (hx, hy in [0, d)); output is [B, d].</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<long> hx, ReadOnlySpan<float> sx,
        ReadOnlySpan<long> hy,
        ReadOnlySpan<float> sy, Span<float> output, int batch, int d, bool signedSqrt, bool normalize)
    {
        int dx = hx.Length, dy = hy.Length;
        var z = new double[d];
        for (int b = 0; b < batch; b++)
        {
            Array.Clear(z);
            for (int i = 0; i < dx; i++)
            {
                double a = (double)sx[i] * x[b * dx + i];
                for (int j = 0; j < dy; j++) z[(hx[i] + hy[j]) % d] += a * sy[j] * y[b * dy + j];
            }
            BilinearPoolReference.Finish(z, output.Slice(b * d, d), signedSqrt, normalize);
        }
    }
}
