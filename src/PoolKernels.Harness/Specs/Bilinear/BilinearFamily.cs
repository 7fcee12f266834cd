using System.Globalization;
using PoolKernels.Kernels.Bilinear;
using PoolKernels.Verification;

namespace PoolKernels.Verification;

/// <summary>bilinear_pool, mfb_pool, mfh_pool and compact_bilinear_pool in the registry. The signed square root turns
/// float rounding near 0 (~1e-7 of the largest term) into ~3e-4 absolute, so cases that use it get atol 3e-4.</summary>
internal sealed class BilinearFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("bilinear_pool", (d, c) => Out(d.BilinearPool(c.Input("x"), c.Optional("y"), c.Optional("mask"),
            c.Bool("signed_sqrt", true), c.Bool("normalize", true))), BilinearCases, 1e-4, 3e-4)
        { BenchCases = OpBenches.BilinearPool, Prepare = OpBenches.PrepareBilinearPool };
        yield return new OpSpec("mfb_pool", (d, c) => Out(d.MfbPool(c.Input("x"), c.Input("y"), Weights(c, ""), Options(c))),
            c => MfbCases(c, false), 1e-4, 3e-4)
        { BenchCases = d => OpBenches.Mfb(d, false), Prepare = OpBenches.PrepareMfb };
        yield return new OpSpec("mfh_pool", (d, c) => Out(d.MfhPool(c.Input("x"), c.Input("y"), Weights(c, "1"), Weights(c, "2"),
            Options(c))), c => MfbCases(c, true), 1e-4, 3e-4)
        { BenchCases = d => OpBenches.Mfb(d, true), Prepare = OpBenches.PrepareMfh };
        yield return new OpSpec("compact_bilinear_pool", RunCompact, McbCases, 1e-4, 3e-4)
        { BenchCases = OpBenches.CompactBilinear, Prepare = OpBenches.PrepareCompactBilinear };
    }

    private static Dictionary<string, HostTensor> Out(HostTensor t) => new() { ["out"] = t };

    private static IReadOnlyDictionary<string, HostTensor> RunCompact(Device d, OpCall c)
    {
        var x = c.Input("x");
        int dim = c.Int("d", 0);
        c.CheckSize("d", "the F32 output [B,d]", 4, x.Shape.Length > 0 ? x.Shape[0] : 1, dim);
        return Out(d.CompactBilinearPool(x, c.Input("y"), c.Input("hx"), c.Input("sx"), c.Input("hy"), c.Input("sy"), dim,
            c.Bool("signed_sqrt", false), c.Bool("normalize", false)));
    }

    private static MfbWeights<HostTensor> Weights(OpCall c, string sfx) => new(c.Input("wx" + sfx), c.Input("bx" + sfx),
        c.Input("wy" + sfx), c.Input("by" + sfx));

    private static MfbOptions Options(OpCall c) => new()
    {
        K = c.Int("k", 5),
        Activation = MfbOptions.ParseActivation(c.Text("activation", "none")),
        SignedSqrt = c.Bool("signed_sqrt", true),
        Normalize = c.Bool("normalize", true),
    };

    private static string B(bool v) => v ? "true" : "false";

    private static IReadOnlyList<(string, OpCall)> BilinearCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int B, int N, int Dx, int Dy, bool Self, bool Mask, bool Sqrt, bool Norm)[] shapes =
            [(2, 5, 4, 3, false, true, true, true), (1, 1, 1, 1, true, false, false, false), (3, 7, 8, 0, true, true, true, true), (2, 4,
                17, 5, false, false, false, false),
             (0, 3, 2, 2, false, false, true, true), (2, 9, 3, 33, false, true, false, true),
             // the last two: 12 × 32 register tiles + edges
             (2, 11, 25, 70, false, true, true, false), (1, 6, 12, 32, true, false, false, true)];
        foreach (var (b, n, dx, dy, self, mask, sqrt, norm) in shapes)
        {
            var inputs = new Dictionary<string, HostTensor> { ["x"] = r.Floats(DType.F32, -2, 2, b, n, dx) };
            if (!self) inputs["y"] = r.Floats(DType.F32, -2, 2, b, n, dy);
            if (mask) inputs["mask"] = r.Mask(r.MaskType(), b, n);
            cases.Add(($"[{b},{n},{dx}]x{(self ? "self" : dy.ToString(CultureInfo.InvariantCulture))} mask={mask} sqrt={sqrt} norm={norm}",
                new OpCall(inputs, new Dictionary<string, string> { ["signed_sqrt"] = B(sqrt), ["normalize"] = B(norm) })));
        }
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> MfbCases(int seed, bool mfh)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int B, int Dx, int Dy, int O, int K, string Act, bool Sqrt, bool Norm)[] shapes =
            [(2, 10, 14, 6, 3, "relu", true, true), (1, 1, 1, 1, 1, "none", false, false), (3, 17, 5, 4, 5, "tanh", true, true), (2, 9, 11,
                5, 4, "leaky_relu", false, false),
             (0, 3, 3, 2, 2, "none", true, true), (2, 40, 33, 9, 2, "none", false, true),
             (5, 1100, 20, 7, 2, "relu", true, true)]; // the last: more than one k block of the projections' GEMM
        foreach (var (b, dx, dy, o, k, act, sqrt, norm) in shapes)
        {
            float s = 1f / MathF.Sqrt(Math.Max(dx, dy));
            var inputs = new Dictionary<string, HostTensor>
            {
                ["x"] = r.Floats(DType.F32, -1, 1, b, dx),
                ["y"] = r.Floats(DType.F32, -1, 1,
                b, dy)
            };
            foreach (var sfx in mfh ? new[] { "1", "2" } : [""])
            {
                inputs["wx" + sfx] = r.Floats(DType.F32, -s * 2, s * 2, o * k, dx);
                inputs["bx" + sfx] = r.Floats(DType.F32, -0.2f, 0.2f, o * k);
                inputs["wy" + sfx] = r.Floats(DType.F32, -s * 2, s * 2, o * k, dy);
                inputs["by" + sfx] = r.Floats(DType.F32, -0.2f, 0.2f, o * k);
            }
            var ps = new Dictionary<string, string>
            {
                ["k"] = k.ToString(CultureInfo.InvariantCulture),
                ["activation"] = act,
                ["signed_sqrt"] = B(sqrt),
                ["normalize"] = B(norm)
            };
            cases.Add(($"B={b} Dx={dx} Dy={dy} o={o} k={k} {act} sqrt={sqrt} norm={norm}", new OpCall(inputs, ps)));
        }
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> McbCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        // odd d, a prime above the direct radices (67: Bluestein), a power of two, d = 1, and an odd batch
        (int B, int Dx, int Dy, int D, bool Sqrt, bool Norm, bool I32)[] shapes =
            [(2, 16, 12, 64, false, false, false), (3, 20, 24, 17, false, true, true), (1, 5, 7, 1, false, false, false), (3, 9, 30, 67,
                false, false, true),
             (2, 40, 33, 100, false, true, false), (0, 3, 3, 8, false, false, false), (5, 12, 8, 45, false, false, false), (2, 64, 64, 131,
                 false, true, false)];
        foreach (var (b, dx, dy, d, sqrt, norm, i32) in shapes)
        {
            HostTensor Hash(int len)
            {
                var h = new long[len];
                for (int i = 0; i < len; i++) h[i] = r.Rng.Next(d);
                return i32 ? HostTensor.From(h, len).To(DType.I32) : HostTensor.From(h, len);
            }
            HostTensor Sign(int len) => HostTensor.From(Enumerable.Range(0, len).Select(_ => r.Rng.Next(2) == 0 ? -1f : 1f).ToArray(), len);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["x"] = r.Floats(DType.F32, -1, 1, b, dx),
                ["y"] = r.Floats(DType.F32, -1, 1, b, dy),
                ["hx"] = Hash(dx),
                ["sx"] = Sign(dx),
                ["hy"] = Hash(dy),
                ["sy"] = Sign(dy),
            };
            var ps = new Dictionary<string, string>
            {
                ["d"] = d.ToString(CultureInfo.InvariantCulture),
                ["signed_sqrt"] = B(sqrt),
                ["normalize"] = B(norm)
            };
            cases.Add(($"B={b} Dx={dx} Dy={dy} d={d} sqrt={sqrt} norm={norm}", new OpCall(inputs, ps)));
        }
        return cases;
    }
}
