using PoolKernels.Verification;

namespace PoolKernels.Verification;

/// <summary>segment_pool, gather_segment_pool, segment_topk and dual_hypergraph in the registry.</summary>
internal sealed class RaggedFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("segment_pool", (d, c) => Out(d.SegmentPool(c.Input("values"), c.Input("offsets"),
            RaggedPooling.ParseMode(c.Text("mode")))), SegmentCases)
        { BenchCases = OpBenches.SegmentPool, Prepare = OpBenches.PrepareSegmentPool, Tunables = OpBenches.SegmentTunables };
        yield return new OpSpec("gather_segment_pool", (d, c) => Out(d.GatherSegmentPool(c.Input("values"), c.Input("index"),
            c.Input("offsets"),
            c.Optional("weights"), RaggedPooling.ParseMode(c.Text("mode")))), GatherCases)
        { BenchCases = OpBenches.GatherSegmentPool, Prepare = OpBenches.PrepareGatherSegmentPool, Tunables = OpBenches.SegmentTunables };
        yield return new OpSpec("segment_topk", RunTopk, TopkCases)
        {
            BenchCases = OpBenches.SegmentTopk,
            Prepare = OpBenches.PrepareSegmentTopk
        };
        yield return new OpSpec("dual_hypergraph", RunDualHypergraph, HypergraphCases)
        { BenchCases = OpBenches.DualHypergraph }; // no device-tensor overload: the host path is timed
    }

    private static Dictionary<string, HostTensor> Out(HostTensor t) => new() { ["out"] = t };

    /// <summary>The host path sizes its per-node arrays (counts, offsets, hyperedge ids: about three I64 per node and per
    /// edge) by num_nodes, so a crafted num_nodes is bounded before it runs.</summary>
    private static IReadOnlyDictionary<string, HostTensor> RunDualHypergraph(Device d, OpCall c)
    {
        var edges = c.Input("edge_index");
        int nodes = c.Int("num_nodes", -1);
        long e = edges.Shape.Length == 2 ? edges.Shape[1] : 0;
        c.CheckSize("num_nodes", "the per-node and per-edge I64 arrays", 3 * sizeof(long), (long)nodes + e + 1);
        return d.DualHypergraph(edges, nodes, c.Bool("add_loops", true));
    }

    private static IReadOnlyDictionary<string, HostTensor> RunTopk(Device d, OpCall c)
    {
        double? ratio = c.Parameters.ContainsKey("ratio") ? c.Float("ratio", 0) : null;
        int? k = c.Parameters.ContainsKey("k") ? c.Int("k", 0) : null;
        var (ix, oo) = d.SegmentTopk(c.Input("scores"), c.Input("offsets"), ratio, k);
        return new Dictionary<string, HostTensor> { ["index"] = ix, ["out_offsets"] = oo };
    }

    /// <summary>Random segment lengths of the given kinds: 0 even, 1 with empty runs, 2 one huge among empties.</summary>
    internal static long[] RandomOffsets(Random r, int segs, int total, int kind)
    {
        var len = new long[segs];
        if (segs == 0) return [0];
        if (kind == 2) len[r.Next(segs)] = total;
        else
            for (int i = 0; i < total; i++)
            {
                int s = r.Next(segs);
                if (kind == 1 && s % 3 == 1) s = (s + 1) % segs; // every third segment stays empty
                len[s]++;
            }
        var off = new long[segs + 1];
        for (int s = 0; s < segs; s++) off[s + 1] = off[s] + len[s];
        return off;
    }

    private static HostTensor Offsets(long[] off, bool i32) => i32 ? HostTensor.From(off, off.Length).To(DType.I32) : HostTensor.From(off,
        off.Length);

    private static readonly string[] Modes = ["sum", "mean", "max", "min"];

    private static IReadOnlyList<(string, OpCall)> SegmentCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int N, int S, int D, int Kind)[] shapes = [(9, 4, 3, 0), (1, 1, 1, 0), (17, 6, 17, 1), (40, 5, 8, 2), (0, 3, 4, 0), (300, 2, 5, 1),
            (2000, 300, 3, 2), (60, 9, 40, 1)];
        int i = 0;
        foreach (var (n, s, dim, kind) in shapes)
        {
            string mode = Modes[i % 4];
            var values = i == 2 ? r.FloatsWithSpecials(DType.F32, n, dim) : r.Floats(DType.F32, -2, 2, n, dim);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["values"] = values,
                ["offsets"] = Offsets(RandomOffsets(r.Rng, s, n, kind),
                i % 2 == 1)
            };
            cases.Add(($"{mode} [{n},{dim}] S={s} kind={kind}", new OpCall(inputs, new Dictionary<string, string> { ["mode"] = mode })));
            i++;
        }
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> GatherCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int M, int K, int S, int D, int Kind)[] shapes = [(6, 9, 4, 3, 0), (1, 5, 2, 1, 0), (12, 30, 7, 17, 1), (5, 50, 3, 4, 2), (4, 0, 3,
            2, 0), (20, 700, 3, 9, 1), (8, 400, 120, 2, 2)];
        int i = 0;
        foreach (var (m, k, s, dim, kind) in shapes)
        {
            string mode = Modes[(i + 1) % 4];
            var idx = new long[k];
            for (int j = 0; j < k; j++) idx[j] = j % 4 == 3 && j > 0 ? idx[j - 1] : r.Rng.Next(m); // duplicates
            var inputs = new Dictionary<string, HostTensor>
            {
                ["values"] = r.Floats(DType.F32, -2, 2, m, dim),
                ["index"] = i % 2 == 0 ? HostTensor.From(idx, k) : HostTensor.From(idx, k).To(DType.I32),
                ["offsets"] = Offsets(RandomOffsets(r.Rng, s, k, kind), i % 3 == 1),
            };
            if (i % 3 != 2) inputs["weights"] = r.Floats(DType.F32, -1.5f, 1.5f, k);
            cases.Add(($"{mode} M={m} K={k} S={s} D={dim} kind={kind}", new OpCall(inputs, new Dictionary<string,
                string>
            { ["mode"] = mode })));
            i++;
        }
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> TopkCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int N, int S, int Kind, string Param, string Value)[] shapes =
            [(18, 4, 0, "ratio", "0.5"), (17, 5, 1, "k", "3"), (30, 6, 1, "ratio", "0.75"), (50, 7, 2, "k", "4"), (0, 2, 0, "k", "1"), (25,
                3, 0, "ratio", "1"), (200, 40, 1, "ratio", "0.3"),
             // segments of hundreds (simd: quickselect of the kept keys before sorting them), the second with ties
             (1500, 4, 0, "ratio", "0.4"), (3000, 3, 1, "k", "700")];
        int i = 0;
        foreach (var (n, s, kind, p, v) in shapes)
        {
            var sc = new float[n];
            // ties in even cases
            for (int j = 0; j < n; j++) sc[j] = i % 2 == 0 ? r.Rng.Next(-3, 4) * 0.25f : (float)(r.Rng.NextDouble() * 4 - 2);
            if (i == 3 && n > 5) { sc[1] = float.NaN; sc[4] = float.NaN; }
            var inputs = new Dictionary<string, HostTensor>
            {
                ["scores"] = HostTensor.From(sc, n),
                ["offsets"] = Offsets(RandomOffsets(r.Rng, s, n, kind), i % 2 == 1)
            };
            cases.Add(($"{p}={v} N={n} S={s} kind={kind}", new OpCall(inputs, new Dictionary<string, string> { [p] = v })));
            i++;
        }
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> HypergraphCases(int seed)
    {
        var rng = new Random(seed);
        var cases = new List<(string, OpCall)>();
        foreach (var (nodes, edges, loops) in new[] { (6, 7, true), (8, 5, false), (1, 0, true), (10, 20, true), (4, 6, false) })
        {
            var e = new long[2 * edges];
            for (int j = 0; j < edges; j++)
            {
                e[j] = rng.Next(nodes);
                e[edges + j] = j % 5 == 4 ? e[j] : rng.Next(nodes); // some self-loops
            }
            var inputs = new Dictionary<string, HostTensor> { ["edge_index"] = HostTensor.From(e, 2, edges) };
            var ps = new Dictionary<string, string>
            {
                ["num_nodes"] = nodes.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["add_loops"] = loops ? "true" : "false"
            };
            cases.Add(($"V={nodes} E={edges} loops={loops}", new OpCall(inputs, ps)));
        }
        return cases;
    }
}
