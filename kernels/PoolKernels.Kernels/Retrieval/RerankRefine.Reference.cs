namespace PoolKernels.Kernels.Retrieval;

/// <summary>
/// <c>rerank_refine</c> (SuperGlobal reranking), scalar reference (double). For each query q, with m' = min(m, N):
/// T = the m' best db rows by q·x; for i in T, its neighbours are the k' = min(k, m'−1) members j ≠ i of T with the
/// largest x_i·x_j; d'_i = (x_i + Σ_j β(x_i·x_j)·x_j) / (1 + Σ_j β(x_i·x_j)); S1_i = q·d'_i; q' = the elementwise max of
/// the d' of the min(k+1, m') best by S1; S_i = (S1_i + q'·d'_i)/2; the output lists T by S. Every ranking is
/// <see cref="Ranking"/> with db indices as ids. Rows are used as stored (not re-normalized).
/// </summary>
internal static class RerankRefineReference
{
    /// <summary>Runs into order [Q,m'] and scores [Q,m'].</summary>
    public static void Run(ReadOnlySpan<float> query, ReadOnlySpan<float> db, Span<long> order, Span<float> scores, int queries, int n,
        int dim, int m, int k, float beta)
    {
        int mp = Math.Min(m, n), kn = Math.Max(0, Math.Min(k, mp - 1)), kk = Math.Min(k + 1, mp);
        if (mp == 0) return;
        var s = new double[n];
        for (int q = 0; q < queries; q++)
        {
            var qv = query.Slice(q * dim, dim);
            for (int i = 0; i < n; i++) s[i] = Dot(qv, db.Slice(i * dim, dim));
            long[] t = Ranking.Sorted(s)[..mp].Select(i => (long)i).ToArray();
            var dp = new double[mp, dim];
            var s1 = new double[mp];
            for (int a = 0; a < mp; a++)
            {
                var xa = db.Slice((int)t[a] * dim, dim);
                var others = Enumerable.Range(0, mp).Where(b => b != a).ToArray();
                var g = new double[others.Length];
                for (int j = 0; j < others.Length; j++) g[j] = Dot(xa, db.Slice((int)t[others[j]] * dim, dim));
                var nb = Ranking.Sorted(g, others.Select(b => t[b]).ToArray())[..kn];
                double den = 1;
                for (int d = 0; d < dim; d++) dp[a, d] = xa[d];
                foreach (int j in nb)
                {
                    double w = beta * g[j];
                    den += w;
                    var xb = db.Slice((int)t[others[j]] * dim, dim);
                    for (int d = 0; d < dim; d++) dp[a, d] += w * xb[d];
                }
                for (int d = 0; d < dim; d++) { dp[a, d] /= den; s1[a] += qv[d] * dp[a, d]; }
            }
            var best = Ranking.Sorted(s1, t)[..kk];
            var qp = new double[dim];
            Array.Fill(qp, double.NegativeInfinity);
            foreach (int a in best)
                for (int d = 0; d < dim; d++) qp[d] = Math.Max(qp[d], dp[a, d]);
            var sf = new double[mp];
            for (int a = 0; a < mp; a++)
            {
                double dot = 0;
                for (int d = 0; d < dim; d++) dot += qp[d] * dp[a, d];
                sf[a] = (s1[a] + dot) / 2;
            }
            var ord = Ranking.Sorted(sf, t);
            for (int j = 0; j < mp; j++) { order[q * mp + j] = t[ord[j]]; scores[q * mp + j] = (float)sf[ord[j]]; }
        }
    }

    private static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += (double)a[i] * b[i];
        return s;
    }
}
