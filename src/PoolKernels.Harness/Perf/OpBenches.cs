using System.Globalization;
using PoolKernels.Kernels.Attention;
using PoolKernels.Kernels.Bilinear;
using PoolKernels.Kernels.Spatial;
using PoolKernels.Verification;
using static PoolKernels.SpatialArgs;

namespace PoolKernels.Verification;

/// <summary>
/// Bench workloads (<see cref="OpSpec.BenchCases"/>) and device-resident runs (<see cref="OpSpec.Prepare"/>) of every
/// family but sequence (which keeps its own, SequenceFamily.cs). Shapes: the representative ones of the issues on simd and
/// GPUs, 2-4 sizes so <c>bench --plot</c> shows time against size; tiny ones on the ilgpu-cpu simulator and the scalar
/// reference. Bytes = what a kernel must at least read and write (F32 4 bytes, I64 8, masks 1); flops = the arithmetic
/// of the op's formula (0 where it is pure data movement / comparisons).
/// </summary>
internal static class OpBenches
{
    private static bool Small(Device d) => d.Id == "ilgpu-cpu" || d.Kind == BackendKind.Reference;
    private static string S(long v) => v.ToString(CultureInfo.InvariantCulture);
    private static string Bk(long a, long b) => Tuning.Bucket(Tuning.Log2Bucket(a), Tuning.Log2Bucket(b));
    private static Dictionary<string, string> P(params string[] kv)
    {
        var d = new Dictionary<string, string>();
        for (int i = 0; i + 1 < kv.Length; i += 2) d[kv[i]] = kv[i + 1];
        return d;
    }
    private static OpCall Call(Dictionary<string, HostTensor> inputs, Dictionary<string, string> ps) => new(inputs, ps);
    private static double N(params int[] shape) => shape.Aggregate(1.0, (a, b) => a * b);

    /// <summary>Uploads every input, runs the host path once to learn the output shapes and dtypes (a warm-up too),
    /// allocates them, and returns the kernel-only run <paramref name="launch"/>(inputs by name, outputs by name).</summary>
    private static PreparedCall Stage(Device d, OpCall c, OpSpec spec, Action<Func<string, DeviceTensor>, Func<string, DeviceTensor?>,
        Func<string, DeviceTensor>> launch)
    {
        var outs = spec.Run(d, c);
        var ins = c.Inputs.ToDictionary(kv => kv.Key, kv => d.Upload(kv.Value));
        var os = outs.ToDictionary(kv => kv.Key, kv => d.Allocate(kv.Value.DType, kv.Value.Shape.ToArray()));
        // the accessors are made once: a timed run allocates nothing of its own
        Func<string, DeviceTensor> input = n => ins[n], output = n => os[n];
        Func<string, DeviceTensor?> optional = n => ins.GetValueOrDefault(n);
        return new PreparedCall(() => launch(input, optional, output), [.. ins.Values, .. os.Values]);
    }

    private static OpSpec Spec(string name) => OpRegistry.Find(name)!;

    // ---------------- attention ----------------

    /// <summary>sdpa B=8 H=12 E=64, T = 128..1024, BOOL key padding (the last eighth of the keys padded).</summary>
    public static IReadOnlyList<BenchCase> Sdpa(Device d)
    {
        var r = new RandomTensors(11);
        (int B, int H, int E, int[] Ts) = Small(d) ? (1, 2, 16, new[] { 8, 16, 32 }) : (8, 12, 64, new[] { 128, 256, 512, 1024 });
        return Ts.Select(t =>
        {
            var kpm = new bool[B * t];
            for (int b = 0; b < B; b++) for (int j = 0; j < t; j++) kpm[b * t + j] = j < t - t / 8;
            var inputs = new Dictionary<string, HostTensor>
            {
                ["q"] = r.Floats(DType.F32, -1, 1, B, H, t, E),
                ["k"] = r.Floats(DType.F32, -1, 1, B, H, t, E),
                ["v"] = r.Floats(DType.F32, -1, 1, B, H, t, E),
                ["key_padding_mask"] = HostTensor.From(kpm, B, t),
            };
            double bytes = 4 * N(B, H, t, E) * 4 + 4 * N(B, H, t) + N(B, t);
            return new BenchCase($"[{B},{H},{t},{E}] kpm", t, Call(inputs, P("causal", "none", "layout", "bhtd")), bytes, 4 * N(B, H, t, t,
                E), Bk((long)B * H * t, t));
        }).ToList();
    }

    public static PreparedCall PrepareSdpa(Device d, OpCall c)
    {
        var options = AttentionFamily.Options(c);
        return Stage(d, c, Spec("sdpa"), (i, o, w) => d.Sdpa(i("q"), i("k"), i("v"), w("out"), w("lse"), o("attn_mask"),
            o("key_padding_mask"), options));
    }

