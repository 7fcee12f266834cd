using System.Globalization;
using PoolKernels.Kernels.Attention;
using PoolKernels.Verification;

namespace PoolKernels.Verification;

/// <summary>sdpa and sdpa_varlen in the registry.</summary>
internal sealed class AttentionFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("sdpa", RunSdpa, SdpaCases, Rtol: 2e-4, Atol: 2e-5)
        {
            BenchCases = OpBenches.Sdpa,
            Prepare = OpBenches.PrepareSdpa
        };
        yield return new OpSpec("sdpa_varlen", RunVarlen, VarlenCases, Rtol: 2e-4, Atol: 2e-5)
        {
            BenchCases = OpBenches.SdpaVarlen,
            Prepare = OpBenches.PrepareSdpaVarlen
        };
    }

    internal static SdpaOptions Options(OpCall c) => new()
    {
        Causal = SdpaOptions.ParseCausal(c.Text("causal", "none")),
        Scale = c.Parameters.ContainsKey("scale") ? c.Float("scale", 0) : null,
        WindowLeft = c.Int("window_left", -1),
        WindowRight = c.Int("window_right", -1),
        Layout = SdpaOptions.ParseLayout(c.Text("layout", "bhtd")),
        Softcap = c.Float("softcap", 0),
        AlibiSlopes = Floats(c.Optional("alibi_slopes")),
        Sinks = Floats(c.Optional("sinks")),
    };

    /// <summary>A modifier tensor (alibi_slopes [Hq] or [B,Hq], sinks [Hq]) as its F32 values; absent = empty.</summary>
    private static float[] Floats(HostTensor? t) => t is null ? [] : t.To(DType.F32).AsSpan<float>().ToArray();

    private static Dictionary<string, HostTensor> Out((HostTensor Out, HostTensor Lse) r) => new() { ["out"] = r.Out, ["lse"] = r.Lse };

    private static IReadOnlyDictionary<string, HostTensor> RunSdpa(Device d, OpCall c) =>
        Out(d.Sdpa(c.Input("q"), c.Input("k"), c.Input("v"), c.Optional("attn_mask"), c.Optional("key_padding_mask"), Options(c)));

    private static IReadOnlyDictionary<string, HostTensor> RunVarlen(Device d, OpCall c) =>
        Out(d.SdpaVarlen(c.Input("q"), c.Input("k"), c.Input("v"), c.Input("cu_seqlens_q"), c.Input("cu_seqlens_k"), Options(c)));

    private static string S(int x) => x.ToString(CultureInfo.InvariantCulture);

    internal record struct Case(int B, int Hq, int Hkv, int Tq, int Tk, int E, int Ev, string Causal, int Wl, int Wr, string Layout,
        string Mask, bool Kpm, float Spread = 2, float Softcap = 0, string Alibi = "", bool Sinks = false);

    private static IReadOnlyList<(string, OpCall)> SdpaCases(int seed) => SdpaCases(seed,
        [
            new(2, 2, 2, 5, 7, 8, 8, "none", -1, -1, "bhtd", "", false),
            new(2, 2, 2, 6, 9, 8, 8, "none", -1, -1, "bhtd", "bool_h", true),
            new(2, 3, 3, 6, 10, 16, 8, "top_left", -1, -1, "bthd", "f32_b", false),
            new(2, 4, 2, 3, 9, 17, 5, "bottom_right", 2, -1, "bthd", "", true),
            new(1, 3, 1, 6, 6, 8, 8, "none", 1, 0, "bhtd", "f16", true),
            new(2, 2, 1, 1, 1, 1, 1, "none", -1, -1, "bhtd", "", false),
            new(1, 2, 2, 9, 4, 40, 40, "bottom_right", -1, -1, "bhtd", "bool", false),
            new(1, 1, 1, 7, 5, 3, 2, "none", 100, 50, "bthd", "", true),
            new(1, 2, 1, 33, 70, 72, 24, "top_left", 40, 3, "bhtd", "bool_b", true),
            new(1, 1, 1, 3, 20, 256, 256, "none", -1, -1, "bhtd", "", false),
            new(1, 2, 2, 4, 11, 16, 8, "none", -1, -1, "bhtd", "", false, 60),
            new(0, 2, 2, 4, 5, 8, 8, "none", -1, -1, "bhtd", "", true),
            new(2, 2, 2, 3, 0, 8, 8, "top_left", -1, -1, "bthd", "", false),
            // score modifiers: softcap, ALiBi ([Hq] and [B,Hq]), sinks, alone and with every mask form
            new(2, 2, 2, 6, 9, 16, 8, "top_left", -1, -1, "bhtd", "", false, 4, Softcap: 3),
            new(2, 4, 2, 5, 12, 16, 16, "bottom_right", 4, -1, "bthd", "bool_h", true, Alibi: "h"),
            new(2, 2, 1, 7, 7, 8, 8, "none", 2, 3, "bhtd", "f32_b", false, Alibi: "bh", Sinks: true),
            new(2, 2, 2, 6, 9, 8, 8, "none", -1, -1, "bhtd", "bool", true, Sinks: true),
            new(1, 8, 2, 70, 75, 24, 16, "bottom_right", 30, -1, "bthd", "f16", true, 3, Softcap: 5, Alibi: "bh", Sinks: true),
            new(2, 2, 2, 3, 0, 8, 8, "none", -1, -1, "bhtd", "", false, Softcap: 2, Alibi: "h", Sinks: true),
        ]);

    /// <summary>Random inputs for the given sdpa shapes and mask forms (also the cases of sdpa_backward).</summary>
    internal static IReadOnlyList<(string, OpCall)> SdpaCases(int seed, Case[] cases)
    {
        var r = new RandomTensors(seed);
        var list = new List<(string, OpCall)>();
        foreach (var c in cases)
        {
            var dt = c.Spread > 2 ? DType.F32 : r.FloatType();
            bool bhtd = c.Layout == "bhtd";
            int[] Sh(int h, int t, int e) => bhtd ? [c.B, h, t, e] : [c.B, t, h, e];
            var inputs = new Dictionary<string, HostTensor>
            {
                ["q"] = r.Floats(dt, -c.Spread, c.Spread, Sh(c.Hq, c.Tq, c.E)),
                ["k"] = r.Floats(dt, -c.Spread, c.Spread, Sh(c.Hkv, c.Tk, c.E)),
                ["v"] = r.Floats(dt, -2, 2, Sh(c.Hkv, c.Tk, c.Ev)),
            };
            if (c.Mask != "")
            {
                int mb = c.Mask.EndsWith("_b", StringComparison.Ordinal) ? 1 : c.B, mh = c.Mask.EndsWith("_h",
                    StringComparison.Ordinal) ? 1 : c.Hq;
                int n = mb * mh * c.Tq * c.Tk;
                if (c.Mask.StartsWith("bool", StringComparison.Ordinal))
                {
                    var m = new bool[n];
                    for (int i = 0; i < n; i++) m[i] = r.Rng.Next(4) != 0;
                    if (n > c.Tk) for (int j = 0; j < c.Tk; j++) m[j] = false; // first row fully masked
                    inputs["attn_mask"] = HostTensor.From(m, mb, mh, c.Tq, c.Tk);
                }
                else
                {
                    // -30, not -1e4: a row whose allowed keys all carry -1e4 is beyond float32 (ulp(1e4) = 1e-3)
                    var m = new float[n];
                    for (int i = 0; i < n; i++) m[i] = r.Rng.Next(5) switch
                    {
                        0 => float.NegativeInfinity,
                        1 => -30f,
                        _ => (float)(r.Rng.NextDouble() * 2 - 1)
                    };
                    var t = HostTensor.From(m, mb, mh, c.Tq, c.Tk);
                    inputs["attn_mask"] = c.Mask.StartsWith("f16", StringComparison.Ordinal) ? t.To(DType.F16) : t;
                }
            }
            if (c.Kpm) inputs["key_padding_mask"] = r.Mask(r.MaskType(), c.B, c.Tk);
            var ps = new Dictionary<string, string>
            {
                ["causal"] = c.Causal,
                ["window_left"] = S(c.Wl),
                ["window_right"] = S(c.Wr),
                ["layout"] = c.Layout,
            };
            if (list.Count % 2 == 1) ps["scale"] = "0.3";
            Modifiers(r, inputs, ps, c.B, c.Hq, c.Softcap, c.Alibi, c.Sinks);
            string label = $"{dt.Name()} B{c.B} Hq{c.Hq}/Hkv{c.Hkv} Tq{c.Tq} Tk{c.Tk} E{c.E}/{c.Ev} {c.Causal} w[{c.Wl},{c.Wr}] "
                + $"{c.Layout} mask={c.Mask} kpm={c.Kpm}"
                + (c.Softcap > 0 ? $" softcap={c.Softcap}" : "") + (c.Alibi != "" ? $" alibi={c.Alibi}" : "") + (c.Sinks ? " sinks" : "");
            list.Add((label, new OpCall(inputs, ps)));
        }
        return list;
    }

    /// <summary>Adds the score modifiers of a case: softcap as a parameter, alibi_slopes ("h" = [Hq], "bh" = [B,Hq]) and
    /// sinks [Hq] as F32 inputs.</summary>
    private static void Modifiers(RandomTensors r, Dictionary<string, HostTensor> inputs, Dictionary<string, string> ps, int b, int hq,
        float softcap, string alibi, bool sinks)
    {
        if (softcap > 0) ps["softcap"] = softcap.ToString(CultureInfo.InvariantCulture);
        if (alibi == "h") inputs["alibi_slopes"] = r.Floats(DType.F32, 0.05f, 1f, hq);
        else if (alibi == "bh") inputs["alibi_slopes"] = r.Floats(DType.F32, 0.05f, 1f, b, hq);
        if (sinks) inputs["sinks"] = r.Floats(DType.F32, -2f, 2f, hq);
    }

    /// <summary>An sdpa_varlen case: sequence lengths, heads, head dims, causal, window, I32 offsets, modifiers.</summary>
    internal record struct VarlenCase(int[] Lq, int[] Lk, int Hq, int Hkv, int E, int Ev, string Causal, int Wl, int Wr, bool I32,
        float Cap,
        string Alibi, bool Sinks);

    private static IReadOnlyList<(string, OpCall)> VarlenCases(int seed) => VarlenCases(seed,
        [
            new([3, 1, 5], [4, 0, 6], 2, 2, 8, 8, "none", -1, -1, false, 0, "", false),
            new([2, 4, 6], [5, 4, 3], 4, 2, 16, 12, "bottom_right", -1, -1, true, 0, "", false),
            new([7, 3], [7, 5], 2, 1, 9, 8, "top_left", 3, -1, false, 0, "", false),
            new([1, 35], [1, 70], 1, 1, 40, 33, "none", 2, 5, true, 0, "", false),
            new([], [], 2, 2, 8, 8, "none", -1, -1, false, 0, "", false),
            new([0, 2], [3, 0], 1, 1, 4, 4, "bottom_right", -1, -1, true, 0, "", false),
            new([3, 5, 2], [6, 0, 9], 4, 2, 8, 8, "bottom_right", 3, -1, false, 0, "h", true),
            new([4, 6], [8, 6], 2, 2, 16, 8, "none", -1, -1, true, 2, "bh", false),
        ]);

    /// <summary>Random inputs for the given sdpa_varlen cases (also the cases of sdpa_varlen_backward).</summary>
    internal static IReadOnlyList<(string, OpCall)> VarlenCases(int seed, VarlenCase[] cases)
    {
        var r = new RandomTensors(seed);
        var list = new List<(string, OpCall)>();
        foreach (var c in cases)
        {
            var dt = r.FloatType();
            int nq = c.Lq.Sum(), nk = c.Lk.Sum();
            long[] cq = new long[c.Lq.Length + 1], ck = new long[c.Lk.Length + 1];
            for (int i = 0; i < c.Lq.Length; i++) { cq[i + 1] = cq[i] + c.Lq[i]; ck[i + 1] = ck[i] + c.Lk[i]; }
            var inputs = new Dictionary<string, HostTensor>
            {
                ["q"] = r.Floats(dt, -2, 2, nq, c.Hq, c.E),
                ["k"] = r.Floats(dt, -2, 2, nk, c.Hkv, c.E),
                ["v"] = r.Floats(dt, -2, 2, nk, c.Hkv, c.Ev),
                ["cu_seqlens_q"] = c.I32 ? HostTensor.From(cq, cq.Length).To(DType.I32) : HostTensor.From(cq, cq.Length),
                ["cu_seqlens_k"] = c.I32 ? HostTensor.From(ck, ck.Length).To(DType.I32) : HostTensor.From(ck, ck.Length),
            };
            var ps = new Dictionary<string, string> { ["causal"] = c.Causal, ["window_left"] = S(c.Wl), ["window_right"] = S(c.Wr) };
            Modifiers(r, inputs, ps, c.Lq.Length, c.Hq, c.Cap, c.Alibi, c.Sinks);
            list.Add(($"{dt.Name()} Lq[{string.Join(",", c.Lq)}] Lk[{string.Join(",", c.Lk)}] Hq{c.Hq}/Hkv{c.Hkv} E{c.E}/{c.Ev} {c.Causal} "
                + $"w[{c.Wl},{c.Wr}] softcap={c.Cap} alibi={c.Alibi} sinks={c.Sinks}", new OpCall(inputs, ps)));
        }
        return list;
    }
}
