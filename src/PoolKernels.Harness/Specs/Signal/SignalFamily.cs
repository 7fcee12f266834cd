using PoolKernels.Verification;

namespace PoolKernels.Verification;

/// <summary>pool1d in the registry.</summary>
internal sealed class SignalFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("pool1d", (d, c) => new Dictionary<string, HostTensor>
        {
            ["out"] = d.Pool1d(c.Input("x"), SignalPooling.ParseMode(c.Text("mode")), c.Int("kernel", 0), c.Int("stride", -1),
                c.Int("padding", 0)),
        }, Cases)
        { BenchCases = OpBenches.Pool1d, Prepare = OpBenches.PreparePool1d };
    }

    private static IReadOnlyList<(string, OpCall)> Cases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int B, int C, int L, string Mode, int K, int S, int P)[] shapes =
            [(2, 3, 12, "avg", 3, 3, 0), (1, 4, 11, "max", 4, 2, 1), (2, 1, 10, "avg", 3, 2, 1), (1, 1, 1, "max", 1, 1, 0), (3, 2, 17,
                "max", 5, 3, 2),
             (1, 2, 100, "avg", 20, 7, 10), (0, 2, 5, "avg", 2, 2, 0), (1, 2, 3, "avg", 5, 1, 2), (2, 2, 9, "max", 3, 4, 1),
             // long enough for the 16-window vector paths (stride 1 and 2) plus edges; the max one with NaN/inf
             (2, 3, 71, "max", 3, 2, 1), (1, 2, 50, "avg", 4, 1, 2), (1, 1, 40, "avg", 3, 2, 1), (1, 2, 37, "max", 16, 1, 8)];
        int i = 0;
        foreach (var (b, c, l, mode, k, s, p) in shapes)
        {
            var x = i == 4 || i == 9 ? r.FloatsWithSpecials(DType.F32, b, c, l) : r.Floats(DType.F32, -2, 2, b, c, l);
            var ps = new Dictionary<string, string> { ["mode"] = mode, ["kernel"] = $"{k}", ["stride"] = $"{s}", ["padding"] = $"{p}" };
            cases.Add(($"{mode} k{k} s{s} p{p} [{b},{c},{l}]", new OpCall(new Dictionary<string, HostTensor> { ["x"] = x }, ps)));
            i++;
        }
        return cases;
    }
}