    /// <summary>sdpa_varlen: 8 sequences of lengths in [T/2, T], H=12, E=64, causal bottom_right (packed prefill).</summary>
    public static IReadOnlyList<BenchCase> SdpaVarlen(Device d)
    {
        var r = new RandomTensors(12);
        (int Seqs, int H, int E, int[] Ts) = Small(d) ? (2, 2, 16, new[] { 8, 32 }) : (8, 12, 64, new[] { 128, 512, 1024 });
        return Ts.Select(t =>
        {
            var cu = new long[Seqs + 1];
            double pairs = 0;
            for (int s = 0; s < Seqs; s++)
            {
                int len = t / 2 + r.Rng.Next(t / 2 + 1);
                cu[s + 1] = cu[s] + len;
                pairs += len * (len + 1.0) / 2; // causal
            }
            int n = (int)cu[Seqs];
            var inputs = new Dictionary<string, HostTensor>
            {
                ["q"] = r.Floats(DType.F32, -1, 1, n, H, E),
                ["k"] = r.Floats(DType.F32, -1, 1, n, H, E),
                ["v"] = r.Floats(DType.F32, -1, 1, n, H, E),
                ["cu_seqlens_q"] = HostTensor.From(cu, cu.Length),
                ["cu_seqlens_k"] = HostTensor.From(cu, cu.Length),
            };
            return new BenchCase($"{Seqs}x[{t / 2}..{t}] H{H} E{E} causal", n, Call(inputs, P("causal", "bottom_right")),
                4 * N(n, H, E) * 4 + 4 * N(n, H), 4 * pairs * H * E, Bk((long)n * H, t));
        }).ToList();
    }

    public static PreparedCall PrepareSdpaVarlen(Device d, OpCall c)
    {
        var options = AttentionFamily.Options(c);
        return Stage(d, c, Spec("sdpa_varlen"), (i, _, w) => d.SdpaVarlen(i("q"), i("k"), i("v"), i("cu_seqlens_q"), i("cu_seqlens_k"),
            w("out"), w("lse"), options));
    }

    /// <summary>sdpa_backward: a training step's attention, B=2 H=8 E=64, T = 128 and 256, causal top_left (T 8/16, E 16 on
    /// the simulator); d_out uniform.</summary>
    public static IReadOnlyList<BenchCase> SdpaBackward(Device d)
    {
        var r = new RandomTensors(21);
        (int B, int H, int E, int[] Ts) = Small(d) ? (1, 2, 16, new[] { 8, 16 }) : (2, 8, 64, new[] { 128, 256 });
        return Ts.Select(t =>
        {
            var inputs = new Dictionary<string, HostTensor>
            {
                ["q"] = r.Floats(DType.F32, -1, 1, B, H, t, E),
                ["k"] = r.Floats(DType.F32, -1, 1, B, H, t, E),
                ["v"] = r.Floats(DType.F32, -1, 1, B, H, t, E),
                ["d_out"] = r.Floats(DType.F32, -1, 1, B, H, t, E),
            };
            double pairs = N(B, H) * t * (t + 1.0) / 2;
            return new BenchCase($"[{B},{H},{t},{E}] causal", t, Call(inputs, P("causal", "top_left", "layout", "bhtd")), 4 * N(B, H, t,
                E) * 7,
                pairs * E * 2 * 7, Bk((long)B * H * t, t));
        }).ToList();
    }

    public static PreparedCall PrepareSdpaBackward(Device d, OpCall c)
    {
        var options = AttentionFamily.Options(c);
        return Stage(d, c, Spec("sdpa_backward"), (i, o, w) => d.SdpaBackward(i("q"), i("k"), i("v"), i("d_out"), w("d_q"), w("d_k"),
            w("d_v"),
            o("attn_mask"), o("key_padding_mask"), options));
    }

    /// <summary>sdpa_varlen_backward: 4 sequences of lengths in [T/2, T], H=8, E=64, causal bottom_right (2 of 8, 16 on the
    /// simulator).</summary>
    public static IReadOnlyList<BenchCase> SdpaVarlenBackward(Device d)
    {
        var r = new RandomTensors(22);
        (int Seqs, int H, int E, int[] Ts) = Small(d) ? (2, 2, 16, new[] { 8, 16 }) : (4, 8, 64, new[] { 128, 256 });
        return Ts.Select(t =>
        {
            var cu = new long[Seqs + 1];
            double pairs = 0;
            for (int s = 0; s < Seqs; s++)
            {
                int len = t / 2 + r.Rng.Next(t / 2 + 1);
                cu[s + 1] = cu[s] + len;
                pairs += len * (len + 1.0) / 2;
            }
            int n = (int)cu[Seqs];
            var inputs = new Dictionary<string, HostTensor>
            {
                ["q"] = r.Floats(DType.F32, -1, 1, n, H, E),
                ["k"] = r.Floats(DType.F32, -1, 1, n, H, E),
                ["v"] = r.Floats(DType.F32, -1, 1, n, H, E),
                ["cu_seqlens_q"] = HostTensor.From(cu, cu.Length),
                ["cu_seqlens_k"] = HostTensor.From(cu, cu.Length),
                ["d_out"] = r.Floats(DType.F32, -1, 1, n, H, E),
            };
            return new BenchCase($"{Seqs}x[{t / 2}..{t}] H{H} E{E} causal", n, Call(inputs, P("causal", "bottom_right")), 4 * N(n, H,
                E) * 7,
                pairs * H * E * 2 * 7, Bk((long)n * H, t));
        }).ToList();
    }

    public static PreparedCall PrepareSdpaVarlenBackward(Device d, OpCall c)
    {
        var options = AttentionFamily.Options(c);
        return Stage(d, c, Spec("sdpa_varlen_backward"), (i, _, w) => d.SdpaVarlenBackward(i("q"), i("k"), i("v"), i("cu_seqlens_q"),
            i("cu_seqlens_k"), i("d_out"), w("d_q"), w("d_k"), w("d_v"), options));
    }

    // ---------------- spatial ----------------

