using System.Globalization;

namespace PoolKernels.Verification;

/// <summary>info_nce and adamw_step in the registry.</summary>
internal sealed class TrainingFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("info_nce", RunInfoNce, InfoNceCases, Rtol: 2e-4, Atol: 2e-6)
        {
            BenchCases = InfoNceBench,
            Prepare = PrepareInfoNce
        };
        yield return new OpSpec("adamw_step", RunAdamW, AdamWCases, Rtol: 2e-5, Atol: 1e-7)
        {
            BenchCases = AdamWBench,
            Prepare = PrepareAdamW
        };
    }

    private static IReadOnlyDictionary<string, HostTensor> RunInfoNce(Device d, OpCall c)
    {
        var (loss, da, dc) = d.InfoNce(c.Input("anchors"), c.Input("candidates"), c.Float("scale", 20),
            Training.ParseSimilarity(c.Text("similarity", "cosine")));
        return new Dictionary<string, HostTensor> { ["loss"] = loss, ["d_anchors"] = da, ["d_candidates"] = dc };
    }

    /// <summary>Steps copies of the inputs (the vectors' tensors stay as they are) and returns them.</summary>
    private static IReadOnlyDictionary<string, HostTensor> RunAdamW(Device d, OpCall c)
    {
        HostTensor Copy(string name) { var t = c.Input(name); return new HostTensor(t.DType, t.ShapeArray, t.Data.ToArray()); }
        var p = Copy("param"); var m = Copy("exp_avg"); var v = Copy("exp_avg_sq");
        var o = new AdamWOptions
        {
            Lr = c.Float("lr", 1e-3f),
            Beta1 = c.Float("beta1", 0.9f),
            Beta2 = c.Float("beta2", 0.999f),
            Eps = c.Float("eps", 1e-8f),
            WeightDecay = c.Float("weight_decay", 0.01f),
        };
        d.AdamWStep(p, c.Input("grad"), m, v, c.Int("step", 1), o);
        return new Dictionary<string, HostTensor> { ["param"] = p, ["exp_avg"] = m, ["exp_avg_sq"] = v };
    }

    private static string S(double x) => x.ToString(CultureInfo.InvariantCulture);

    private static IReadOnlyList<(string, OpCall)> InfoNceCases(int seed)
    {
        var r = new RandomTensors(seed);
        (int B, int N, int D, float Scale, string Sim, bool ZeroRow)[] cases =
        [
            (4, 4, 16, 20, "cosine", false), (3, 9, 13, 50, "cosine", false), (5, 5, 8, 20, "dot", false), (2, 6, 7, 1, "dot", false),
            (1, 1, 5, 20, "cosine", false), (6, 18, 33, 20, "cosine", true), (0, 0, 8, 20, "cosine", false), (0, 3, 4, 20, "dot", false),
        ];
        var list = new List<(string, OpCall)>();
        foreach (var c in cases)
        {
            float spread = c.Sim == "dot" ? 0.5f : 2f;
            var a = r.Floats(DType.F32, -spread, spread, c.B, c.D);
            var cand = r.Floats(DType.F32, -spread, spread, c.N, c.D);
            if (c.ZeroRow) { a.AsSpan<float>()[..c.D].Clear(); cand.AsSpan<float>().Slice(2 * c.D, c.D).Clear(); }
            var ps = new Dictionary<string, string> { ["scale"] = S(c.Scale), ["similarity"] = c.Sim };
            list.Add(($"B{c.B} N{c.N} D{c.D} scale {c.Scale} {c.Sim}{(c.ZeroRow ? " zero rows" : "")}",
                new OpCall(new Dictionary<string, HostTensor> { ["anchors"] = a, ["candidates"] = cand }, ps)));
        }
        return list;
    }

    private static IReadOnlyList<(string, OpCall)> AdamWCases(int seed)
    {
        var r = new RandomTensors(seed);
        (int[] Shape, int Step, float Lr, float Wd, float GradScale, bool Fresh)[] cases =
        [
            ([4, 8], 1, 1e-3f, 0.01f, 1, true), ([37], 10, 1e-3f, 0, 1, false), ([3, 17], 1000, 1e-3f, 0.01f, 100, false),
            ([5, 9], 10, 1e-2f, 0.1f, 1e-6f, false), ([1000], 3, 3e-4f, 0.01f, 1, false), ([0, 4], 1, 1e-3f, 0.01f, 1, true),
        ];
        var list = new List<(string, OpCall)>();
        foreach (var c in cases)
        {
            var g = r.Floats(DType.F32, -c.GradScale, c.GradScale, c.Shape);
            var m = c.Fresh ? HostTensor.Zeros(DType.F32, c.Shape) : r.Floats(DType.F32, -0.1f * c.GradScale, 0.1f * c.GradScale, c.Shape);
            var v = c.Fresh ? HostTensor.Zeros(DType.F32, c.Shape) : r.Floats(DType.F32, 0, 0.01f * c.GradScale * c.GradScale, c.Shape);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["param"] = r.Floats(DType.F32, -1, 1, c.Shape),
                ["grad"] = g,
                ["exp_avg"] = m,
                ["exp_avg_sq"] = v
            };
            var ps = new Dictionary<string, string> { ["step"] = S(c.Step), ["lr"] = S(c.Lr), ["weight_decay"] = S(c.Wd) };
            list.Add(($"{Shape.Format(c.Shape)} step {c.Step} lr {c.Lr} wd {c.Wd} grads ±{c.GradScale}", new OpCall(inputs, ps)));
        }
        return list;
    }

    /// <summary>A training batch of the paper's heads: B pairs with one hard negative each (N = 2B) at MiniLM's and a
    /// 768-wide model's width.</summary>
    private static IReadOnlyList<BenchCase> InfoNceBench(Device d)
    {
        bool sim = d.Id == "ilgpu-cpu";
        (int B, int N, int D)[] shapes = sim ? [(8, 16, 32), (16, 32, 64)] : [(64, 128, 384), (256, 512, 768)];
        var list = new List<BenchCase>();
        foreach (var (b, n, dim) in shapes)
        {
            var r = new RandomTensors(5);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["anchors"] = r.Floats(DType.F32, -1, 1, b, dim),
                ["candidates"] = r.Floats(DType.F32, -1, 1, n, dim)
            };
            list.Add(new BenchCase($"B{b} N{n} D{dim} cosine", (double)b * n, new OpCall(inputs, new Dictionary<string, string>()),
                4.0 * 2 * (b + n) * dim, 6.0 * b * n * dim, ""));
        }
        return list;
    }

    private static PreparedCall PrepareInfoNce(Device d, OpCall c)
    {
        var a = d.Upload(c.Input("anchors")); var cand = d.Upload(c.Input("candidates"));
        var l = d.Allocate(DType.F32, 1); var da = d.Allocate(DType.F32, c.Input("anchors").ShapeArray);
        var dc = d.Allocate(DType.F32, c.Input("candidates").ShapeArray);
        return new PreparedCall(() => d.InfoNce(a, cand, l, da, dc), a, cand, l, da, dc);
    }

    /// <summary>One optimizer step over a head's parameters (1M: about the trainable pooling head) and 10M floats.</summary>
    private static IReadOnlyList<BenchCase> AdamWBench(Device d)
    {
        bool sim = d.Id == "ilgpu-cpu";
        int[] sizes = sim ? [4096, 65536] : [1 << 20, 10 << 20];
        var list = new List<BenchCase>();
        foreach (int n in sizes)
        {
            var r = new RandomTensors(6);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["param"] = r.Floats(DType.F32, -1, 1, n),
                ["grad"] = r.Floats(DType.F32, -1, 1, n),
                ["exp_avg"] = r.Floats(DType.F32, -0.1f, 0.1f, n),
                ["exp_avg_sq"] = r.Floats(DType.F32, 0, 0.01f, n),
            };
            list.Add(new BenchCase($"{n} params", n, new OpCall(inputs, new Dictionary<string, string> { ["step"] = "10" }), 7.0 * 4 * n,
                12.0 * n, ""));
        }
        return list;
    }

    private static PreparedCall PrepareAdamW(Device d, OpCall c)
    {
        var p = d.Upload(c.Input("param")); var g = d.Upload(c.Input("grad"));
        var m = d.Upload(c.Input("exp_avg")); var v = d.Upload(c.Input("exp_avg_sq"));
        return new PreparedCall(() => d.AdamWStep(p, g, m, v, 10), p, g, m, v);
    }
}
