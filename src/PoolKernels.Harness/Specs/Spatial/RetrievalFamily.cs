using PoolKernels.Verification;
using static PoolKernels.Verification.SpatialFamily;

namespace PoolKernels.Verification;

/// <summary>similarity_topk and rerank_refine in the registry.</summary>
internal sealed class RetrievalFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("similarity_topk", RunTopk, TopkCases)
        {
            BenchCases = OpBenches.SimilarityTopk,
            Prepare = OpBenches.PrepareSimilarityTopk
        };
        yield return new OpSpec("rerank_refine", RunRerank, RerankCases, Rtol: 1e-4, Atol: 1e-4)
        {
            BenchCases = OpBenches.RerankRefine,
            Prepare = OpBenches.PrepareRerankRefine
        };
    }

    private static IReadOnlyDictionary<string, HostTensor> RunTopk(Device d, OpCall c)
    {
        var query = c.Input("query");
        int k = c.Int("k", 10);
        c.CheckSize("k", "index [Q,k] I64 and score [Q,k] F32", 12, query.Shape.Length > 0 ? query.Shape[0] : 1, k);
        var (i, s) = d.SimilarityTopk(query, c.Input("db"), k, Retrieval.ParseMetric(c.Text("metric", "dot")));
        return new Dictionary<string, HostTensor> { ["index"] = i, ["score"] = s };
    }

    private static IReadOnlyDictionary<string, HostTensor> RunRerank(Device d, OpCall c)
    {
        var (o, s) = d.RerankRefine(c.Input("query"), c.Input("db"), c.Int("m", 400), c.Int("k", 9), c.Float("beta", 0.15f));
        return new Dictionary<string, HostTensor> { ["order"] = o, ["scores"] = s };
    }

    private static HostTensor UnitRows(RandomTensors r, int rows, int dim) => r.UnitRows(rows, dim);

    private static IReadOnlyList<(string, OpCall)> RerankCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int Q, int N, int D, int M, int K, string Beta)[] list =
            [(2, 40, 16, 20, 3, "0.15"), (3, 30, 12, 10, 2, "0.3"), (2, 9, 8, 400, 9, "0.15"), (1, 1, 4, 5, 3, "0.15"), (2, 17, 5, 6, 0,
                "0.2"), (1, 12, 6, 4, 9, "0.15")];
        foreach (var (q, n, d, m, k, beta) in list)
        {
            var inputs = new Dictionary<string, HostTensor> { ["query"] = UnitRows(r, q, d), ["db"] = UnitRows(r, n, d) };
            cases.Add(($"Q{q} N{n} D{d} m{m} k{k} beta{beta}", new OpCall(inputs, P("m", S(m), "k", S(k), "beta", beta))));
        }
        return cases;
    }

    /// <summary>Small integers: every dot product is exact in float, so ties are exact and must break by lower index.</summary>
    internal static HostTensor Integers(RandomTensors r, int lo, int hi, params int[] shape)
    {
        var v = new float[Shape.Count(shape)];
        for (int i = 0; i < v.Length; i++) v[i] = r.Rng.Next(lo, hi + 1);
        return HostTensor.From(v, shape);
    }

    private static IReadOnlyList<(string, OpCall)> TopkCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int Q, int N, int D, int K, string M, bool Ints)[] list =
        [
            (3, 50, 16, 5, "dot", false), (4, 64, 24, 10, "cosine", false), (3, 30, 8, 6, "dot", true), (2, 12, 8, 12, "cosine", true),
            (1, 1, 1, 1, "dot", false), (2, 5, 3, 0, "dot", false), (0, 5, 3, 2, "dot", false), (5, 300, 17, 33, "dot", true), (2, 7, 5, 7,
                "dot", false),
        ];
        foreach (var (q, n, d, k, m, ints) in list)
        {
            var inputs = new Dictionary<string, HostTensor>
            {
                ["query"] = ints ? Integers(r, -2, 2, q, d) : r.Floats(DType.F32, -1, 1, q, d),
                ["db"] = ints ? Integers(r, -2, 2, n, d) : r.Floats(DType.F32, -1, 1, n, d),
            };
            cases.Add(($"{m} Q{q} N{n} D{d} k{k}{(ints ? " integer ties" : "")}", new OpCall(inputs, P("k", S(k), "metric", m))));
        }
        // corpora stored as F16 / BF16 / I8 / U8 (an int8-quantized db scores as its integers; I8/U8 rows repeat: exact ties)
        (DType Db, int Q, int N, int D, int K, string M)[] typed =
            [(DType.F16, 3, 50, 16, 5, "dot"), (DType.BF16, 3, 40, 24, 8, "cosine"), (DType.I8, 3, 60, 13, 10, "dot"),
             (DType.U8, 2, 50, 12, 50, "cosine"), (DType.I8, 4, 70, 33, 7, "cosine")];
        foreach (var (dt, q, n, d, k, m) in typed)
        {
            HostTensor db;
            if (dt is DType.I8 or DType.U8)
            {
                var b = new byte[n * d];
                r.Rng.NextBytes(b);
                for (int i = n / 2; i < n; i++) Array.Copy(b, (i - n / 2) * d, b, i * d, d);
                // I8 values in [-64, 63]: the float sums stay exact
                if (dt == DType.I8) for (int i = 0; i < b.Length; i++) b[i] = (byte)(sbyte)((sbyte)b[i] / 2);
                db = new HostTensor(dt, [n, d], b);
            }
            else db = r.Floats(dt, -1, 1, n, d);
            var inputs = new Dictionary<string, HostTensor> { ["query"] = Integers(r, -2, 2, q, d), ["db"] = db };
            cases.Add(($"{m} {dt.Name()} db Q{q} N{n} D{d} k{k}", new OpCall(inputs, P("k", S(k), "metric", m))));
        }
        return cases;
    }
}
