using PoolKernels.Verification;
using static PoolKernels.Verification.SpatialFamily;

namespace PoolKernels.Verification;

/// <summary>regional_gem, scale_gem, mask_pool and spatiotemporal_pool in the registry.</summary>
internal sealed class RegionFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("regional_gem", (d, c) => Out(d.RegionalGem(c.Input("x"), c.Float("p", 2.5f), c.Int("kernel", 5))),
            RegionalGemCases)
        { BenchCases = OpBenches.RegionalGem, Prepare = OpBenches.PrepareRegionalGem };
        yield return new OpSpec("scale_gem", (d, c) => Out(d.ScaleGem(c.Input("x"), c.Float("p", float.PositiveInfinity))),
            ScaleGemCases)
        { BenchCases = OpBenches.ScaleGem, Prepare = OpBenches.PrepareScaleGem };
        yield return new OpSpec("mask_pool", (d, c) => Out(d.MaskPool(c.Input("x"), c.Input("masks"),
            SpatialPooling.ParseMaskType(c.Text("mask_type", "binary_logits")),
            c.Float("threshold", 0.5f), c.Float("eps", 1e-8f))), MaskPoolCases)
        { BenchCases = OpBenches.MaskPool, Prepare = OpBenches.PrepareMaskPool };
        yield return new OpSpec("spatiotemporal_pool", RunSpatioTemporal, SpatioTemporalCases)
        {
            BenchCases = OpBenches.SpatioTemporal,
            Prepare = OpBenches.PrepareSpatioTemporal
        };
    }

    private static IReadOnlyDictionary<string, HostTensor> RunSpatioTemporal(Device d, OpCall c)
    {
        var (o, r) = d.SpatioTemporalPool(c.Input("x"), c.Optional("region_masks"));
        var result = new Dictionary<string, HostTensor> { ["out"] = o };
        if (r is not null) result["regions"] = r;
        return result;
    }

    private static IReadOnlyList<(string, OpCall)> RegionalGemCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int[] S, string P, string K)[] list = [([2, 3, 7, 8], "2.5", "5"), ([1, 2, 6, 5], "3", "3"), ([1, 4, 9, 9], "4.6", "5"), ([2, 2, 1,
            1], "2", "1"), ([1, 1, 3, 17], "1", "3"), ([0, 2, 4, 4], "2.5", "5"),
            // simd: 21 channels = a whole group of 16 lanes and one of 5, H·W = 63 (a transpose tail); a plane of 65×64 >
            // RegionalGemSimd.LanePlane takes the per-plane path
            ([2, 21, 7, 9], "2.5", "5"), ([1, 2, 65, 64], "3", "3")];
        foreach (var (s, p, k) in list)
            cases.Add(($"p{p} k{k} {Shape.Format(s)}", new OpCall(new Dictionary<string, HostTensor>
            {
                ["x"] = r.Floats(DType.F32, -1, 2,
                s)
            }, P("p", p, "kernel", k))));
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> ScaleGemCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int[] S, string P)[] list = [([3, 2, 16], "inf"), ([4, 2, 8], "3"), ([3, 3, 12], "4.6"), ([1, 1, 1], "3"), ([2, 3, 17], "inf"),
            ([0, 2, 4], "3"), ([5, 2, 300], "2"), ([2, 3, 37], "3")];
        foreach (var (s, p) in list)
            cases.Add(($"p{p} {Shape.Format(s)}", new OpCall(new Dictionary<string, HostTensor> { ["x"] = r.Floats(DType.F32, -1, 2, s) },
                P("p", p))));
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> MaskPoolCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int[] X, int Q, int MH, int MW, string T)[] list =
        [
            ([2, 4, 6, 6], 3, 6, 6, "binary_logits"), ([2, 5, 8, 8], 3, 4, 4, "soft"), ([1, 6, 6, 8], 5, 12, 16, "gated"),
            ([2, 3, 7, 5], 2, 4, 3, "sigmoid_normalized"), ([1, 4, 9, 7], 3, 5, 6, "binary_logits"), ([1, 17, 1, 1], 2, 3, 3, "soft"), ([1,
                3, 4, 4], 6, 4, 4, "gated"),
            ([1, 5, 33, 40], 18, 11, 13, "soft"), // > 1024 cells: several accumulation chunks; 18 masks: two mask blocks
        ];
        int i = 0;
        foreach (var (x, q, mh, mw, t) in list)
        {
            var masks = r.Floats(DType.F32, t == "soft" ? 0 : -2, t == "soft" ? 1 : 2, x[0], q, mh, mw);
            if (i == 6) masks.AsSpan<float>()[..(mh * mw)].Fill(-1f); // an empty mask: weights all 0
            var ps = P("mask_type", t, "threshold", "0.5", "eps", t == "sigmoid_normalized" || i == 6 ? "0" : "1e-8");
            cases.Add(($"{t} x{Shape.Format(x)} masks [{x[0]},{q},{mh},{mw}]", new OpCall(new Dictionary<string,
                HostTensor>
            { ["x"] = r.Floats(DType.F32, -2, 2, x), ["masks"] = masks }, ps)));
            i++;
        }
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> SpatioTemporalCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int[] X, int R)[] list = [([2, 4, 9, 16], 0), ([2, 3, 6, 8], 3), ([1, 5, 4, 12], 2), ([1, 1, 1, 1], 1), ([2, 2, 3, 300], 2), ([1,
            0, 3, 4], 0)];
        foreach (var (x, rc) in list)
        {
            var inputs = new Dictionary<string, HostTensor> { ["x"] = r.Floats(DType.F32, -2, 2, x) };
            if (rc > 0)
            {
                var m = r.Mask(r.MaskType(), x[0] * rc, x[1] * x[2]);
                inputs["region_masks"] = new HostTensor(m.DType, [x[0], rc, x[1], x[2]], m.Data);
            }
            cases.Add(($"x{Shape.Format(x)} R={rc}", new OpCall(inputs, P())));
        }
        return cases;
    }
}