    /// <summary>spatial_pool gem p=3 NCHW [16,2048,s,s] (ResNet-50 last stage at 7, 14, 28).</summary>
    public static IReadOnlyList<BenchCase> SpatialPool(Device d)
    {
        var r = new RandomTensors(13);
        (int B, int C, int[] Ss) = Small(d) ? (2, 16, new[] { 3, 7 }) : (16, 2048, new[] { 7, 14, 28 });
        return Ss.Select(s => new BenchCase($"[{B},{C},{s},{s}] gem", s * s,
            Call(new() { ["x"] = r.Floats(DType.F32, 0, 2, B, C, s, s) }, P("mode", "gem", "p", "3", "layout", "nchw")),
            4 * N(B, C, s, s) + 4 * N(B, C), 2 * N(B, C, s, s), Bk((long)B * C, s * s))).ToList();
    }

    public static PreparedCall PrepareSpatialPool(Device d, OpCall c)
    {
        var options = new SpatialPoolOptions
        {
            Mode = SpatialPoolOptions.ParseMode(c.Text("mode", "avg")),
            P = c.Float("p", 3f),
            Eps = c.Float("eps", 1e-6f),
            Normalize = c.Bool("normalize", false),
            Nhwc = SpatialPoolOptions.ParseLayout(c.Text("layout", "nchw")),
        };
        return Stage(d, c, Spec("spatial_pool"), (i, o, w) => d.SpatialPool(i("x"), w("out"), options, o("valid")));
    }

    /// <summary>pool2d max 3×3 s2 p1 [8,64,s,s] (ResNet stem at 112, and 56, 28).</summary>
    public static IReadOnlyList<BenchCase> Pool2d(Device d)
    {
        var r = new RandomTensors(14);
        (int B, int C, int[] Ss) = Small(d) ? (1, 4, new[] { 8, 16 }) : (8, 64, new[] { 28, 56, 112 });
        return Ss.Select(s =>
        {
            int os = (s + 2 - 3) / 2 + 1;
            return new BenchCase($"[{B},{C},{s},{s}] max 3x3 s2 p1", s * s,
                Call(new() { ["x"] = r.Floats(DType.F32, -2, 2, B, C, s, s) }, P("mode", "max", "kernel", "3", "stride", "2", "padding",
                    "1")),
                4 * N(B, C, s, s) + 4 * N(B, C, os, os), 0, Bk((long)B * C, s * s));
        }).ToList();
    }

    /// <summary>pool2d on simd: the input floats per work item (whole planes).</summary>
    public static IReadOnlyList<TunableParam> Pool2dTunables(Device d) => d is CpuDevice { Kind: BackendKind.Simd }
        ? [new("item", [Kernels.Spatial.Pool2dSimd.DefaultItemFloats, 1, 4096, 65536, 262144])]
        : [];

    public static PreparedCall PreparePool2d(Device d, OpCall c)
    {
        var options = SpatialFamily.Pool2dOptionsOf(c);
        return Stage(d, c, Spec("pool2d"), (i, _, w) => d.Pool2d(i("x"), w("out"), options));
    }

    /// <summary>adaptive_pool2d avg [8,512,s,s] → 7×7.</summary>
    public static IReadOnlyList<BenchCase> AdaptivePool2d(Device d)
    {
        var r = new RandomTensors(15);
        (int B, int C, int[] Ss) = Small(d) ? (1, 4, new[] { 9, 14 }) : (8, 512, new[] { 14, 28, 56 });
        return Ss.Select(s => new BenchCase($"[{B},{C},{s},{s}] avg -> 7x7", s * s,
            Call(new() { ["x"] = r.Floats(DType.F32, -2, 2, B, C, s, s) }, P("mode", "avg", "output_size", "7,7")),
            4 * N(B, C, s, s) + 4 * N(B, C, 7, 7), N(B, C, s, s), Bk((long)B * C, s * s))).ToList();
    }

    public static PreparedCall PrepareAdaptivePool2d(Device d, OpCall c)
    {
        var mode = c.Text("mode", "avg") == "max" ? Pool2dMode.Max : Pool2dMode.Avg;
        var size = Pair(c.Text("output_size"), "output_size");
        return Stage(d, c, Spec("adaptive_pool2d"), (i, _, w) => d.AdaptivePool2d(i("x"), w("out"), mode, size));
    }

    /// <summary>spp max levels 1,2,4 [8,256,s,s].</summary>
    public static IReadOnlyList<BenchCase> Spp(Device d)
    {
        var r = new RandomTensors(16);
        (int B, int C, int[] Ss) = Small(d) ? (1, 4, new[] { 8, 13 }) : (8, 256, new[] { 13, 26, 52 });
        return Ss.Select(s => new BenchCase($"[{B},{C},{s},{s}] max 1,2,4", s * s,
            Call(new() { ["x"] = r.Floats(DType.F32, -2, 2, B, C, s, s) }, P("mode", "max", "levels", "1,2,4")),
            4 * N(B, C, s, s) + 4 * N(B, C, 21), 0, Bk((long)B * C, s * s))).ToList();
    }

    public static PreparedCall PrepareSpp(Device d, OpCall c)
    {
        var levels = List(c.Text("levels", "1,2,4"), "levels");
        var mode = c.Text("mode", "max") == "avg" ? Pool2dMode.Avg : Pool2dMode.Max;
        return Stage(d, c, Spec("spp"), (i, _, w) => d.Spp(i("x"), w("out"), levels, mode));
    }

    // ---------------- region ----------------

    /// <summary>regional_gem p=2.5 k=5 [8,512,s,s]: flops ≈ k² pow-accumulates per element.</summary>
    public static IReadOnlyList<BenchCase> RegionalGem(Device d)
    {
        var r = new RandomTensors(17);
        (int B, int C, int[] Ss) = Small(d) ? (1, 4, new[] { 6, 12 }) : (8, 512, new[] { 14, 28, 56 });
        return Ss.Select(s => new BenchCase($"[{B},{C},{s},{s}] p2.5 k5", s * s,
            Call(new() { ["x"] = r.Floats(DType.F32, -1, 2, B, C, s, s) }, P("p", "2.5", "kernel", "5")),
            8 * N(B, C, s, s), 25 * N(B, C, s, s), Bk((long)B * C, s * s))).ToList();
    }

