using PoolKernels.Verification;

namespace PoolKernels.Verification;

/// <summary>sdpa_backward and sdpa_varlen_backward in the registry: the forward's case generators (AttentionFamily) with
/// no score modifiers, plus a random d_out of out's shape.</summary>
internal sealed class AttentionBackwardFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("sdpa_backward", RunSdpa, SdpaCases, Rtol: 1e-3, Atol: 1e-4)
        {
            BenchCases = OpBenches.SdpaBackward,
            Prepare = OpBenches.PrepareSdpaBackward,
        };
        yield return new OpSpec("sdpa_varlen_backward", RunVarlen, VarlenCases, Rtol: 1e-3, Atol: 1e-4)
        {
            BenchCases = OpBenches.SdpaVarlenBackward,
            Prepare = OpBenches.PrepareSdpaVarlenBackward,
        };
    }

    private static Dictionary<string, HostTensor> Out((HostTensor DQ, HostTensor DK, HostTensor DV) r) =>
        new() { ["d_q"] = r.DQ, ["d_k"] = r.DK, ["d_v"] = r.DV };

    private static IReadOnlyDictionary<string, HostTensor> RunSdpa(Device d, OpCall c) =>
        Out(d.SdpaBackward(c.Input("q"), c.Input("k"), c.Input("v"), c.Input("d_out"), c.Optional("attn_mask"),
            c.Optional("key_padding_mask"),
            AttentionFamily.Options(c)));

    private static IReadOnlyDictionary<string, HostTensor> RunVarlen(Device d, OpCall c) =>
        Out(d.SdpaVarlenBackward(c.Input("q"), c.Input("k"), c.Input("v"), c.Input("cu_seqlens_q"), c.Input("cu_seqlens_k"),
            c.Input("d_out"),
            AttentionFamily.Options(c)));

    /// <summary>Adds d_out (F32, out's shape: q's with v's last dim) to every forward case.</summary>
    private static IReadOnlyList<(string, OpCall)> WithDOut(int seed, IReadOnlyList<(string, OpCall)> cases)
    {
        var r = new RandomTensors(seed + 7919);
        var list = new List<(string, OpCall)>();
        foreach (var (label, call) in cases)
        {
            var shape = call.Input("q").ShapeArray.ToArray();
            shape[^1] = call.Input("v").ShapeArray[^1];
            var inputs = new Dictionary<string, HostTensor>(call.Inputs) { ["d_out"] = r.Floats(DType.F32, -1, 1, shape) };
            list.Add((label, new OpCall(inputs, call.Parameters)));
        }
        return list;
    }

    // Small shapes (ilgpu-cpu runs them too): causal both alignments, windows, GQA 2:1 and 4:1, bthd, bool and additive
    // (-inf, -30) masks, key padding, fully masked rows, Tq != Tk, odd E, empty Tq, Tk and batch, more than one 16-row block.
    private static IReadOnlyList<(string, OpCall)> SdpaCases(int seed) => WithDOut(seed, AttentionFamily.SdpaCases(seed,
        [
            new(2, 2, 2, 5, 7, 8, 8, "none", -1, -1, "bhtd", "", false),
            new(2, 2, 2, 6, 9, 8, 8, "none", -1, -1, "bhtd", "bool_h", true),
            new(2, 3, 3, 6, 10, 16, 8, "top_left", -1, -1, "bthd", "f32_b", false),
            new(2, 4, 1, 3, 9, 17, 5, "bottom_right", 2, -1, "bthd", "", true),
            new(1, 4, 1, 6, 6, 8, 8, "none", 1, 0, "bhtd", "f16", true),
            new(1, 2, 2, 9, 4, 12, 12, "bottom_right", -1, -1, "bhtd", "bool", false),
            new(1, 1, 1, 7, 5, 3, 2, "none", 100, 50, "bthd", "", true),
            new(1, 2, 1, 20, 24, 17, 9, "top_left", 6, 3, "bhtd", "bool_b", true),
            new(2, 2, 2, 3, 0, 8, 8, "top_left", -1, -1, "bthd", "", false),
            new(1, 2, 2, 0, 5, 8, 8, "none", -1, -1, "bhtd", "", true),
            new(0, 2, 2, 4, 5, 8, 8, "none", -1, -1, "bhtd", "", true),
        ]));

    private static IReadOnlyList<(string, OpCall)> VarlenCases(int seed) => WithDOut(seed, AttentionFamily.VarlenCases(seed,
        [
            new([3, 1, 5], [4, 0, 6], 2, 2, 8, 8, "none", -1, -1, false, 0, "", false),
            new([2, 4, 6], [5, 4, 3], 4, 2, 16, 12, "bottom_right", -1, -1, true, 0, "", false),
            new([7, 3], [7, 5], 4, 1, 17, 8, "top_left", 3, -1, false, 0, "", false),
            new([18, 5], [20, 5], 2, 2, 9, 8, "none", 2, 5, true, 0, "", false),
            new([], [], 2, 2, 8, 8, "none", -1, -1, false, 0, "", false),
            new([0, 2], [3, 0], 1, 1, 4, 4, "bottom_right", -1, -1, true, 0, "", false),
        ]));
}
