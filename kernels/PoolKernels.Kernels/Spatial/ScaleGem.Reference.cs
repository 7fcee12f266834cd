namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>scale_gem</c> (SuperGlobal multi-scale GeM), scalar reference (double). x is [S,B,D].
/// p = +inf: out[b] = max over s of normalize(x[s,b]) (normalize = v / max(‖v‖₂, 1e-12)).
/// Finite p: γ = min of every entry of x; out[b] = ((1/S) Σ_s (x[s,b] − γ)^p)^(1/p) + γ. S = 0 gives 0.
/// </summary>
internal static class ScaleGemReference
{
    /// <summary>Runs into output [B,D].</summary>
    public static void Run(ReadOnlySpan<float> x, Span<float> output, int scales, int batch, int dim, float p)
    {
        if (scales == 0) { output.Clear(); return; }
        if (float.IsPositiveInfinity(p))
        {
            for (int b = 0; b < batch; b++)
            {
                var best = new double[dim];
                Array.Fill(best, double.NegativeInfinity);
                for (int s = 0; s < scales; s++)
                {
                    int row = (s * batch + b) * dim;
                    double n = 0;
                    for (int d = 0; d < dim; d++) n += (double)x[row + d] * x[row + d];
                    double inv = 1.0 / Math.Max(Math.Sqrt(n), 1e-12);
                    for (int d = 0; d < dim; d++)
                    {
                        double v = x[row + d] * inv;
                        if (v > best[d] || double.IsNaN(v)) best[d] = double.IsNaN(best[d]) ? best[d] : v;
                    }
                }
                for (int d = 0; d < dim; d++) output[b * dim + d] = (float)best[d];
            }
            return;
        }
        double gamma = double.PositiveInfinity;
        foreach (float v in x) if (v < gamma || float.IsNaN(v)) gamma = double.IsNaN(gamma) ? gamma : v;
        for (int b = 0; b < batch; b++)
            for (int d = 0; d < dim; d++)
            {
                double acc = 0;
                for (int s = 0; s < scales; s++) acc += Math.Pow(x[(s * batch + b) * dim + d] - gamma, p);
                output[b * dim + d] = (float)(Math.Pow(acc / scales, 1.0 / p) + gamma);
            }
    }
}