    public static PreparedCall PrepareRegionalGem(Device d, OpCall c) => Stage(d, c, Spec("regional_gem"), (i, _,
        w) => d.RegionalGem(i("x"), w("out"), c.Float("p", 2.5f), c.Int("kernel", 5)));

    /// <summary>scale_gem p=3 x [3,B,2048] (three scales).</summary>
    public static IReadOnlyList<BenchCase> ScaleGem(Device d)
    {
        var r = new RandomTensors(18);
        (int Sc, int D, int[] Bs) = Small(d) ? (3, 64, new[] { 4, 16 }) : (3, 2048, new[] { 256, 4096, 16384 });
        return Bs.Select(b => new BenchCase($"[{Sc},{b},{D}] p3", b,
            Call(new() { ["x"] = r.Floats(DType.F32, -1, 2, Sc, b, D) }, P("p", "3")),
            4 * N(Sc, b, D) + 4 * N(b, D), 2 * N(Sc, b, D), Bk(b, D))).ToList();
    }

    public static PreparedCall PrepareScaleGem(Device d, OpCall c) => Stage(d, c, Spec("scale_gem"), (i, _, w) => d.ScaleGem(i("x"),
        w("out"), c.Float("p", float.PositiveInfinity)));

    /// <summary>mask_pool soft, x [B,256,s,s], 100 masks at s×s (FC-CLIP): a batched GEMM, 2·B·Q·C·H·W flops.</summary>
    public static IReadOnlyList<BenchCase> MaskPool(Device d)
    {
        var r = new RandomTensors(19);
        (int B, int C, int Q, int[] Ss) = Small(d) ? (1, 8, 3, new[] { 6, 12 }) : (4, 256, 100, new[] { 32, 64, 128 });
        return Ss.Select(s => new BenchCase($"x[{B},{C},{s},{s}] masks[{B},{Q},{s},{s}] soft", s * s,
            Call(new() { ["x"] = r.Floats(DType.F32, -2, 2, B, C, s, s), ["masks"] = r.Floats(DType.F32, 0, 1, B, Q, s, s) }, P("mask_type",
                "soft")),
            4 * N(B, C, s, s) + 4 * N(B, Q, s, s) + 4 * N(B, Q, C), 2 * N(B, Q, C, s, s), Bk((long)B * Q, s * s))).ToList();
    }

    public static PreparedCall PrepareMaskPool(Device d, OpCall c) => Stage(d, c, Spec("mask_pool"), (i, _, w) =>
        d.MaskPool(i("x"), i("masks"), w("out"), SpatialPooling.ParseMaskType(c.Text("mask_type", "binary_logits")), c.Float("threshold",
            0.5f), c.Float("eps", 1e-8f)));

    /// <summary>spatiotemporal_pool x [B,F,256,1024] (Video-ChatGPT: frames × patches × D), F = 8..100.</summary>
    public static IReadOnlyList<BenchCase> SpatioTemporal(Device d)
    {
        var r = new RandomTensors(20);
        (int B, int Np, int D, int[] Fs) = Small(d) ? (1, 6, 8, new[] { 2, 4 }) : (2, 256, 1024, new[] { 8, 32, 100 });
        return Fs.Select(f => new BenchCase($"[{B},{f},{Np},{D}]", f,
            Call(new() { ["x"] = r.Floats(DType.F32, -2, 2, B, f, Np, D) }, P()),
            4 * N(B, f, Np, D) + 4 * N(B, f + Np, D), 2 * N(B, f, Np, D), Bk((long)B * f, (long)Np * D))).ToList();
    }

    public static PreparedCall PrepareSpatioTemporal(Device d, OpCall c) => Stage(d, c, Spec("spatiotemporal_pool"), (i, o, w) =>
        d.SpatioTemporalPool(i("x"), w("out"), o("region_masks"), o("region_masks") is null ? null : w("regions")));

    // ---------------- retrieval ----------------

    /// <summary>similarity_topk dot, 32 queries, D=256, k=10, N = 10k..200k: 2·Q·N·D flops.</summary>
    public static IReadOnlyList<BenchCase> SimilarityTopk(Device d)
    {
        var r = new RandomTensors(21);
        (int Q, int D, int[] Ns) = Small(d) ? (2, 16, new[] { 50, 200 }) : (32, 256, new[] { 10_000, 50_000, 200_000 });
        return Ns.Select(n => new BenchCase($"Q{Q} N{n} D{D} k10", n,
            Call(new() { ["query"] = r.Floats(DType.F32, -1, 1, Q, D), ["db"] = r.Floats(DType.F32, -1, 1, n, D) }, P("k", "10", "metric",
                "dot")),
            4 * N(n, D) + 4 * N(Q, D) + 12 * N(Q, 10), 2 * N(Q, n, D), Bk(Q, n))).ToList();
    }

    public static PreparedCall PrepareSimilarityTopk(Device d, OpCall c) => Stage(d, c, Spec("similarity_topk"), (i, _, w) =>
        d.SimilarityTopk(i("query"), i("db"), w("index"), w("score"), c.Int("k", 10), Retrieval.ParseMetric(c.Text("metric", "dot"))));

