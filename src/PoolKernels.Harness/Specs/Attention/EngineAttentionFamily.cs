using System.Globalization;

namespace PoolKernels.Verification;

/// <summary>sdpa_paged, kv_cache_write and attention_combine in the registry: their runs (as the vectors call them),
/// randomized cases and bench workloads.</summary>
internal sealed class EngineAttentionFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("sdpa_paged", RunPaged, PagedCases, Rtol: 2e-4, Atol: 2e-5)
        {
            BenchCases = PagedBench,
            Prepare = PreparePaged
        };
        yield return new OpSpec("kv_cache_write", RunWrite, WriteCases, Rtol: 0, Atol: 0)
        {
            BenchCases = WriteBench,
            Prepare = PrepareWrite
        };
        yield return new OpSpec("attention_combine", RunCombine, CombineCases, Rtol: 1e-5, Atol: 1e-6)
        {
            BenchCases = CombineBench,
            Prepare = PrepareCombine,
        };
    }

    private static SdpaOptions PagedOptions(OpCall c) =>
        AttentionFamily.Options(c) with { Causal = SdpaOptions.ParseCausal(c.Text("causal", "bottom_right")) };

    private static IReadOnlyDictionary<string, HostTensor> RunPaged(Device d, OpCall c)
    {
        var (o, l) = d.SdpaPaged(c.Input("q"), c.Input("k_cache"), c.Input("v_cache"), c.Input("block_table"), c.Input("seq_lens"),
            PagedOptions(c));
        return new Dictionary<string, HostTensor> { ["out"] = o, ["lse"] = l };
    }

    /// <summary>Writes into copies of the given caches (the vectors' inputs stay as they are) and returns them.</summary>
    private static IReadOnlyDictionary<string, HostTensor> RunWrite(Device d, OpCall c)
    {
        var k = Copy(c.Input("k_cache")); var v = Copy(c.Input("v_cache"));
        d.KvCacheWrite(c.Input("k_new"), c.Input("v_new"), k, v, c.Input("block_table"), c.Input("seq_lens"));
        return new Dictionary<string, HostTensor> { ["k_cache"] = k, ["v_cache"] = v };
    }

    private static HostTensor Copy(HostTensor t) => new(t.DType, t.ShapeArray, t.Data.ToArray());

    private static IReadOnlyDictionary<string, HostTensor> RunCombine(Device d, OpCall c)
    {
        var (o, l) = d.AttentionCombine(c.Input("outs"), c.Input("lses"));
        return new Dictionary<string, HostTensor> { ["out"] = o, ["lse"] = l };
    }

    private static string S(double x) => x.ToString(CultureInfo.InvariantCulture);

    /// <summary>A random paged cache for sequences of the given lengths: every sequence gets its own pages in a shuffled
    /// order (the table's entries past the pages in use are -1), plus <paramref name="spare"/> unused pages.</summary>
    internal static (HostTensor Table, HostTensor Lens, int Pages) PagedLayout(Random rng, int[] lens, int slots, int spare, bool i64Table,
        bool i64Lens)
    {
        int b = lens.Length;
        int[] need = lens.Select(l => (l + slots - 1) / slots).ToArray();
        int pages = need.Sum() + spare, maxPages = Math.Max(1, need.DefaultIfEmpty(0).Max() + 1);
        var order = Enumerable.Range(0, pages).OrderBy(_ => rng.Next()).ToArray();
        var table = new long[b * maxPages];
        Array.Fill(table, -1L);
        int next = 0;
        for (int i = 0; i < b; i++)
            for (int j = 0; j < need[i]; j++) table[i * maxPages + j] = order[next++];
        var t = HostTensor.From(table, b, maxPages);
        var l = HostTensor.From(lens.Select(x => (long)x).ToArray(), b);
        return (i64Table ? t : t.To(DType.I32), i64Lens ? l : l.To(DType.I32), pages);
    }

    private static IReadOnlyList<(string, OpCall)> PagedCases(int seed)
    {
        var r = new RandomTensors(seed);
        (int[] Lens, int Hq, int Hkv, int Tq, int E, int Ev, int S, string Causal, int Wl, float Cap, bool Alibi, bool Sinks)[] cases =
        [
            ([0, 37, 100], 4, 2, 1, 16, 16, 16, "bottom_right", -1, 0, false, false), // decode, an empty sequence
            ([4096, 13], 8, 1, 1, 8, 8, 7, "bottom_right", -1, 0, false, false),      // decode against 4096 keys, GQA 8:1
            ([5, 9], 2, 2, 5, 8, 4, 1, "bottom_right", -1, 0, false, false),          // prefill, pages of 1 slot
            ([7], 4, 2, 7, 16, 8, 7, "bottom_right", 3, 5, true, true),               // chunked prefill, every modifier
            ([0, 0], 2, 1, 3, 8, 8, 4, "bottom_right", -1, 0, false, true),           // no keys at all: out 0, lse = sink
            ([30, 3], 4, 4, 2, 24, 16, 8, "top_left", 10, 2, true, false),
            ([], 2, 2, 1, 8, 8, 4, "bottom_right", -1, 0, false, false),              // B = 0
            ([40, 19], 4, 2, 20, 16, 16, 7, "bottom_right", -1, 3, true, true),       // Tq·group > 16: the tiled kernel on simd
        ];
        var list = new List<(string, OpCall)>();
        foreach (var c in cases)
        {
            var dt = r.FloatType();
            var (table, lens, pages) = PagedLayout(r.Rng, c.Lens, c.S, 2, r.Rng.Next(2) == 0, r.Rng.Next(2) == 0);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["q"] = r.Floats(dt, -2, 2, c.Lens.Length, c.Hq, c.Tq, c.E),
                ["k_cache"] = r.Floats(dt, -2, 2, pages, c.S, c.Hkv, c.E),
                ["v_cache"] = r.Floats(dt, -2, 2, pages, c.S, c.Hkv, c.Ev),
                ["block_table"] = table,
                ["seq_lens"] = lens,
            };
            var ps = new Dictionary<string, string> { ["causal"] = c.Causal, ["window_left"] = S(c.Wl), ["window_right"] = "-1" };
            if (c.Cap > 0) ps["softcap"] = S(c.Cap);
            if (c.Alibi) inputs["alibi_slopes"] = r.Floats(DType.F32, 0.05f, 1f, c.Hq);
            if (c.Sinks) inputs["sinks"] = r.Floats(DType.F32, -2, 2, c.Hq);
            list.Add(($"{dt.Name()} lens[{string.Join(",", c.Lens)}] Hq{c.Hq}/Hkv{c.Hkv} Tq{c.Tq} E{c.E}/{c.Ev} page {c.S} {c.Causal} "
                + $"wl{c.Wl} "
                + $"softcap={c.Cap} alibi={c.Alibi} sinks={c.Sinks} table {table.DType.Name()} lens {lens.DType.Name()}", new OpCall(inputs,
                    ps)));
        }
        return list;
    }

    private static IReadOnlyList<(string, OpCall)> WriteCases(int seed)
    {
        var r = new RandomTensors(seed);
        (int[] Lens, int Tn, int Hkv, int E, int Ev, int S)[] cases =
        [
            ([0, 15, 16, 40], 1, 2, 8, 8, 16),  // decode: a page boundary, an empty sequence
            ([3, 0], 13, 1, 16, 8, 7),          // prefill across pages of 7
            ([2, 5, 1], 4, 2, 4, 6, 1),         // pages of one slot
            ([4], 0, 2, 8, 8, 4),               // nothing to write
            ([], 3, 2, 8, 8, 4),                // B = 0
        ];
        var list = new List<(string, OpCall)>();
        foreach (var c in cases)
        {
            var dt = r.FloatType();
            var after = c.Lens.Select(l => l + c.Tn).ToArray();
            var (table, lens, pages) = PagedLayout(r.Rng, after, c.S, 1, r.Rng.Next(2) == 0, r.Rng.Next(2) == 0);
            var lensBefore = HostTensor.From(c.Lens.Select(x => (long)x).ToArray(), c.Lens.Length);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["k_new"] = r.Floats(dt, -2, 2, c.Lens.Length, c.Tn, c.Hkv, c.E),
                ["v_new"] = r.Floats(dt, -2, 2, c.Lens.Length, c.Tn, c.Hkv, c.Ev),
                ["k_cache"] = r.Floats(dt, -2, 2, pages, c.S, c.Hkv, c.E),
                ["v_cache"] = r.Floats(dt, -2, 2, pages, c.S, c.Hkv, c.Ev),
                ["block_table"] = table,
                ["seq_lens"] = lens.DType == DType.I64 ? lensBefore : lensBefore.To(DType.I32),
            };
            list.Add(($"{dt.Name()} lens[{string.Join(",", c.Lens)}] Tn{c.Tn} Hkv{c.Hkv} E{c.E}/{c.Ev} page {c.S}", new OpCall(inputs,
                new Dictionary<string, string>())));
        }
        return list;
    }

    private static IReadOnlyList<(string, OpCall)> CombineCases(int seed)
    {
        var r = new RandomTensors(seed);
        int[][] shapes = [[1, 2, 2, 3, 16], [2, 2, 2, 4, 16], [5, 3, 4, 7, 8], [3, 10, 5], [2, 0, 4, 3, 8], [0, 2, 3, 4]];
        var list = new List<(string, OpCall)>();
        foreach (var sh in shapes)
        {
            var outs = r.Floats(DType.F32, -2, 2, sh);
            var lses = r.Floats(DType.F32, -5, 5, sh[..^1]);
            var ls = lses.AsSpan<float>();
            var os = outs.AsSpan<float>();
            int ev = sh[^1];
            for (int i = 0; i < ls.Length; i++)
                if (r.Rng.Next(4) == 0)
                {
                    ls[i] = float.NegativeInfinity; // an empty partial: its out may hold anything
                    for (int d = 0; d < ev; d++) os[i * ev + d] = r.Rng.Next(2) == 0 ? float.NaN : 1e30f;
                }
            list.Add(($"outs {Shape.Format(sh)}", new OpCall(new Dictionary<string, HostTensor> { ["outs"] = outs, ["lses"] = lses },
                new Dictionary<string, string>())));
        }
        return list;
    }

    /// <summary>The issue's decode workload (B 32, Hq 32, Hkv 8, E 128, 4096 keys each, page 16, Tq 1, F32 cache) and a
    /// long single sequence (B 1, 32768 keys); smaller on the ilgpu-cpu simulator. Bytes = the cache bytes that must be read.</summary>
    private static IReadOnlyList<BenchCase> PagedBench(Device d)
    {
        bool sim = d.Id == "ilgpu-cpu";
        (int B, int Len, int Hq, int Hkv, int E)[] shapes = sim ? [(2, 256, 8, 2, 64)] : [(32, 4096, 32, 8, 128), (1, 32768, 32, 8, 128)];
        var list = new List<BenchCase>();
        var rng = new Random(1);
        foreach (var (b, len, hq, hkv, e) in shapes)
        {
            var r = new RandomTensors(2);
            var (table, lens, pages) = PagedLayout(rng, Enumerable.Repeat(len, b).ToArray(), 16, 0, false, false);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["q"] = r.Floats(DType.F32, -1, 1, b, hq, 1, e),
                ["k_cache"] = r.Floats(DType.F32, -1, 1, pages, 16, hkv, e),
                ["v_cache"] = r.Floats(DType.F32, -1, 1, pages, 16, hkv, e),
                ["block_table"] = table,
                ["seq_lens"] = lens,
            };
            double bytes = 2.0 * b * len * hkv * e * 4, flops = 4.0 * b * hq * len * e;
            list.Add(new BenchCase($"decode B{b} Hq{hq}/Hkv{hkv} E{e} keys {len} page 16 F32", (double)b * len,
                new OpCall(inputs, new Dictionary<string, string> { ["causal"] = "bottom_right" }), bytes, flops, ""));
        }
        return list;
    }

    /// <summary>The device-resident decode step: inputs uploaded once, outputs reused.</summary>
    private static PreparedCall PreparePaged(Device d, OpCall c)
    {
        var q = d.Upload(c.Input("q")); var k = d.Upload(c.Input("k_cache")); var v = d.Upload(c.Input("v_cache"));
        var t = d.Upload(c.Input("block_table")); var l = d.Upload(c.Input("seq_lens"));
        var shape = c.Input("q").ShapeArray;
        var o = d.Allocate(DType.F32, shape[0], shape[1], shape[2], c.Input("v_cache").Shape[3]);
        var lse = d.Allocate(DType.F32, shape[0], shape[1], shape[2]);
        var options = PagedOptions(c);
        return new PreparedCall(() => d.SdpaPaged(q, k, v, t, l, o, lse, options), q, k, v, t, l, o, lse);
    }

    /// <summary>A decode step's cache write (Tn = 1 for every sequence of the decode workload) and a prefill chunk.</summary>
    private static IReadOnlyList<BenchCase> WriteBench(Device d)
    {
        bool sim = d.Id == "ilgpu-cpu";
        (int B, int Tn, int Hkv, int E)[] shapes = sim ? [(4, 1, 2, 32), (2, 64, 2, 32)] : [(32, 1, 8, 128), (4, 2048, 8, 128)];
        var list = new List<BenchCase>();
        var rng = new Random(1);
        foreach (var (b, tn, hkv, e) in shapes)
        {
            var r = new RandomTensors(3);
            int before = sim ? 40 : 4000;
            var (table, _, pages) = PagedLayout(rng, Enumerable.Repeat(before + tn, b).ToArray(), 16, 0, false, false);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["k_new"] = r.Floats(DType.F32, -1, 1, b, tn, hkv, e),
                ["v_new"] = r.Floats(DType.F32, -1, 1, b, tn, hkv, e),
                ["k_cache"] = HostTensor.Zeros(DType.F32, pages, 16, hkv, e),
                ["v_cache"] = HostTensor.Zeros(DType.F32, pages, 16, hkv, e),
                ["block_table"] = table,
                ["seq_lens"] = HostTensor.From(Enumerable.Repeat(before, b).ToArray(), b),
            };
            double bytes = 2.0 * 2 * b * tn * hkv * e * 4;
            list.Add(new BenchCase($"write B{b} Tn{tn} Hkv{hkv} E{e} page 16 F32", (double)b * tn, new OpCall(inputs, new Dictionary<string,
                string>()),
                bytes, 0, ""));
        }
        return list;
    }

    private static PreparedCall PrepareWrite(Device d, OpCall c)
    {
        var kn = d.Upload(c.Input("k_new")); var vn = d.Upload(c.Input("v_new")); var kc = d.Upload(c.Input("k_cache"));
        var vc = d.Upload(c.Input("v_cache")); var t = d.Upload(c.Input("block_table")); var l = d.Upload(c.Input("seq_lens"));
        return new PreparedCall(() => d.KvCacheWrite(kn, vn, kc, vc, t, l), kn, vn, kc, vc, t, l);
    }

    /// <summary>Split-KV decode (8 splits of B32 Hq32 Tq1 Ev128) and chunked prefill (4 chunks of B8 H12 T512 Ev64).</summary>
    private static IReadOnlyList<BenchCase> CombineBench(Device d)
    {
        bool sim = d.Id == "ilgpu-cpu";
        int[][] shapes = sim ? [[4, 2, 4, 1, 32], [2, 2, 4, 16, 32]] : [[8, 32, 32, 1, 128], [4, 8, 12, 512, 64]];
        var list = new List<BenchCase>();
        foreach (var sh in shapes)
        {
            var r = new RandomTensors(4);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["outs"] = r.Floats(DType.F32, -1, 1, sh),
                ["lses"] = r.Floats(DType.F32, -3,
                3, sh[..^1])
            };
            double rows = (double)sh[1] * sh[2] * sh[3];
            list.Add(new BenchCase($"combine {Shape.Format(sh)}", rows, new OpCall(inputs, new Dictionary<string, string>()),
                4.0 * rows * (sh[4] + 1) * (sh[0] + 1), 2.0 * rows * sh[4] * sh[0], ""));
        }
        return list;
    }

    private static PreparedCall PrepareCombine(Device d, OpCall c)
    {
        var outs = d.Upload(c.Input("outs")); var lses = d.Upload(c.Input("lses"));
        var o = d.Allocate(DType.F32, c.Input("outs").ShapeArray[1..]); var l = d.Allocate(DType.F32, c.Input("lses").ShapeArray[1..]);
        return new PreparedCall(() => d.AttentionCombine(outs, lses, o, l), outs, lses, o, l);
    }
}
