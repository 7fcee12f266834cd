using System.Numerics;
using PoolKernels.Kernels.Retrieval;

namespace PoolKernels.Kernels.Quantized;

/// <summary>
/// <c>hamming_topk</c>, scalar reference: distance = popcount(q XOR x) over the W raw bytes of each row, byte by byte;
/// the k nearest rows per query, ascending distance, ties to the lower index (a full sort of each query's N distances).
/// </summary>
internal static class HammingTopkReference
{
    /// <summary>popcount(a XOR b) over <paramref name="w"/> bytes.</summary>
    public static int Distance(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, int w)
    {
        int d = 0;
        for (int i = 0; i < w; i++) d += BitOperations.PopCount((uint)(a[i] ^ b[i]));
        return d;
    }

    /// <summary>Runs into index [Q,k] and distance [Q,k].</summary>
    public static void Run(ReadOnlySpan<byte> query, ReadOnlySpan<byte> db, Span<long> index, Span<int> distance, int queries, int n,
        int w, int k)
    {
        var s = new double[n];
        for (int q = 0; q < queries; q++)
        {
            var qv = query.Slice(q * w, w);
            for (int i = 0; i < n; i++) s[i] = -Distance(qv, db.Slice(i * w, w), w);
            var order = Ranking.Sorted(s);
            for (int j = 0; j < k; j++) { index[q * k + j] = order[j]; distance[q * k + j] = (int)-s[order[j]]; }
        }
    }
}

/// <summary>
/// <c>binary_search</c>, scalar reference: query bits packbits(query &gt; 0) (XOR 0x80 per byte when the db is I8, which
/// is the same as flipping the db's top bits back to ubinary); candidates = the min(N, k·multiplier) nearest rows by
/// <see cref="HammingTopkReference"/>; with rescoring, score = Σ_d query_d·(2·bit_d − 1) in double and the k best by
/// score (ties lower index); without, the first k candidates with score D − 2·distance.
/// </summary>
internal static class BinarySearchReference
{
    /// <summary>Runs into index [Q,k] and score [Q,k]; db holds [N, ceil(D/8)] bytes.</summary>
    public static void Run(ReadOnlySpan<float> query, ReadOnlySpan<byte> db, bool dbSigned, Span<long> index, Span<float> score,
        int queries, int n, int dim, int k, int multiplier, bool rescore)
    {
        int w = (dim + 7) / 8;
        int c = (int)Math.Min(n, (long)k * multiplier);
        var packed = new byte[(long)queries * w];
        QuantizeReference.Pack(query, packed, queries, dim, dbSigned);
        var ci = new long[(long)queries * c];
        var cd = new int[(long)queries * c];
        HammingTopkReference.Run(packed, db, ci, cd, queries, n, w, c);
        for (int q = 0; q < queries; q++)
        {
            if (!rescore)
            {
                for (int j = 0; j < k; j++) { index[q * k + j] = ci[q * c + j]; score[q * k + j] = dim - 2 * cd[q * c + j]; }
                continue;
            }
            var s = new double[c];
            var ids = new long[c];
            for (int j = 0; j < c; j++)
            {
                long r = ci[q * c + j];
                ids[j] = r;
                double sum = 0;
                for (int d = 0; d < dim; d++)
                {
                    int bit = ((db[(int)(r * w + d / 8)] ^ (dbSigned ? 0x80 : 0)) >> (7 - d % 8)) & 1;
                    sum += (double)query[q * dim + d] * (2 * bit - 1);
                }
                s[j] = sum;
            }
            var order = Ranking.Sorted(s, ids);
            for (int j = 0; j < k; j++) { index[q * k + j] = ids[order[j]]; score[q * k + j] = (float)s[order[j]]; }
        }
    }
}