    /// <summary>rerank_refine m=400 k=9, 8 queries, D=512: flops 2·Q·N·D (shortlist) + 2·Q·m²·D (neighbour graph).</summary>
    public static IReadOnlyList<BenchCase> RerankRefine(Device d)
    {
        var r = new RandomTensors(22);
        (int Q, int D, int M, int[] Ns) = Small(d) ? (2, 8, 10, new[] { 30, 100 }) : (8, 512, 400, new[] { 10_000, 100_000 });
        return Ns.Select(n =>
        {
            int m = Math.Min(M, n);
            return new BenchCase($"Q{Q} N{n} D{D} m{M} k9", n,
                Call(new() { ["query"] = Unit(r, Q, D), ["db"] = Unit(r, n, D) }, P("m", S(M), "k", "9", "beta", "0.15")),
                4 * N(n, D) + 4 * N(Q, D) + 12 * N(Q, m), 2 * N(Q, n, D) + 2 * N(Q, m, m, D), Bk(Q, n));
        }).ToList();
    }

    private static HostTensor Unit(RandomTensors r, int rows, int dim) => r.UnitRows(rows, dim);

    public static PreparedCall PrepareRerankRefine(Device d, OpCall c) => Stage(d, c, Spec("rerank_refine"), (i, _, w) =>
        d.RerankRefine(i("query"), i("db"), w("order"), w("scores"), c.Int("m", 400), c.Int("k", 9), c.Float("beta", 0.15f)));

    // ---------------- ragged ----------------

    private static long[] Offsets(Random rng, int segs, int total)
    {
        var off = new long[segs + 1];
        for (int s = 1; s < segs; s++) off[s] = rng.NextInt64(total + 1);
        off[segs] = total;
        Array.Sort(off);
        return off;
    }

    /// <summary>segment_pool mean D=128, N = 64k..1M rows in N/64 random segments.</summary>
    public static IReadOnlyList<BenchCase> SegmentPool(Device d)
    {
        var r = new RandomTensors(23);
        (int D, int[] Ns) = Small(d) ? (8, new[] { 64, 512 }) : (128, new[] { 65_536, 262_144, 1_048_576 });
        return Ns.Select(n =>
        {
            int segs = Math.Max(1, n / 64);
            return new BenchCase($"[{n},{D}] S={segs} mean", n,
                Call(new()
                {
                    ["values"] = r.Floats(DType.F32, -2, 2, n, D),
                    ["offsets"] = HostTensor.From(Offsets(r.Rng, segs, n),
                    segs + 1)
                }, P("mode", "mean")),
                4 * N(n, D) + 8 * (segs + 1) + 4 * N(segs, D), N(n, D), Bk(segs, D));
        }).ToList();
    }

    /// <summary>segment_pool / gather_segment_pool on simd: the floats each work item streams (L2-sized by default).</summary>
    public static IReadOnlyList<TunableParam> SegmentTunables(Device d) => d is CpuDevice { Kind: BackendKind.Simd }
        ? [new("item", [Kernels.Ragged.SegmentPoolSimd.DefaultItemFloats, 4096, 16384, 65536, 262144])]
        : [];

    public static PreparedCall PrepareSegmentPool(Device d, OpCall c) => Stage(d, c, Spec("segment_pool"), (i, _, w) =>
        d.SegmentPool(i("values"), i("offsets"), w("out"), RaggedPooling.ParseMode(c.Text("mode"))));

    /// <summary>gather_segment_pool weighted sum: values [100k,128], K gathered rows (with repeats) in K/32 segments.</summary>
    public static IReadOnlyList<BenchCase> GatherSegmentPool(Device d)
    {
        var r = new RandomTensors(24);
        (int M, int D, int[] Ks) = Small(d) ? (40, 8, new[] { 64, 256 }) : (100_000, 128, new[] { 65_536, 262_144, 1_048_576 });
        return Ks.Select(k =>
        {
            int segs = Math.Max(1, k / 32);
            var idx = new long[k];
            for (int j = 0; j < k; j++) idx[j] = r.Rng.Next(M);
            return new BenchCase($"M{M} K{k} D{D} S={segs} weighted sum", k,
                Call(new()
                {
                    ["values"] = r.Floats(DType.F32, -2, 2, M, D),
                    ["index"] = HostTensor.From(idx, k),
                    ["offsets"] = HostTensor.From(Offsets(r.Rng, segs, k), segs + 1),
                    ["weights"] = r.Floats(DType.F32, -1, 1, k),
                }, P("mode", "sum")),
                4 * N(k, D) + 12.0 * k + 8 * (segs + 1) + 4 * N(segs, D), 2 * N(k, D), Bk(segs, D));
        }).ToList();
    }

    public static PreparedCall PrepareGatherSegmentPool(Device d, OpCall c) => Stage(d, c, Spec("gather_segment_pool"), (i, o, w) =>
        d.GatherSegmentPool(i("values"), i("index"), i("offsets"), o("weights"), w("out"), RaggedPooling.ParseMode(c.Text("mode"))));

    /// <summary>segment_topk ratio 0.5 (TopKPooling), N scores in N/256 graphs.</summary>
    public static IReadOnlyList<BenchCase> SegmentTopk(Device d)
    {
        var r = new RandomTensors(25);
        int[] ns = Small(d) ? [64, 512] : [65_536, 1_048_576, 4_194_304];
        return ns.Select(n =>
        {
            int segs = Math.Max(1, n / 256);
            return new BenchCase($"N{n} S={segs} ratio 0.5", n,
                Call(new() { ["scores"] = r.Floats(DType.F32, -2, 2, n), ["offsets"] = HostTensor.From(Offsets(r.Rng, segs, n), segs + 1) },
                    P("ratio", "0.5")),
                4.0 * n + 8.0 * (segs + 1) + 8.0 * (n / 2) + 8.0 * (segs + 1), 0, Bk(segs, n / segs));
        }).ToList();
    }

