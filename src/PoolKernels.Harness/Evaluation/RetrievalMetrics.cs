namespace PoolKernels.Evaluation;

/// <summary>Retrieval quality over a set of queries: recall@1, recall@10 and MRR@10 (each a mean over the queries, in [0, 1]).</summary>
/// <param name="Queries">The number of queries averaged over.</param>
/// <param name="RecallAt1">Mean over the queries of |relevant ∩ top 1| / |relevant|.</param>
/// <param name="RecallAt10">Mean over the queries of |relevant ∩ top 10| / |relevant|.</param>
/// <param name="MrrAt10">Mean over the queries of 1 / (rank of the first relevant document) when it is in the top 10, else 0.</param>
public sealed record RetrievalScores(int Queries, double RecallAt1, double RecallAt10, double MrrAt10);

/// <summary>recall@k and MRR@10 of ranked results (the index output of <c>similarity_topk</c>, <c>hamming_topk</c>,
/// <c>binary_search</c>: [Q, k] best first).</summary>
public static class RetrievalMetrics
{
    /// <summary>
    /// Scores ranked results: <paramref name="ranked"/> is [Q, <paramref name="width"/>] row-major document indices, best
    /// first; <paramref name="relevant"/>[q] the relevant documents of query q (at least one each). A query with fewer than
    /// 10 results counts the missing ranks as misses. A document listed twice in a row counts once.
    /// </summary>
    /// <exception cref="ArgumentException">The sizes do not match, width &lt; 1, or a query has no relevant document.</exception>
    public static RetrievalScores Evaluate(ReadOnlySpan<long> ranked, int width, IReadOnlyList<int[]> relevant)
    {
        ArgumentNullException.ThrowIfNull(relevant);
        if (width < 1) throw new ArgumentException($"width must be >= 1, got {width}.", nameof(width));
        int q = relevant.Count;
        if (ranked.Length != (long)q * width)
            throw new ArgumentException($"ranked has {ranked.Length} entries, expected {q} queries x {width}.", nameof(ranked));
        if (q == 0) return new RetrievalScores(0, 0, 0, 0);
        double r1 = 0, r10 = 0, mrr = 0;
        var seen = new HashSet<long>();
        for (int i = 0; i < q; i++)
        {
            var rel = relevant[i];
            if (rel is null || rel.Length == 0) throw new ArgumentException($"query {i} has no relevant document.", nameof(relevant));
            var row = ranked.Slice(i * width, width);
            int hits1 = 0, hits10 = 0;
            double reciprocal = 0;
            seen.Clear();
            for (int r = 0; r < Math.Min(width, 10); r++)
            {
                if (!seen.Add(row[r]) || Array.IndexOf(rel, (int)row[r]) < 0 || row[r] > int.MaxValue) continue;
                hits10++;
                if (r == 0) hits1++;
                if (reciprocal == 0) reciprocal = 1.0 / (r + 1);
            }
            int distinct = rel.Distinct().Count();
            r1 += (double)hits1 / distinct;
            r10 += (double)hits10 / distinct;
            mrr += reciprocal;
        }
        return new RetrievalScores(q, r1 / q, r10 / q, mrr / q);
    }
}
