using PoolKernels.Kernels.Sequence;
using PoolKernels.Verification;

namespace PoolKernels.Verification;

/// <summary>sequence_pool and layer_pool in the registry.</summary>
internal sealed class SequenceFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("sequence_pool", RunSequencePool, SequencePoolCases)
        {
            BenchCases = SequencePoolBench,
            Tunables = SequencePoolTunables,
            Prepare = PrepareSequencePool,
        };
        yield return new OpSpec("sequence_pool_backward", RunSequencePoolBackward, SequencePoolBackwardCases, Rtol: 1e-3, Atol: 1e-5)
        {
            BenchCases = SequencePoolBackwardBench,
            Prepare = PrepareSequencePoolBackward,
        };
        yield return new OpSpec("layer_pool", RunLayerPool, LayerPoolCases) { BenchCases = LayerPoolBench, Prepare = PrepareLayerPool };
    }

    private static bool Simulator(Device d) => d.Id == "ilgpu-cpu";

    /// <summary>mean + normalize over [B, T, D] F32 with every token kept, T growing: bytes = the hidden states read.</summary>
    private static IReadOnlyList<BenchCase> SequencePoolBench(Device d)
    {
        var r = new RandomTensors(7);
        (int B, int D, int[] Ts) = Simulator(d) ? (4, 64, new[] { 16, 32, 64 }) : (32, 768, new[] { 64, 128, 256, 512, 1024 });
        return Ts.Select(t =>
        {
            var call = new OpCall(new Dictionary<string, HostTensor>
            {
                ["hidden"] = r.Floats(DType.F32, -1, 1, B, t, D),
                ["attention_mask"] = HostTensor.From(Enumerable.Repeat(1L, B * t).ToArray(), B, t)
            },
                new Dictionary<string, string> { ["mode"] = "mean", ["normalize"] = "true" });
            return new BenchCase($"[{B},{t},{D}] mean+normalize", t, call, 4.0 * B * t * D + 8.0 * B * t, 1.0 * B * t * D,
                Tuning.Bucket(Tuning.Log2Bucket((long)B * t), Tuning.Log2Bucket(D)));
        }).ToList();
    }

    private static IReadOnlyList<TunableParam> SequencePoolTunables(Device d) => d switch
    {
        CpuDevice { Kind: BackendKind.Simd } cpu => [new("block", [SequencePoolSimd.DefaultBlock, 64, 128, 512, 1024]),
            new("threads", [cpu.Pool.Workers, .. Enumerable.Range(1, Math.Max(0, cpu.Pool.Workers - 1))])],
        IlgpuDevice => [new("group", [128, 32, 64, 256])],
        _ => [],
    };

    private static PreparedCall PrepareSequencePool(Device d, OpCall c)
    {
        var hidden = c.Input("hidden");
        var options = Options(c);
        var h = d.Upload(hidden);
        var m = d.Upload(c.Input("attention_mask"));
        var p = c.Optional("prefix_len") is { } pl ? d.Upload(pl) : null;
        var o = d.Allocate(DType.F32, hidden.Shape[0], options.Validate(hidden.Shape[2]));
        return new PreparedCall(() => d.SequencePool(h, m, o, options, p), [h, m, o, .. p is null ? Array.Empty<IDisposable>() : [p]]);
    }

    private static IReadOnlyList<BenchCase> LayerPoolBench(Device d)
    {
        var r = new RandomTensors(8);
        (int L, int B, int D, int[] Ts) = Simulator(d) ? (3, 2, 32, new[] { 8, 16 }) : (13, 8, 384, new[] { 64, 128, 256 });
        return Ts.Select(t =>
        {
            var call = new OpCall(new Dictionary<string, HostTensor>
            {
                ["hidden_states"] = r.Floats(DType.F32, -1, 1, L, B, t, D),
                ["attention_mask"] = HostTensor.From(Enumerable.Repeat(1L, B * t).ToArray(), B, t)
            },
                new Dictionary<string, string> { ["mode"] = "mean", ["layers"] = "all" });
            return new BenchCase($"[{L},{B},{t},{D}] mean", t, call, 4.0 * L * B * t * D, 1.0 * L * B * t * D,
                Tuning.Bucket(Tuning.Log2Bucket((long)B * t), Tuning.Log2Bucket(D)));
        }).ToList();
    }

    private static PreparedCall PrepareLayerPool(Device d, OpCall c)
    {
        var hs = c.Input("hidden_states");
        var mode = SequencePoolOptions.ParseMode(c.Text("mode"));
        var layers = SequencePooling.ParseLayers(c.Text("layers", "all"));
        var h = d.Upload(hs);
        var m = d.Upload(c.Input("attention_mask"));
        var o = d.Allocate(DType.F32, hs.Shape[1], layers?.Length ?? hs.Shape[0], hs.Shape[3]);
        return new PreparedCall(() => d.LayerPool(h, m, o, mode, layers), h, m, o);
    }

    private static SequencePoolOptions Options(OpCall c) =>
        new(SequencePoolOptions.ParseModes(c.Text("mode")))
        {
            P = c.Float("p", 3f),
            Eps = c.Float("eps", 1e-6f),
            Normalize = c.Bool("normalize", false),
            Dims = c.Parameters.TryGetValue("dims", out var dims) && dims is not ("all" or "") ? c.Int("dims", -1) : -1,
            PGroups = PGroups(c),
        };

    /// <summary>The optional Group GeM input p_groups [G] F32 of sequence_pool and spatial_pool as its values; absent = empty
    /// (off). Another rank or dtype is an ArgumentException naming p_groups.</summary>
    internal static float[] PGroups(OpCall c)
    {
        if (c.Optional("p_groups") is not { } t) return [];
        if (t.Shape.Length != 1 || t.DType != DType.F32)
            throw new ArgumentException($"p_groups must be [G] F32, got {Shape.Format(t.Shape)} {t.DType.Name()}.", "p_groups");
        return t.AsSpan<float>().ToArray();
    }

    private static Dictionary<string, HostTensor> Out(HostTensor t) => new() { ["out"] = t };

    private static IReadOnlyDictionary<string, HostTensor> RunSequencePool(Device d, OpCall c) =>
        Out(d.SequencePool(c.Input("hidden"), c.Input("attention_mask"), Options(c), c.Optional("prefix_len")));

    private static IReadOnlyDictionary<string, HostTensor> RunLayerPool(Device d, OpCall c) => Out(d.LayerPool(
        c.Input("hidden_states"), c.Input("attention_mask"), SequencePoolOptions.ParseMode(c.Text("mode")),
        SequencePooling.ParseLayers(c.Text("layers", "all"))));

    private static IReadOnlyList<(string, OpCall)> SequencePoolCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        string[] modeLists = ["mean", "cls,last_token", "max,gem", "weighted_mean,mean_sqrt_len",
            "mean,max,cls,gem,last_token,weighted_mean,mean_sqrt_len"];
        (int B, int T, int D)[] shapes = [(3, 5, 1), (2, 1, 3), (4, 7, 17), (2, 9, 40), (1, 3, 1000), (0, 4, 8), (3, 0, 5)];
        int i = 0;
        foreach (var (b, t, dim) in shapes)
        {
            var dt = r.FloatType();
            string modes = modeLists[i % modeLists.Length];
            bool specials = i == 2;
            var hidden = specials ? r.FloatsWithSpecials(dt, b, t, dim) : r.Floats(dt, -2, 2, b, t, dim);
            var inputs = new Dictionary<string, HostTensor> { ["hidden"] = hidden, ["attention_mask"] = r.Mask(r.MaskType(), b, t) };
            if (i % 2 == 1)
            {
                var pre = new long[b];
                for (int k = 0; k < b; k++) pre[k] = r.Rng.Next(3);
                inputs["prefix_len"] = i % 4 == 1 ? HostTensor.From(pre, b) : HostTensor.From(pre, b).To(DType.I32);
            }
            int full = modes.Split(',').Length * dim;
            var ps = new Dictionary<string, string>
            {
                ["mode"] = modes,
                ["p"] = i % 3 == 0 ? "2.5" : "3",
                ["normalize"] = i % 2 == 0 ? "true" : "false",
                ["dims"] = i == 3 && full > 1 ? (full / 2 + 1).ToString(System.Globalization.CultureInfo.InvariantCulture) : "all",
            };
            cases.Add(($"{modes} {dt.Name()} [{b},{t},{dim}]{(specials ? " nan/inf" : "")}", new OpCall(inputs, ps)));
            i++;
        }
        GroupGemCases(r, cases);
        return cases;
    }

    /// <summary>Group GeM (p_groups [G]): G = 1, G = D, divisors; gem alone and in mode lists (dims, normalize, prefix);
    /// F32, F16 and BF16 hidden. D = 600 with G = 3 has simd feature blocks (256) that straddle groups (per-feature p);
    /// D = 1024 with G = 2 [3, 2] has blocks inside one group each (the plain path with the group's exact p).</summary>
    private static void GroupGemCases(RandomTensors r, List<(string, OpCall)> cases)
    {
        (int B, int T, int D, int G, string Modes, DType Dt, string Dims)[] list =
        [
            (3, 6, 12, 1, "gem", DType.F32, "all"), (2, 5, 7, 7, "gem", DType.F16, "all"), (3, 7, 40, 8, "mean,gem,max", DType.BF16, "100"),
            (2, 9, 600, 3, "gem,cls", DType.F32, "all"), (1, 3, 1024, 2, "gem", DType.F32, "all"),
            (4, 6, 24, 4, "max,gem,last_token", DType.F16, "all"),
        ];
        int i = 0;
        foreach (var (b, t, dim, g, modes, dt, dims) in list)
        {
            bool specials = i == 5;
            var hidden = specials ? r.FloatsWithSpecials(dt, b, t, dim) : r.Floats(dt, -2, 2, b, t, dim);
            var pg = dim == 1024 ? HostTensor.From(new[] { 3f, 2f }, 2) : r.Floats(DType.F32, 0.5f, 5f, g);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["hidden"] = hidden,
                ["attention_mask"] = r.Mask(r.MaskType(), b, t),
                ["p_groups"] = pg,
            };
            if (i % 3 == 2) inputs["prefix_len"] = HostTensor.From(Enumerable.Range(0, b).Select(k => (long)(k % 2)).ToArray(), b);
            var ps = new Dictionary<string, string>
            {
                ["mode"] = modes,
                ["p"] = "3",
                ["normalize"] = i % 2 == 0 ? "true" : "false",
                ["dims"] = dims,
            };
            cases.Add(($"{modes} p_groups G={g} {dt.Name()} [{b},{t},{dim}]{(specials ? " nan/inf" : "")}", new OpCall(inputs, ps)));
            i++;
        }
    }

    private static IReadOnlyDictionary<string, HostTensor> RunSequencePoolBackward(Device d, OpCall c)
    {
        var (dh, dp) = d.SequencePoolBackward(c.Input("hidden"), c.Input("attention_mask"), c.Input("d_out"), Options(c),
            c.Optional("prefix_len"));
        var r = new Dictionary<string, HostTensor> { ["d_hidden"] = dh };
        if (dp is not null) r["d_p_groups"] = dp;
        return r;
    }

    /// <summary>The forward's randomized cases (every mode and mode list, every mask dtype and kind: right, left, ragged,
    /// empty and full rows; prefix_len I64/I32, dims, normalize, p, Group GeM, F16/BF16), without its NaN/inf inputs, each
    /// with a random d_out [B, dims]; plus max ties (values from {-1, 0, 1}) and a prefix longer than every row.</summary>
    private static IReadOnlyList<(string, OpCall)> SequencePoolBackwardCases(int seed)
    {
        var r = new RandomTensors(seed + 101);
        var cases = new List<(string, OpCall)>();
        foreach (var (label, call) in SequencePoolCases(seed))
        {
            if (label.Contains("nan/inf", StringComparison.Ordinal)) continue;
            cases.Add((label, WithDOut(r, call)));
        }
        (int B, int T, int D, string Modes, string Norm, long Prefix)[] extra =
        [
            (3, 8, 5, "max,cls,last_token", "false", 0), (2, 6, 9, "max,mean,gem", "true", 0), (3, 5, 4, "mean,max,gem", "false", 9),
        ];
        foreach (var (b, t, dim, modes, norm, prefix) in extra)
        {
            var h = new float[b * t * dim];
            for (int i = 0; i < h.Length; i++) h[i] = r.Rng.Next(3) - 1;
            var inputs = new Dictionary<string, HostTensor>
            {
                ["hidden"] = HostTensor.From(h, b, t, dim),
                ["attention_mask"] = r.Mask(r.MaskType(), b, t),
            };
            if (prefix > 0) inputs["prefix_len"] = HostTensor.From(Enumerable.Repeat(prefix, b).ToArray(), b);
            var call = new OpCall(inputs, new Dictionary<string, string> { ["mode"] = modes, ["normalize"] = norm });
            cases.Add(($"{modes} ties [{b},{t},{dim}]{(prefix > 0 ? " prefix past every row" : "")}", WithDOut(r, call)));
        }
        return cases;
    }

    /// <summary>The call with a random d_out [B, dims] added.</summary>
    private static OpCall WithDOut(RandomTensors r, OpCall call)
    {
        var hidden = call.Input("hidden");
        int dims = Options(call).Validate(hidden.Shape[2]);
        var inputs = new Dictionary<string, HostTensor>(call.Inputs) { ["d_out"] = r.Floats(DType.F32, -1, 1, hidden.Shape[0], dims) };
        return new OpCall(inputs, call.Parameters);
    }

    /// <summary>The gradient of mean,gem + normalize over [B, T, D] F32 (every token kept): bytes = hidden read twice,
    /// d_hidden written.</summary>
    private static IReadOnlyList<BenchCase> SequencePoolBackwardBench(Device d)
    {
        var r = new RandomTensors(9);
        (int B, int D, int[] Ts) = Simulator(d) ? (2, 32, new[] { 8, 16 }) : (32, 768, new[] { 128, 512 });
        return Ts.Select(t =>
        {
            var inputs = new Dictionary<string, HostTensor>
            {
                ["hidden"] = r.Floats(DType.F32, -1, 1, B, t, D),
                ["attention_mask"] = HostTensor.From(Enumerable.Repeat(1L, B * t).ToArray(), B, t),
                ["d_out"] = r.Floats(DType.F32, -1, 1, B, 2 * D),
            };
            var call = new OpCall(inputs, new Dictionary<string, string> { ["mode"] = "mean,gem", ["normalize"] = "true" });
            return new BenchCase($"[{B},{t},{D}] mean,gem+normalize", t, call, 3 * 4.0 * B * t * D, 8.0 * B * t * D, "");
        }).ToList();
    }

    private static PreparedCall PrepareSequencePoolBackward(Device d, OpCall c)
    {
        var hidden = c.Input("hidden");
        var options = Options(c);
        var h = d.Upload(hidden);
        var m = d.Upload(c.Input("attention_mask"));
        var go = d.Upload(c.Input("d_out"));
        var p = c.Optional("prefix_len") is { } pl ? d.Upload(pl) : null;
        var dh = d.Allocate(DType.F32, hidden.ShapeArray);
        var dp = options.PGroupsArray.Length == 0 ? null : d.Allocate(DType.F32, options.PGroupsArray.Length);
        var owned = new List<IDisposable> { h, m, go, dh };
        if (p is not null) owned.Add(p);
        if (dp is not null) owned.Add(dp);
        return new PreparedCall(() => d.SequencePoolBackward(h, m, go, dh, options, p, dp), [.. owned]);
    }

    private static IReadOnlyList<(string, OpCall)> LayerPoolCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int L, int B, int T, int D, string Mode, string Layers)[] shapes =
            [(3, 2, 5, 3, "mean", "all"), (4, 3, 6, 17, "last_token", "0,2,-1"), (5, 2, 1, 9, "mean", "1..3"), (2, 0, 3, 4, "mean", "all")];
        foreach (var (l, b, t, d, mode, layers) in shapes)
        {
            var dt = r.FloatType();
            var inputs = new Dictionary<string, HostTensor>
            {
                ["hidden_states"] = r.Floats(dt, -2, 2, l, b, t, d),
                ["attention_mask"] = r.Mask(r.MaskType(), b, t)
            };
            cases.Add(($"{mode} {dt.Name()} [{l},{b},{t},{d}] layers={layers}", new OpCall(inputs, new Dictionary<string,
                string>
            { ["mode"] = mode, ["layers"] = layers })));
        }
        return cases;
    }
}