    public static PreparedCall PrepareSegmentTopk(Device d, OpCall c)
    {
        double? ratio = c.Parameters.ContainsKey("ratio") ? c.Float("ratio", 0) : null;
        int? k = c.Parameters.ContainsKey("k") ? c.Int("k", 0) : null;
        var s = d.Upload(c.Input("scores"));
        var o = d.Upload(c.Input("offsets"));
        return new PreparedCall(() =>
        {
            var (ix, oo) = d.SegmentTopk(s, o, ratio, k); // output sizes depend on the offsets: allocated per call
            ix.Dispose();
            oo.Dispose();
        }, s, o);
    }

    /// <summary>dual_hypergraph: E random edges on V = E/8 nodes (host path: the op has no device-tensor overload).</summary>
    public static IReadOnlyList<BenchCase> DualHypergraph(Device d)
    {
        var rng = new Random(26);
        int[] es = Small(d) ? [32, 256] : [65_536, 1_048_576];
        return es.Select(e =>
        {
            int v = Math.Max(2, e / 8);
            var ei = new long[2 * e];
            for (int j = 0; j < 2 * e; j++) ei[j] = rng.Next(v);
            return new BenchCase($"V{v} E{e} loops", e, Call(new() { ["edge_index"] = HostTensor.From(ei, 2, e) }, P("num_nodes", S(v),
                "add_loops", "true")),
                16.0 * e + 2 * 16.0 * (e + v), 0, Bk(v, e));
        }).ToList();
    }

    // ---------------- bilinear ----------------

    /// <summary>bilinear_pool self, x [32,N,512] (B-CNN): 2·B·N·Dx·Dy flops, out [B, Dx·Dy].</summary>
    public static IReadOnlyList<BenchCase> BilinearPool(Device d)
    {
        var r = new RandomTensors(27);
        (int B, int Dx, int[] Ns) = Small(d) ? (2, 8, new[] { 5, 17 }) : (32, 512, new[] { 49, 196, 784 });
        return Ns.Select(n => new BenchCase($"[{B},{n},{Dx}] self sqrt+norm", n,
            Call(new() { ["x"] = r.Floats(DType.F32, -1, 1, B, n, Dx) }, P("signed_sqrt", "true", "normalize", "true")),
            4 * N(B, n, Dx) + 4 * N(B, Dx, Dx), 2 * N(B, n, Dx, Dx), Bk(B, n))).ToList();
    }

    public static PreparedCall PrepareBilinearPool(Device d, OpCall c) => Stage(d, c, Spec("bilinear_pool"), (i, o, w) =>
        d.BilinearPool(i("x"), o("y"), o("mask"), w("out"), c.Bool("signed_sqrt", true), c.Bool("normalize", true)));

    private static Dictionary<string, HostTensor> MfbInputs(RandomTensors r, int b, int dx, int dy, int o, int k, bool mfh)
    {
        float s = 1f / MathF.Sqrt(Math.Max(dx, dy));
        var inputs = new Dictionary<string, HostTensor>
        {
            ["x"] = r.Floats(DType.F32, -1, 1, b, dx),
            ["y"] = r.Floats(DType.F32, -1, 1, b,
            dy)
        };
        foreach (var sfx in mfh ? new[] { "1", "2" } : [""])
        {
            inputs["wx" + sfx] = r.Floats(DType.F32, -s, s, o * k, dx);
            inputs["bx" + sfx] = r.Floats(DType.F32, -0.1f, 0.1f, o * k);
            inputs["wy" + sfx] = r.Floats(DType.F32, -s, s, o * k, dy);
            inputs["by" + sfx] = r.Floats(DType.F32, -0.1f, 0.1f, o * k);
        }
        return inputs;
    }

    /// <summary>mfb_pool / mfh_pool (VQA): Dx=2048 image, Dy=1024 question, o=1000, k=5, B = 16..256:
    /// 2·B·o·k·(Dx+Dy) flops per block; bytes = the weights once + the activations.</summary>
    public static IReadOnlyList<BenchCase> Mfb(Device d, bool mfh)
    {
        var r = new RandomTensors(mfh ? 29 : 28);
        (int Dx, int Dy, int O, int K, int[] Bs) = Small(d) ? (12, 10, 4, 3, new[] { 1, 4 }) : (2048, 1024, 1000, 5, new[] { 16, 64, 256 });
        int blocks = mfh ? 2 : 1;
        return Bs.Select(b => new BenchCase($"B{b} Dx{Dx} Dy{Dy} o{O} k{K}", b,
            Call(MfbInputs(r, b, Dx, Dy, O, K, mfh), P("k", S(K), "activation", "none", "signed_sqrt", "true", "normalize", "true")),
            blocks * 4 * N(O * K, Dx + Dy + 2) + 4 * N(b, Dx + Dy) + 4 * N(b, O * blocks), blocks * 2 * N(b, O * K, Dx + Dy), Bk(b,
                O * K))).ToList();
    }

    private static MfbOptions MfbOptionsOf(OpCall c) => new()
    {
        K = c.Int("k", 5),
        Activation = MfbOptions.ParseActivation(c.Text("activation", "none")),
        SignedSqrt = c.Bool("signed_sqrt", true),
        Normalize = c.Bool("normalize", true),
    };

