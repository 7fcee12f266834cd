namespace PoolKernels.Kernels.Heads;

/// <summary>
/// The building blocks of the trainable pooling heads, scalar reference (the oracle): LayerNorm, Linear
/// (y = x·Wᵀ + b [+ residual]), GEGLU with the exact erf GELU, and the row add/widen that feeds the heads.
/// Every sum is accumulated in double; the result is rounded to float once.
/// </summary>
internal static class HeadsReference
{
    /// <summary>y[r] = (x[r] - mean) / sqrt(var + eps) · w + b over rows of <paramref name="dim"/> (biased variance, as PyTorch).</summary>
    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int rows, int dim,
        float eps)
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * dim, dim);
            double mean = 0;
            for (int i = 0; i < dim; i++) mean += xr[i];
            mean /= dim;
            double var = 0;
            for (int i = 0; i < dim; i++) { double d = xr[i] - mean; var += d * d; }
            var /= dim;
            double rstd = 1.0 / Math.Sqrt(var + eps);
            var yr = y.Slice(r * dim, dim);
            for (int i = 0; i < dim; i++) yr[i] = (float)((xr[i] - mean) * rstd * w[i] + b[i]);
        }
    }

    /// <summary>y[i,j] = Σ_k x[i,k]·w[j,k] + bias[j] + residual[i,j] (bias and residual optional: empty spans);
    /// x [m,k], w [n,k] (PyTorch's Linear.weight), y [m,n]. <paramref name="residual"/> may be <paramref name="y"/> itself.</summary>
    public static void Linear(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, ReadOnlySpan<float> residual,
        Span<float> y, int m, int n, int k)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = bias.IsEmpty ? 0 : bias[j];
                for (int t = 0; t < k; t++) s += (double)x[i * k + t] * w[j * k + t];
                if (!residual.IsEmpty) s += residual[i * n + j];
                y[i * n + j] = (float)s;
            }
    }

    /// <summary>GEGLU: h [rows, 2f] = a‖g (a the first half); y [rows, f] = a ⊙ gelu(g), gelu(g) = g/2·(1 + erf(g/√2)).</summary>
    public static void Geglu(ReadOnlySpan<float> h, Span<float> y, int rows, int f)
    {
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < f; i++)
                y[r * f + i] = (float)(h[r * 2 * f + i] * Gelu(h[r * 2 * f + f + i]));
    }

    /// <summary>y[b,r,:] = x[b,r,:] + add[r,:] (add optional: an empty span widens x to float only); x [batch, rows, dim].</summary>
    public static void AddRows<T>(ReadOnlySpan<T> x, ReadOnlySpan<float> add, Span<float> y, int batch, int rows, int dim)
    {
        for (int b = 0; b < batch; b++)
            for (int r = 0; r < rows; r++)
                for (int i = 0; i < dim; i++)
                {
                    long at = ((long)b * rows + r) * dim + i;
                    double v = Elements.ToFloat(x[(int)at]);
                    if (!add.IsEmpty) v += add[r * dim + i];
                    y[(int)at] = (float)v;
                }
    }

    /// <summary>Exact GELU: g/2·(1 + erf(g/√2)).</summary>
    public static double Gelu(double g) => 0.5 * g * (1 + Erf(g / Math.Sqrt(2)));

    /// <summary>erf in double: its Maclaurin series below |x| = 4 (the largest term is ~1e7, so ~1e-9 relative
    /// accuracy remains), the asymptotic erfc expansion above (erfc(4) ≈ 1.5e-8, so its few terms are exact to double).</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        double ax = Math.Abs(x);
        if (ax < 4)
        {
            double term = x, sum = x, x2 = x * x;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            return 2 / Math.Sqrt(Math.PI) * sum;
        }
        if (ax > 10) return Math.Sign(x);
        double inv = 1 / (2 * ax * ax);
        double series = 1 - inv + 3 * inv * inv - 15 * inv * inv * inv + 105 * inv * inv * inv * inv;
        double erfc = Math.Exp(-ax * ax) / (ax * Math.Sqrt(Math.PI)) * series;
        return Math.Sign(x) * (1 - erfc);
    }
}
