using System.Globalization;
using PoolKernels.Kernels.Spatial;
using PoolKernels.Verification;
using static PoolKernels.SpatialArgs;

namespace PoolKernels.Verification;

/// <summary>Spatial and region pooling in the registry: names, parameters and outputs exactly as docs/operations.md.</summary>
internal sealed class SpatialFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("spatial_pool", RunSpatialPool, SpatialPoolCases)
        {
            BenchCases = OpBenches.SpatialPool,
            Prepare = OpBenches.PrepareSpatialPool
        };
        yield return new OpSpec("spatial_pool_backward", RunSpatialPoolBackward, SpatialPoolBackwardCases, Rtol: 1e-3, Atol: 1e-5)
        {
            BenchCases = SpatialPoolBackwardBench,
            Prepare = PrepareSpatialPoolBackward,
        };
        yield return new OpSpec("pool2d", RunPool2d, Pool2dCases)
        {
            BenchCases = OpBenches.Pool2d,
            Prepare = OpBenches.PreparePool2d,
            Tunables = OpBenches.Pool2dTunables
        };
        yield return new OpSpec("adaptive_pool2d", RunAdaptive, AdaptiveCases)
        {
            BenchCases = OpBenches.AdaptivePool2d,
            Prepare = OpBenches.PrepareAdaptivePool2d
        };
        yield return new OpSpec("spp", RunSpp, SppCases) { BenchCases = OpBenches.Spp, Prepare = OpBenches.PrepareSpp };
    }

    internal static Dictionary<string, HostTensor> Out(HostTensor t) => new() { ["out"] = t };
    internal static Dictionary<string, string> P(params string[] kv)
    {
        var d = new Dictionary<string, string>();
        for (int i = 0; i + 1 < kv.Length; i += 2) d[kv[i]] = kv[i + 1];
        return d;
    }
    internal static string S(int v) => v.ToString(CultureInfo.InvariantCulture);

    private static IReadOnlyDictionary<string, HostTensor> RunSpatialPool(Device d, OpCall c) =>
        Out(d.SpatialPool(c.Input("x"), SpatialOptionsOf(c), c.Optional("valid")));

    private static SpatialPoolOptions SpatialOptionsOf(OpCall c) => new()
    {
        Mode = SpatialPoolOptions.ParseMode(c.Text("mode", "avg")),
        P = c.Float("p", 3f),
        Eps = c.Float("eps", 1e-6f),
        Normalize = c.Bool("normalize", false),
        Nhwc = SpatialPoolOptions.ParseLayout(c.Text("layout", "nchw")),
        PGroups = SequenceFamily.PGroups(c),
    };

    private static IReadOnlyDictionary<string, HostTensor> RunSpatialPoolBackward(Device d, OpCall c)
    {
        var (dx, dp) = d.SpatialPoolBackward(c.Input("x"), c.Input("d_out"), SpatialOptionsOf(c), c.Optional("valid"));
        var r = new Dictionary<string, HostTensor> { ["d_x"] = dx };
        if (dp is not null) r["d_p_groups"] = dp;
        return r;
    }

    /// <summary>The forward's randomized cases (avg, max, gem; NCHW and NHWC; valid masks of every dtype with empty, full
    /// and partial rows; p, normalize, Group GeM) without its NaN/inf inputs, each with a random d_out [B,C]; plus max and
    /// gem over tied values (from {-1, 0, 1}) with a valid mask whose first row is all invalid.</summary>
    private static IReadOnlyList<(string, OpCall)> SpatialPoolBackwardCases(int seed)
    {
        var r = new RandomTensors(seed + 101);
        var cases = new List<(string, OpCall)>();
        foreach (var (label, call) in SpatialPoolCases(seed))
            if (!label.Contains("nan/inf", StringComparison.Ordinal) && AllFinite(call.Input("x")))
                cases.Add((label, WithDOut(r, call)));
        foreach (var (mode, nhwc) in new[] { ("max", false), ("max", true), ("gem", false) })
        {
            const int b = 3, ch = 5, h = 3, w = 4;
            var x = new float[b * ch * h * w];
            for (int i = 0; i < x.Length; i++) x[i] = r.Rng.Next(3) - 1;
            var valid = new bool[b * h * w];
            for (int i = h * w; i < valid.Length; i++) valid[i] = r.Rng.Next(4) != 0;
            var inputs = new Dictionary<string, HostTensor>
            {
                ["x"] = HostTensor.From(x, nhwc ? [b, h, w, ch] : [b, ch, h, w]),
                ["valid"] = HostTensor.From(valid, b, h, w),
            };
            var call = new OpCall(inputs, P("mode", mode, "layout", nhwc ? "nhwc" : "nchw", "normalize", mode == "gem" ? "true" : "false"));
            cases.Add(($"{mode} {(nhwc ? "nhwc" : "nchw")} ties, an all-invalid row", WithDOut(r, call)));
        }
        return cases;
    }

    /// <summary>False when an F32 tensor holds NaN or ±inf (the gradients' NaN propagation is not part of the contract).</summary>
    internal static bool AllFinite(HostTensor t) => t.DType != DType.F32 || !HasNonFinite(t.AsSpan<float>());

    private static bool HasNonFinite(ReadOnlySpan<float> v)
    {
        foreach (float f in v) if (!float.IsFinite(f)) return true;
        return false;
    }

    /// <summary>The call with a random d_out [B,C] added.</summary>
    private static OpCall WithDOut(RandomTensors r, OpCall call)
    {
        var x = call.Input("x");
        int ch = SpatialOptionsOf(call).Nhwc ? x.Shape[3] : x.Shape[1];
        var inputs = new Dictionary<string, HostTensor>(call.Inputs) { ["d_out"] = r.Floats(DType.F32, -1, 1, x.Shape[0], ch) };
        return new OpCall(inputs, call.Parameters);
    }

    /// <summary>The gradient of GeM + normalize over [B,C,H,W] F32 (ResNet's last stage): bytes = x read twice, d_x written.</summary>
    private static IReadOnlyList<BenchCase> SpatialPoolBackwardBench(Device d)
    {
        var r = new RandomTensors(10);
        (int B, int C, int H) = d.Id == "ilgpu-cpu" ? (2, 16, 4) : (64, 2048, 7);
        var inputs = new Dictionary<string, HostTensor>
        {
            ["x"] = r.Floats(DType.F32, 0, 2, B, C, H, H),
            ["d_out"] = r.Floats(DType.F32, -1, 1, B, C),
        };
        var call = new OpCall(inputs, P("mode", "gem", "normalize", "true"));
        return [new BenchCase($"[{B},{C},{H},{H}] gem+normalize", H * H, call, 3 * 4.0 * B * C * H * H, 8.0 * B * C * H * H, "")];
    }

    private static PreparedCall PrepareSpatialPoolBackward(Device d, OpCall c)
    {
        var x = c.Input("x");
        var options = SpatialOptionsOf(c);
        var xd = d.Upload(x);
        var go = d.Upload(c.Input("d_out"));
        var v = c.Optional("valid") is { } vt ? d.Upload(vt) : null;
        var dx = d.Allocate(DType.F32, x.ShapeArray);
        var dp = options.PGroupsArray.Length == 0 ? null : d.Allocate(DType.F32, options.PGroupsArray.Length);
        var owned = new List<IDisposable> { xd, go, dx };
        if (v is not null) owned.Add(v);
        if (dp is not null) owned.Add(dp);
        return new PreparedCall(() => d.SpatialPoolBackward(xd, go, dx, options, v, dp), [.. owned]);
    }

    internal static Pool2dOptions Pool2dOptionsOf(OpCall c)
    {
        var kernel = Pair(c.Text("kernel"), "kernel");
        return new Pool2dOptions
        {
            Mode = Pool2dOptions.ParseMode(c.Text("mode", "max")),
            Kernel = kernel,
            Stride = c.Parameters.TryGetValue("stride", out var s) && s is not ("" or "none") ? Pair(s, "stride") : null,
            Padding = Pair(c.Text("padding", "0"), "padding"),
            Dilation = Pair(c.Text("dilation", "1"), "dilation"),
            CeilMode = c.Bool("ceil_mode", false),
            CountIncludePad = c.Bool("count_include_pad", true),
            P = c.Float("p", 2f),
            PaddingMode = c.Text("padding_mode", "zeros"),
        };
    }

    private static IReadOnlyDictionary<string, HostTensor> RunPool2d(Device d, OpCall c) => Out(d.Pool2d(c.Input("x"), Pool2dOptionsOf(c)));

    private static Pool2dMode AdaptiveModeOf(string m) => m switch
    {
        "avg" or "mean" => Pool2dMode.Avg,
        "max" => Pool2dMode.Max,
        _ => throw new ArgumentException($"Unknown mode '{m}'; expected avg or max.", "mode"),
    };

    private static IReadOnlyDictionary<string, HostTensor> RunAdaptive(Device d, OpCall c)
    {
        var x = c.Input("x");
        var size = Pair(c.Text("output_size"), "output_size");
        if (x.Shape.Length == 4) c.CheckSize("output_size", "the F32 output [B,C,oh,ow]", 4, x.Shape[0], x.Shape[1], size.H, size.W);
        return Out(d.AdaptivePool2d(x, AdaptiveModeOf(c.Text("mode", "avg")), size));
    }

    private static IReadOnlyDictionary<string, HostTensor> RunSpp(Device d, OpCall c)
    {
        var x = c.Input("x");
        var levels = List(c.Text("levels", "1,2,4"), "levels");
        if (x.Shape.Length == 4)
            c.CheckSize("levels", "the F32 output [B, C·Σl²]", 4, x.Shape[0], x.Shape[1], (long)levels.Sum(l => (double)l * l));
        return Out(d.Spp(x, levels, AdaptiveModeOf(c.Text("mode", "max"))));
    }

    private static IReadOnlyList<(string, OpCall)> SpatialPoolCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int B, int C, int H, int W)[] shapes = [(2, 3, 5, 7), (1, 17, 1, 1), (3, 40, 3, 3), (2, 5, 4, 6), (0, 3, 2, 2), (2, 300, 2, 3), (2,
            4, 0, 3), (2, 5, 7, 7), (3, 4, 7, 7)];
        string[] modes = ["avg", "max", "gem"];
        int i = 0;
        foreach (var (b, ch, h, w) in shapes)
        {
            string mode = modes[i % 3];
            bool nhwc = i % 2 == 1;
            int[] shape = nhwc ? [b, h, w, ch] : [b, ch, h, w];
            var x = i is 3 or 8 ? r.FloatsWithSpecials(DType.F32, shape) : r.Floats(DType.F32, -1, 2, shape);
            var inputs = new Dictionary<string, HostTensor> { ["x"] = x };
            if (i % 3 != 2 && b > 0) inputs["valid"] = r.Mask(r.MaskType(), b, h * w) is var m ? new HostTensor(m.DType, [b, h, w],
                m.Data) : null!;
            var ps = P("mode", mode, "p", i % 2 == 0 ? "3" : "4.6", "eps", "1e-6", "normalize", i % 2 == 0 ? "true" : "false", "layout",
                nhwc ? "nhwc" : "nchw");
            cases.Add(($"{mode} {(nhwc ? "nhwc" : "nchw")} [{b},{ch},{h},{w}]{(inputs.ContainsKey("valid") ? " valid" : "")}",
                new OpCall(inputs, ps)));
            i++;
        }
        GroupGemCases(r, cases);
        return cases;
    }

    /// <summary>Group GeM (p_groups [G], G dividing C) on gem: G = 1, G = C, divisors; NCHW planes (the fused p = 2/3 path
    /// per plane with [3, 2]) and NHWC channel blocks inside one group (C = 512, G = 2) or across groups (C = 300, G = 3);
    /// valid masks, normalize, NaN/inf; and an avg call that ignores p_groups.</summary>
    private static void GroupGemCases(RandomTensors r, List<(string, OpCall)> cases)
    {
        (int B, int C, int H, int W, int G, bool Nhwc, bool Valid, string Mode)[] list =
        [
            (2, 6, 3, 4, 3, false, false, "gem"), (2, 12, 3, 3, 12, true, true, "gem"), (1, 300, 2, 2, 3, true, false, "gem"),
            (2, 4, 7, 7, 2, false, false, "gem"), (2, 512, 1, 2, 2, true, true, "gem"), (3, 5, 2, 3, 1, false, true, "gem"),
            (2, 8, 3, 3, 4, true, false, "gem"), (2, 6, 2, 2, 2, false, false, "avg"),
        ];
        int i = 0;
        foreach (var (b, ch, h, w, g, nhwc, valid, mode) in list)
        {
            int[] shape = nhwc ? [b, h, w, ch] : [b, ch, h, w];
            bool specials = i == 6;
            var x = specials ? r.FloatsWithSpecials(DType.F32, shape) : r.Floats(DType.F32, -1, 2, shape);
            var pg = ch is 4 or 512 ? HostTensor.From(new[] { 3f, ch == 4 ? 2f : 2.5f }, 2) : r.Floats(DType.F32, 0.5f, 5f, g);
            var inputs = new Dictionary<string, HostTensor> { ["x"] = x, ["p_groups"] = pg };
            if (valid) inputs["valid"] = r.Mask(r.MaskType(), b, h * w) is var m ? new HostTensor(m.DType, [b, h, w], m.Data) : null!;
            var ps = P("mode", mode, "p", "3", "eps", "1e-6", "normalize", i % 2 == 0 ? "true" : "false", "layout", nhwc ? "nhwc" : "nchw");
            string name = $"{mode} p_groups G={g} {(nhwc ? "nhwc" : "nchw")} [{b},{ch},{h},{w}]";
            cases.Add(($"{name}{(valid ? " valid" : "")}{(specials ? " nan/inf" : "")}", new OpCall(inputs, ps)));
            i++;
        }
    }

    private static IReadOnlyList<(string, OpCall)> Pool2dCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        // (shape, mode, kernel, stride, padding, dilation, ceil, count_include_pad, padding_mode)
        (int[] S, string Mode, string K, string St, string Pd, string D, bool Ceil, bool Cip, string Pm)[] list =
        [
            ([2, 3, 7, 9], "max", "3", "2", "1", "1", false, true, "zeros"),
            ([1, 2, 6, 5], "max", "3", "2", "1", "2", true, true, "zeros"),
            ([2, 2, 5, 5], "avg", "3", "2", "1", "1", true, false, "zeros"),
            ([2, 2, 5, 4], "avg", "2,3", "2,1", "1,1", "1", true, true, "zeros"),
            ([1, 3, 4, 4], "min", "2", "1", "1", "1", false, true, "zeros"),
            ([1, 2, 5, 6], "lp", "3,2", "2", "0", "1", false, true, "zeros"),
            ([2, 2, 4, 5], "avg", "3", "1", "2,1", "1", false, true, "reflect"),
            ([1, 2, 3, 3], "max", "3", "2", "2", "1", true, true, "replicate"),
            ([1, 1, 1, 1], "max", "1", "1", "0", "1", false, true, "zeros"),
            ([1, 2, 1, 1], "avg", "3", "1", "1", "1", true, false, "zeros"),
            ([2, 3, 17, 3], "min", "3", "3", "1", "1", true, true, "replicate"),
            ([1, 1, 8, 8], "max", "3", "2", "1", "1", false, true, "zeros"),
            ([2, 2, 7, 9], "max", "3", "2", "1", "1", true, true, "zeros"),
            ([1, 3, 5, 11], "min", "2,3", "1,2", "1,1", "1", true, true, "zeros"),
            // wide enough for the one-pass stride-2 path (16 outputs per step) and its scalar edges; the first with NaN/inf
            ([2, 3, 9, 70], "max", "3", "2", "1", "1", false, true, "zeros"),
            ([1, 2, 6, 50], "min", "3,2", "2", "0", "1", true, true, "zeros"),
            ([1, 2, 5, 41], "max", "2,3", "3,2", "0,1", "1", true, true, "zeros"),
        ];
        int i = 0;
        foreach (var (shape, mode, k, st, pd, dil, ceil, cip, pm) in list)
        {
            var x = i == 11 || i == 14 ? r.FloatsWithSpecials(DType.F32, shape) : r.Floats(DType.F32, mode == "lp" ? 0.1f : -2, 2, shape);
            var ps = P("mode", mode, "kernel", k, "stride", st, "padding", pd, "dilation", dil, "ceil_mode", ceil ? "true" : "false",
                "count_include_pad", cip ? "true" : "false", "padding_mode", pm, "p", i % 2 == 0 ? "2" : "3");
            cases.Add(($"{mode} k{k} s{st} p{pd} d{dil} ceil={ceil} cip={cip} {pm} {Shape.Format(shape)}", new OpCall(new Dictionary<string,
                HostTensor>
            { ["x"] = x }, ps)));
            i++;
        }
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> AdaptiveCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int[] S, string Mode, string Os)[] list = [([2, 3, 7, 9], "avg", "3,4"), ([1, 2, 5, 5], "max", "7,7"), ([2, 2, 1, 1], "avg",
            "2,3"), ([1, 3, 17, 4], "max", "5,1"), ([0, 2, 3, 3], "avg", "2,2"),
            // simd: 21 channels (a group of 16 lanes and one of 5), 17 bins (a transpose tail); a 65×64 plane (per-plane path)
            ([2, 21, 11, 6], "max", "17,1"), ([1, 21, 9, 13], "avg", "4,5"), ([1, 2, 65, 64], "avg", "3,3")];
        foreach (var (shape, mode, os) in list)
            cases.Add(($"{mode} {Shape.Format(shape)} -> {os}", new OpCall(new Dictionary<string, HostTensor>
            {
                ["x"] = r.Floats(DType.F32,
                -2, 2, shape)
            }, P("mode", mode, "output_size", os))));
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> SppCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int[] S, string Mode, string L)[] list = [([2, 3, 8, 8], "max", "1,2,4"), ([1, 2, 7, 5], "avg", "3,1"), ([2, 2, 1, 1], "max",
            "1,2"), ([1, 4, 9, 6], "max", "4,2,1"),
            ([2, 21, 13, 13], "max", "1,2,4"), ([1, 18, 6, 7], "avg", "1,3")];
        foreach (var (shape, mode, l) in list)
            cases.Add(($"{mode} {Shape.Format(shape)} levels {l}", new OpCall(new Dictionary<string,
                HostTensor>
            { ["x"] = r.Floats(DType.F32, -2, 2, shape) }, P("mode", mode, "levels", l))));
        return cases;
    }
}