    public static PreparedCall PrepareMfb(Device d, OpCall c)
    {
        var options = MfbOptionsOf(c);
        MfbWeights<DeviceTensor>? weights = null;
        return Stage(d, c, Spec("mfb_pool"), (i, _, w) =>
            d.MfbPool(i("x"), i("y"), weights ??= new MfbWeights<DeviceTensor>(i("wx"), i("bx"), i("wy"), i("by")), w("out"), options));
    }

    public static PreparedCall PrepareMfh(Device d, OpCall c)
    {
        var options = MfbOptionsOf(c);
        MfbWeights<DeviceTensor>? w1 = null, w2 = null;
        return Stage(d, c, Spec("mfh_pool"), (i, _, w) =>
            d.MfhPool(i("x"), i("y"), w1 ??= new MfbWeights<DeviceTensor>(i("wx1"), i("bx1"), i("wy1"), i("by1")),
                w2 ??= new MfbWeights<DeviceTensor>(i("wx2"), i("bx2"), i("wy2"), i("by2")), w("out"), options));
    }

    /// <summary>compact_bilinear_pool (MCB) B=32, Dx=Dy=2048, d = 4000..16000: flops ≈ 3 FFTs of length d per row
    /// (5·d·log2 d each) + the d products.</summary>
    public static IReadOnlyList<BenchCase> CompactBilinear(Device d)
    {
        var r = new RandomTensors(30);
        (int B, int Dx, int[] Ds) = Small(d) ? (2, 12, new[] { 16, 45 }) : (32, 2048, new[] { 4000, 8000, 16000 });
        return Ds.Select(dd =>
        {
            HostTensor Hash(int len) => HostTensor.From(Enumerable.Range(0, len).Select(_ => (long)r.Rng.Next(dd)).ToArray(), len);
            HostTensor Sign(int len) => HostTensor.From(Enumerable.Range(0, len).Select(_ => r.Rng.Next(2) == 0 ? -1f : 1f).ToArray(), len);
            var inputs = new Dictionary<string, HostTensor>
            {
                ["x"] = r.Floats(DType.F32, -1, 1, B, Dx),
                ["y"] = r.Floats(DType.F32, -1, 1, B, Dx),
                ["hx"] = Hash(Dx),
                ["sx"] = Sign(Dx),
                ["hy"] = Hash(Dx),
                ["sy"] = Sign(Dx),
            };
            return new BenchCase($"B{B} Dx=Dy={Dx} d={dd}", dd, Call(inputs, P("d", S(dd), "signed_sqrt", "true", "normalize", "true")),
                4 * N(B, 2 * Dx) + 24.0 * Dx + 4 * N(B, dd), B * (3 * 5.0 * dd * Math.Log2(dd) + 6.0 * dd), Bk(B, dd));
        }).ToList();
    }

    public static PreparedCall PrepareCompactBilinear(Device d, OpCall c) => Stage(d, c, Spec("compact_bilinear_pool"), (i, _, w) =>
        d.CompactBilinearPool(i("x"), i("y"), i("hx"), i("sx"), i("hy"), i("sy"), w("out"), c.Bool("signed_sqrt", false),
            c.Bool("normalize", false)));

    // ---------------- signal ----------------

    /// <summary>pool1d avg k=3 s=2 p=1 [32,256,L] (audio / time-series frontends).</summary>
    public static IReadOnlyList<BenchCase> Pool1d(Device d)
    {
        var r = new RandomTensors(31);
        (int B, int C, int[] Ls) = Small(d) ? (1, 3, new[] { 32, 256 }) : (32, 256, new[] { 1024, 4096, 16384 });
        return Ls.Select(l =>
        {
            int ol = (l + 2 - 3) / 2 + 1;
            return new BenchCase($"[{B},{C},{l}] avg k3 s2 p1", l,
                Call(new() { ["x"] = r.Floats(DType.F32, -2, 2, B, C, l) }, P("mode", "avg", "kernel", "3", "stride", "2", "padding", "1")),
                4 * N(B, C, l) + 4 * N(B, C, ol), 3 * N(B, C, ol), Bk((long)B * C, l));
        }).ToList();
    }

    public static PreparedCall PreparePool1d(Device d, OpCall c) => Stage(d, c, Spec("pool1d"), (i, _, w) =>
        d.Pool1d(i("x"), w("out"), SignalPooling.ParseMode(c.Text("mode")), c.Int("kernel", 0), c.Int("stride", -1), c.Int("padding", 0)));

    // ---------------- heads ----------------

    private static readonly HashSet<string> NonWeights = ["hidden", "layers", "attention_mask", "prefix_len"];

    /// <summary>Builds the head once (weights uploaded), uploads the activations; the run is the head's device path.</summary>
    public static PreparedCall PrepareHead(Device d, OpCall c, bool multiLayer)
    {
        var head = PoolingHead.FromTensors(d, c.Inputs.Where(kv => !NonWeights.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value),
            c.Int("heads", 0));
        bool normalize = c.Bool("normalize", true);
        var x = c.Input(multiLayer ? "layers" : "hidden");
        var dx = d.Upload(x);
        var mask = c.Optional("attention_mask") is { } m ? d.Upload(m) : null;
        var pre = c.Optional("prefix_len") is { } pl ? d.Upload(pl) : null;
        var o = d.Allocate(DType.F32, x.Shape[0], x.Shape[2]);
        Action run = multiLayer ? () => head.MultiLayer(dx, o, normalize)
            : HeadsFamily.ParseVariant(c.Text("variant")) == LatentAttentionVariant.Resampler ? () => head.Resampler(dx, mask, o, normalize)
            : () => head.NvEmbed(dx, mask, pre, o, normalize);
        return new PreparedCall(run, [head, dx, o, .. mask is null ? Array.Empty<IDisposable>() : [mask],
            .. pre is null ? Array.Empty<IDisposable>() : [pre]]);
    }

