namespace PoolKernels.Kernels.Retrieval;

/// <summary>
/// <c>similarity_topk</c>, scalar reference (double): score = q·x (dot) or q·x / (max(‖q‖,1e-12)·max(‖x‖,1e-12))
/// (cosine, as F.normalize then dot); the k best db rows per query by <see cref="Ranking"/> (ties: lower index).
/// </summary>
internal static class SimilarityTopkReference
{
    /// <summary>Runs into index [Q,k] and score [Q,k].</summary>
    public static void Run(ReadOnlySpan<float> query, ReadOnlySpan<float> db, Span<long> index, Span<float> score, int queries, int n,
        int dim, int k, bool cosine)
    {
        var s = new double[n];
        for (int q = 0; q < queries; q++)
        {
            double qn = Norm(query.Slice(q * dim, dim));
            for (int i = 0; i < n; i++)
            {
                double dot = 0;
                for (int d = 0; d < dim; d++) dot += (double)query[q * dim + d] * db[i * dim + d];
                s[i] = cosine ? dot / (Math.Max(qn, 1e-12) * Math.Max(Norm(db.Slice(i * dim, dim)), 1e-12)) : dot;
            }
            var order = Ranking.Sorted(s);
            for (int j = 0; j < k; j++) { index[q * k + j] = order[j]; score[q * k + j] = (float)s[order[j]]; }
        }
    }

    internal static double Norm(ReadOnlySpan<float> v)
    {
        double ss = 0;
        foreach (float x in v) ss += (double)x * x;
        return Math.Sqrt(ss);
    }
}
