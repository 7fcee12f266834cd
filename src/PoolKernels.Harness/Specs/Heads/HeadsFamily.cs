using System.Globalization;
using PoolKernels.Verification;

namespace PoolKernels.Verification;

/// <summary>latent_attention_pool and multi_layer_pool in the registry: a vector's weights (by state-dict name) sit beside
/// its inputs; the runner loads them into a <see cref="PoolingHead"/> on the device and runs it.</summary>
internal sealed class HeadsFamily : IOpFamily
{
    private static readonly HashSet<string> NonWeights = ["hidden", "layers", "attention_mask", "prefix_len", "d_out"];

    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("latent_attention_pool", RunLatent, c => Cases(c, multiLayer: false), Rtol: 5e-4, Atol: 5e-5)
        { BenchCases = d => OpBenches.Heads(d, false), Prepare = (d, c) => OpBenches.PrepareHead(d, c, false) };
        yield return new OpSpec("multi_layer_pool", RunMultiLayer, c => Cases(c, multiLayer: true), Rtol: 5e-4, Atol: 5e-5)
        { BenchCases = d => OpBenches.Heads(d, true), Prepare = (d, c) => OpBenches.PrepareHead(d, c, true) };
        yield return new OpSpec("latent_attention_pool_backward", RunLatentBackward, c => BackwardCases(c, multiLayer: false), Rtol: 1e-3,
            Atol: 1e-4)
        { BenchCases = d => OpBenches.HeadsBackward(d, false), Prepare = (d, c) => OpBenches.PrepareHeadBackward(d, c, false) };
        yield return new OpSpec("multi_layer_pool_backward", RunMultiLayerBackward, c => BackwardCases(c, multiLayer: true), Rtol: 1e-3,
            Atol: 1e-4)
        { BenchCases = d => OpBenches.HeadsBackward(d, true), Prepare = (d, c) => OpBenches.PrepareHeadBackward(d, c, true) };
    }

    private static IReadOnlyDictionary<string, HostTensor> RunLatentBackward(Device d, OpCall c)
    {
        var variant = ParseVariant(c.Text("variant"));
        using var head = PoolingHead.FromTensors(d, Weights(c), c.Int("heads", 0));
        bool normalize = c.Bool("normalize", true);
        return variant == LatentAttentionVariant.Resampler
            ? (c.Optional("prefix_len") is null
                ? head.ResamplerBackward(c.Input("hidden"), c.Optional("attention_mask"), c.Input("d_out"), normalize)
                : throw new ArgumentException("prefix_len applies to the nvembed variant only.", "prefix_len"))
            : head.NvEmbedBackward(c.Input("hidden"), c.Optional("attention_mask"), c.Optional("prefix_len"), c.Input("d_out"), normalize);
    }

    private static IReadOnlyDictionary<string, HostTensor> RunMultiLayerBackward(Device d, OpCall c)
    {
        using var head = PoolingHead.FromTensors(d, Weights(c), c.Int("heads", 0));
        return head.MultiLayerBackward(c.Input("layers"), c.Input("d_out"), c.Bool("normalize", true));
    }

    /// <summary>Small backward cases: resampler with and without a key mask (one row keeps no token), nvembed with
    /// prefix_len (I64 and I32) and a mask, F16/BF16 inputs, normalize on and off, multi_layer with L below pos_emb's rows.</summary>
    private static IReadOnlyList<(string, OpCall)> BackwardCases(int seed, bool multiLayer)
    {
        var r = new RandomTensors(seed + 100);
        // B, N (L), D, R, heads, dh, F, variant, mask (with an empty row), prefix, hidden dtype, normalize
        (int B, int N, int D, int R, int H, int Dh, int F, string Variant, bool Mask, bool Prefix, DType X, bool Norm)[] cases =
        [
            (2, 5, 8, 3, 2, 4, 16, "resampler", false, false, DType.F32, true),
            (3, 6, 12, 4, 3, 4, 12, "resampler", true, false, DType.F32, false),
            (3, 6, 8, 2, 2, 3, 8, "nvembed", true, true, DType.F16, true),
            (2, 4, 9, 3, 1, 5, 9, "nvembed", false, false, DType.BF16, false),
            (2, 7, 10, 3, 2, 5, 10, "nvembed", true, false, DType.F32, true),
            (11, 3, 8, 2, 2, 4, 8, "resampler", true, false, DType.F32, true), // B > 8: two waves of partials
            (0, 4, 8, 3, 2, 4, 8, "resampler", false, false, DType.F32, true),
        ];
        var list = new List<(string, OpCall)>();
        foreach (var c in cases)
        {
            int posRows = multiLayer ? c.N + 1 + list.Count % 2 : 0;
            var inputs = RandomWeights(r, c.D, c.R, c.H, c.Dh, c.F, posRows);
            inputs[multiLayer ? "layers" : "hidden"] = r.Floats(c.X, -2, 2, c.B, c.N, c.D);
            inputs["d_out"] = r.Floats(DType.F32, -1, 1, c.B, c.D);
            var ps = new Dictionary<string, string> { ["heads"] = S(c.H), ["normalize"] = c.Norm ? "true" : "false" };
            if (!multiLayer)
            {
                ps["variant"] = c.Variant;
                if (c.Mask)
                {
                    var m = new long[c.B * c.N];
                    for (int i = 0; i < m.Length; i++) m[i] = r.Rng.Next(4) == 0 ? 0 : 1;
                    for (int t = 0; t < c.N; t++) m[t] = 0; // row 0 keeps no token
                    m[c.N] = 1; // row 1 keeps at least one
                    inputs["attention_mask"] = list.Count % 2 == 0 ? HostTensor.From(m, c.B, c.N)
                        : HostTensor.From(m.Select(v => (byte)v).ToArray(), c.B, c.N);
                }
                if (c.Prefix)
                {
                    var p = new long[c.B];
                    for (int i = 0; i < c.B; i++) p[i] = i % 3;
                    inputs["prefix_len"] = list.Count % 2 == 0 ? HostTensor.From(p, c.B) : HostTensor.From(p, c.B).To(DType.I32);
                }
            }
            string label = multiLayer
                ? $"{c.X.Name()} B{c.B} L{c.N} P{posRows} D{c.D} R{c.R} H{c.H} dh{c.Dh} F{c.F} normalize={c.Norm}"
                : $"{c.Variant} {c.X.Name()} B{c.B} N{c.N} D{c.D} R{c.R} H{c.H} dh{c.Dh} F{c.F} mask={c.Mask} prefix={c.Prefix} "
                    + $"normalize={c.Norm}";
            list.Add((label, new OpCall(inputs, ps)));
        }
        return list;
    }

    private static Dictionary<string, HostTensor> Weights(OpCall c) =>
        c.Inputs.Where(kv => !NonWeights.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);

    /// <summary>Parses the variant parameter: resampler or nvembed.</summary>
    public static LatentAttentionVariant ParseVariant(string text) => text switch
    {
        "resampler" => LatentAttentionVariant.Resampler,
        "nvembed" => LatentAttentionVariant.NvEmbed,
        _ => throw new ArgumentException($"Unknown variant '{text}'; expected resampler or nvembed.", "variant"),
    };

    private static IReadOnlyDictionary<string, HostTensor> RunLatent(Device d, OpCall c)
    {
        var variant = ParseVariant(c.Text("variant"));
        using var head = PoolingHead.FromTensors(d, Weights(c), c.Int("heads", 0));
        bool normalize = c.Bool("normalize", true);
        var o = variant == LatentAttentionVariant.Resampler
            ? (c.Optional("prefix_len") is null ? head.Resampler(c.Input("hidden"), c.Optional("attention_mask"), normalize)
                : throw new ArgumentException("prefix_len applies to the nvembed variant only.", "prefix_len"))
            : head.NvEmbed(c.Input("hidden"), c.Optional("attention_mask"), c.Optional("prefix_len"), normalize);
        return new Dictionary<string, HostTensor> { ["out"] = o };
    }

    private static IReadOnlyDictionary<string, HostTensor> RunMultiLayer(Device d, OpCall c)
    {
        using var head = PoolingHead.FromTensors(d, Weights(c), c.Int("heads", 0));
        return new Dictionary<string, HostTensor> { ["out"] = head.MultiLayer(c.Input("layers"), c.Bool("normalize", true)) };
    }

    private static string S(int x) => x.ToString(CultureInfo.InvariantCulture);

    /// <summary>Random weights of a head: D, R, heads, dh, F, pos_emb rows (0 = none), dtype of the weights.</summary>
    public static Dictionary<string, HostTensor> RandomWeights(RandomTensors r, int d, int rr, int heads, int dh, int f, int posRows,
        DType dt = DType.F32)
    {
        float s = 1f / MathF.Sqrt(d);
        var w = new Dictionary<string, HostTensor>
        {
            [PoolingHead.Latents] = r.Floats(dt, -1, 1, rr, d),
            [PoolingHead.Norm0W] = r.Floats(dt, 0.5f, 1.5f, d),
            [PoolingHead.Norm0B] = r.Floats(dt, -0.2f, 0.2f, d),
            [PoolingHead.NormCtxW] = r.Floats(dt, 0.5f, 1.5f, d),
            [PoolingHead.NormCtxB] = r.Floats(dt, -0.2f, 0.2f, d),
            [PoolingHead.ToQ] = r.Floats(dt, -s, s, heads * dh, d),
            [PoolingHead.ToKv] = r.Floats(dt, -s, s, 2 * heads * dh, d),
            [PoolingHead.ToOut] = r.Floats(dt, -1f / MathF.Sqrt(heads * dh), 1f / MathF.Sqrt(heads * dh), d, heads * dh),
            [PoolingHead.Norm1W] = r.Floats(dt, 0.5f, 1.5f, d),
            [PoolingHead.Norm1B] = r.Floats(dt, -0.2f, 0.2f, d),
            [PoolingHead.Net0W] = r.Floats(dt, -s, s, 2 * f, d),
            [PoolingHead.Net0B] = r.Floats(dt, -0.2f, 0.2f, 2 * f),
            [PoolingHead.Net2W] = r.Floats(dt, -1f / MathF.Sqrt(f), 1f / MathF.Sqrt(f), d, f),
            [PoolingHead.Net2B] = r.Floats(dt, -0.2f, 0.2f, d),
        };
        if (posRows > 0) w[PoolingHead.PosEmb] = r.Floats(dt, -1, 1, posRows, d);
        return w;
    }

    private static IReadOnlyList<(string, OpCall)> Cases(int seed, bool multiLayer)
    {
        var r = new RandomTensors(seed);
        // B, N (L), D, R, heads, dh, F, variant, mask, prefix, weight dtype
        (int B, int N, int D, int R, int H, int Dh, int F, string Variant, bool Mask, bool Prefix, DType W)[] cases =
        [
            (2, 5, 8, 3, 2, 4, 16, "resampler", false, false, DType.F32),
            (3, 7, 17, 5, 3, 5, 11, "resampler", true, false, DType.F32),
            (2, 6, 12, 4, 1, 9, 24, "nvembed", true, true, DType.F16),
            (3, 1, 16, 1, 4, 4, 7, "nvembed", false, false, DType.BF16),
            (1, 17, 20, 6, 2, 10, 40, "nvembed", true, false, DType.F32),
            (2, 3, 33, 2, 3, 11, 33, "resampler", true, false, DType.F32),
            (0, 4, 8, 3, 2, 4, 8, "resampler", false, false, DType.F32),
        ];
        var list = new List<(string, OpCall)>();
        foreach (var c in cases)
        {
            var dt = r.FloatType();
            var inputs = RandomWeights(r, c.D, c.R, c.H, c.Dh, c.F, multiLayer ? c.N + r.Rng.Next(3) : 0, c.W);
            inputs[multiLayer ? "layers" : "hidden"] = r.Floats(dt, -2, 2, c.B, c.N, c.D);
            var ps = new Dictionary<string, string> { ["heads"] = S(c.H), ["normalize"] = list.Count % 3 == 2 ? "false" : "true" };
            if (!multiLayer)
            {
                ps["variant"] = c.Variant;
                if (c.Mask) inputs["attention_mask"] = r.Mask(r.MaskType(), c.B, c.N);
                if (c.Prefix)
                {
                    var p = new long[c.B];
                    for (int i = 0; i < c.B; i++) p[i] = r.Rng.Next(3);
                    inputs["prefix_len"] = list.Count % 2 == 0 ? HostTensor.From(p, c.B) : HostTensor.From(p, c.B).To(DType.I32);
                }
            }
            string label = multiLayer
                ? $"{dt.Name()} B{c.B} L{c.N} D{c.D} R{c.R} H{c.H} dh{c.Dh} F{c.F} w{c.W.Name()}"
                : $"{c.Variant} {dt.Name()} B{c.B} N{c.N} D{c.D} R{c.R} H{c.H} dh{c.Dh} F{c.F} mask={c.Mask} prefix={c.Prefix} "
                    + $"w{c.W.Name()}";
            list.Add((label, new OpCall(inputs, ps)));
        }
        return list;
    }
}