    public static PreparedCall PrepareHeadBackward(Device d, OpCall c, bool multiLayer)
    {
        var head = PoolingHead.FromTensors(d, c.Inputs.Where(kv => !NonWeights.Contains(kv.Key) && kv.Key != "d_out")
            .ToDictionary(kv => kv.Key, kv => kv.Value), c.Int("heads", 0));
        bool normalize = c.Bool("normalize", true);
        var x = c.Input(multiLayer ? "layers" : "hidden");
        var dx = d.Upload(x);
        var dOut = d.Upload(c.Input("d_out"));
        var mask = c.Optional("attention_mask") is { } m ? d.Upload(m) : null;
        var pre = c.Optional("prefix_len") is { } pl ? d.Upload(pl) : null;
        var gx = d.Allocate(DType.F32, x.ShapeArray);
        var sd = head.StateDict();
        var gw = head.GradientNames(multiLayer).ToDictionary(n => n, n => d.Allocate(DType.F32, sd[n[2..]].ShapeArray));
        Action run = multiLayer ? () => head.MultiLayerBackward(dx, dOut, gx, gw, normalize)
            : HeadsFamily.ParseVariant(c.Text("variant")) == LatentAttentionVariant.Resampler
                ? () => head.ResamplerBackward(dx, mask, dOut, gx, gw, normalize)
                : () => head.NvEmbedBackward(dx, mask, pre, dOut, gx, gw, normalize);
        return new PreparedCall(run, [head, dx, dOut, gx, .. gw.Values, .. mask is null ? Array.Empty<IDisposable>() : [mask],
            .. pre is null ? Array.Empty<IDisposable>() : [pre]]);
    }

    /// <summary>latent_attention_pool_backward (resampler) / multi_layer_pool_backward: D=256, R=16 latents, 4 heads × 64,
    /// F=512, B=4, N = 64..128 tokens (L = 13..25 layers). Flops: about twice the forward's (recompute + two GEMMs per
    /// Linear backward): 3·(2·B·N·D·2·H·dh + 4·B·H·R·N·dh + 2·B·R·(D·H·dh·2 + 3·D·F)).</summary>
    public static IReadOnlyList<BenchCase> HeadsBackward(Device d, bool multiLayer)
    {
        var r = new RandomTensors(multiLayer ? 35 : 34);
        (int B, int D, int R, int H, int Dh, int F, int[] Ns) = Small(d) ? (2, 16, 3, 2, 4, 16, new[] { 4, 8 })
            : (4, 256, 16, 4, 64, 512, multiLayer ? new[] { 13, 25 } : new[] { 64, 128 });
        return Ns.Select(n =>
        {
            var inputs = HeadsFamily.RandomWeights(r, D, R, H, Dh, F, multiLayer ? n : 0);
            inputs[multiLayer ? "layers" : "hidden"] = r.Floats(DType.F32, -2, 2, B, n, D);
            inputs["d_out"] = r.Floats(DType.F32, -1, 1, B, D);
            var ps = P("heads", S(H), "normalize", "true");
            if (!multiLayer) ps["variant"] = "resampler";
            double hd = (double)H * Dh;
            double flops = 3 * (2.0 * B * n * D * 2 * hd + 4.0 * B * H * R * n * Dh + 2.0 * B * R * (D * hd * 2 + 3.0 * D * F));
            double weights = 8 * (R * (double)D + 4 * hd * D + 3 * (double)F * D);
            return new BenchCase($"[{B},{n},{D}] R{R} H{H}x{Dh} F{F}", n, Call(inputs, ps), weights + 8 * N(B, n, D) + 4 * N(B, D), flops,
                Bk((long)B * n, D));
        }).ToList();
    }

    /// <summary>latent_attention_pool resampler, D=768, R=64 latents, 8 heads × 64, F=3072, B=8, N = 128..512 tokens.
    /// Flops: the K/V projection (2·B·N·D·2·H·dh), attention (4·B·H·R·(N+R)·dh) and the per-latent GEMMs
    /// (2·B·R·(D·H·dh·2 + 3·D·F)).</summary>
    public static IReadOnlyList<BenchCase> Heads(Device d, bool multiLayer)
    {
        var r = new RandomTensors(multiLayer ? 33 : 32);
        (int B, int D, int R, int H, int Dh, int F, int[] Ns) = Small(d) ? (1, 16, 3, 2, 4, 16, new[] { 4, 8 }) : (8, 768, 64, 8, 64, 3072,
            multiLayer ? new[] { 13, 25 } : new[] { 128, 512 });
        return Ns.Select(n =>
        {
            var inputs = HeadsFamily.RandomWeights(r, D, R, H, Dh, F, multiLayer ? n : 0);
            inputs[multiLayer ? "layers" : "hidden"] = r.Floats(DType.F32, -2, 2, B, n, D);
            var ps = P("heads", S(H), "normalize", "true");
            if (!multiLayer) ps["variant"] = "resampler";
            double hd = (double)H * Dh;
            double flops = 2.0 * B * n * D * 2 * hd + 4.0 * B * H * R * (n + R) * Dh + 2.0 * B * R * (D * hd * 2 + 3.0 * D * F);
            double weights = 4 * (R * (double)D + 3 * hd * D + 2 * (double)F * D + (double)F * D);
            return new BenchCase($"[{B},{n},{D}] R{R} H{H}x{Dh} F{F}", n, Call(inputs, ps), weights + 4 * N(B, n, D) + 4 * N(B, D), flops,
                Bk((long)B * n, D));
        }).ToList();
    }
}
