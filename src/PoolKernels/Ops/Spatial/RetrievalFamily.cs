using PoolKernels.Verification;
using static PoolKernels.SpatialFamily;

namespace PoolKernels;

/// <summary>similarity_topk and rerank_refine in the registry.</summary>
internal sealed class RetrievalFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("similarity_topk", RunTopk, TopkCases);
    }

    private static IReadOnlyDictionary<string, Tensor> RunTopk(Device d, OpCall c)
    {
        var (i, s) = d.SimilarityTopk(c.Input("query"), c.Input("db"), c.Int("k", 10), Retrieval.ParseMetric(c.Text("metric", "dot")));
        return new Dictionary<string, Tensor> { ["index"] = i, ["score"] = s };
    }

    /// <summary>Small integers: every dot product is exact in float, so ties are exact and must break by lower index.</summary>
    internal static Tensor Integers(RandomTensors r, int lo, int hi, params int[] shape)
    {
        var v = new float[Shape.Count(shape)];
        for (int i = 0; i < v.Length; i++) v[i] = r.Rng.Next(lo, hi + 1);
        return Tensor.From(v, shape);
    }

    private static IReadOnlyList<(string, OpCall)> TopkCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int Q, int N, int D, int K, string M, bool Ints)[] list =
        [
            (3, 50, 16, 5, "dot", false), (4, 64, 24, 10, "cosine", false), (3, 30, 8, 6, "dot", true), (2, 12, 8, 12, "cosine", true),
            (1, 1, 1, 1, "dot", false), (2, 5, 3, 0, "dot", false), (0, 5, 3, 2, "dot", false), (5, 300, 17, 33, "dot", true), (2, 7, 5, 7, "dot", false),
        ];
        foreach (var (q, n, d, k, m, ints) in list)
        {
            var inputs = new Dictionary<string, Tensor>
            {
                ["query"] = ints ? Integers(r, -2, 2, q, d) : r.Floats(DType.F32, -1, 1, q, d),
                ["db"] = ints ? Integers(r, -2, 2, n, d) : r.Floats(DType.F32, -1, 1, n, d),
            };
            cases.Add(($"{m} Q{q} N{n} D{d} k{k}{(ints ? " integer ties" : "")}", new OpCall(inputs, P("k", S(k), "metric", m))));
        }
        return cases;
    }
}
