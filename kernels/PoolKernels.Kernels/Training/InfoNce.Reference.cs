namespace PoolKernels.Kernels.Training;

/// <summary>
/// <c>info_nce</c> (sentence-transformers MultipleNegativesRankingLoss), scalar reference in double: with â = a/max(‖a‖, 1e-12)
/// and ĉ likewise (cosine; dot uses a and c as they are), S[b,j] = scale·â_b·ĉ_j over anchors [B,D] and candidates [N,D]
/// (candidate b is anchor b's positive), loss = mean_b(logsumexp_j S[b,j] − S[b,b]). With G[b,j] = (softmax_j S[b,·] −
/// [j = b])·scale/B: dâ_b = Σ_j G[b,j]·ĉ_j, dĉ_j = Σ_b G[b,j]·â_b, then through the normalization d_x = (dx̂ − x̂·(x̂·dx̂))/‖x‖
/// (d_x = dx̂/1e-12 where ‖x‖ &lt; 1e-12, as F.normalize's clamp). An empty batch (B = 0) has loss 0 and zero gradients.
/// </summary>
internal static class InfoNceReference
{
    /// <summary>Runs the operation. Arguments are assumed validated.</summary>
    public static void Run(ReadOnlySpan<float> anchors, ReadOnlySpan<float> candidates, int b, int n, int d, float scale, bool cosine,
        Span<float> loss, Span<float> dAnchors, Span<float> dCandidates)
    {
        var ah = Normalize(anchors, b, d, cosine, out var an);
        var ch = Normalize(candidates, n, d, cosine, out var cn);
        var g = new double[(long)b * n];
        double total = 0;
        for (int i = 0; i < b; i++)
        {
            var s = new double[n];
            double m = double.NegativeInfinity;
            for (int j = 0; j < n; j++)
            {
                double dot = 0;
                for (int k = 0; k < d; k++) dot += ah[i * d + k] * ch[j * d + k];
                s[j] = scale * dot;
                m = Math.Max(m, s[j]);
            }
            double sum = 0;
            for (int j = 0; j < n; j++) sum += Math.Exp(s[j] - m);
            double lse = m + Math.Log(sum);
            total += lse - s[i];
            for (int j = 0; j < n; j++) g[(long)i * n + j] = (Math.Exp(s[j] - lse) - (i == j ? 1 : 0)) * scale / b;
        }
        loss[0] = b == 0 ? 0f : (float)(total / b);
        var dah = new double[(long)b * d];
        var dch = new double[(long)n * d];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < n; j++)
            {
                double gij = g[(long)i * n + j];
                for (int k = 0; k < d; k++) { dah[i * d + k] += gij * ch[j * d + k]; dch[j * d + k] += gij * ah[i * d + k]; }
            }
        Backward(ah, dah, an, b, d, cosine, dAnchors);
        Backward(ch, dch, cn, n, d, cosine, dCandidates);
    }

    private static double[] Normalize(ReadOnlySpan<float> x, int rows, int d, bool cosine, out double[] norms)
    {
        var r = new double[(long)rows * d];
        norms = new double[rows];
        for (int i = 0; i < rows; i++)
        {
            double ss = 0;
            for (int k = 0; k < d; k++) ss += (double)x[i * d + k] * x[i * d + k];
            double nrm = cosine ? Math.Sqrt(ss) : 1, div = cosine ? Math.Max(nrm, 1e-12) : 1;
            norms[i] = nrm;
            for (int k = 0; k < d; k++) r[i * d + k] = x[i * d + k] / div;
        }
        return r;
    }

    private static void Backward(double[] xh, double[] dxh, double[] norms, int rows, int d, bool cosine, Span<float> dx)
    {
        for (int i = 0; i < rows; i++)
        {
            if (!cosine) { for (int k = 0; k < d; k++) dx[i * d + k] = (float)dxh[i * d + k]; continue; }
            if (norms[i] < 1e-12) { for (int k = 0; k < d; k++) dx[i * d + k] = (float)(dxh[i * d + k] / 1e-12); continue; }
            double proj = 0;
            for (int k = 0; k < d; k++) proj += xh[i * d + k] * dxh[i * d + k];
            for (int k = 0; k < d; k++) dx[i * d + k] = (float)((dxh[i * d + k] - xh[i * d + k] * proj) / norms[i]);
        }
    }
}
