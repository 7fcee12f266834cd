using NUnit.Framework;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Heads;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>latent_attention_pool_backward and multi_layer_pool_backward beyond VectorTests: the vectors and the randomized
/// cases on every device, the gradients against central finite differences of a float64 forward, the forward of that
/// recompute against the head's own forward, thread-count determinism on simd, bad input on every device and the simd
/// allocation guarantee.</summary>
[NonParallelizable]
public class HeadsBackwardTests
{
    private static readonly string[] Ops = ["latent_attention_pool_backward", "multi_layer_pool_backward"];

    public static IEnumerable<TestCaseData> VectorCases()
    {
        var dir = Paths.Vectors();
        if (dir is null) yield break;
        foreach (var op in Ops)
            foreach (var file in Directory.GetFiles(Path.Combine(dir, op), "*.safetensors").Order())
                foreach (var id in TestDevices.All())
                    yield return new TestCaseData(file, id)
                        .SetName($"HeadsBackward vector {op}/{Path.GetFileNameWithoutExtension(file)} on {id}");
    }

    [TestCaseSource(nameof(VectorCases))]
    public void VectorPasses(string file, string device)
    {
        var r = VectorRunner.Run(file, TestDevices.Get(device));
        Assert.That(r.Pass, Is.True, r.Message);
    }

    public static IEnumerable<TestCaseData> RandomCases() =>
        from op in Ops from id in TestDevices.NonReference() select new TestCaseData(op, id).SetName($"HeadsBackward random {op} on {id}");

    [TestCaseSource(nameof(RandomCases))]
    public void RandomizedCasesMatchReference(string op, string device)
    {
        foreach (int seed in new[] { 1, 2, 3 })
        {
            var row = Conformance.Run(OpRegistry.All[op], TestDevices.Get(device), TestDevices.Get("reference"), seed);
            Assert.That(row.Failed, Is.Zero, row.Message);
            Assert.That(row.Cases, Is.GreaterThanOrEqualTo(7));
        }
    }

    // ------------------------------------------------------------------ finite differences

    private sealed record Fd(string Name, LatentAttentionVariant Variant, bool MultiLayer, bool Mask, bool Prefix, bool Normalize, int P);

    private static readonly Fd[] FdCases =
    [
        new("resampler", LatentAttentionVariant.Resampler, false, false, false, true, 0),
        new("resampler mask, empty row, no normalize", LatentAttentionVariant.Resampler, false, true, false, false, 0),
        new("nvembed prefix + mask", LatentAttentionVariant.NvEmbed, false, true, true, true, 0),
        new("nvembed no normalize", LatentAttentionVariant.NvEmbed, false, false, false, false, 0),
        new("multi_layer L < P", LatentAttentionVariant.Resampler, true, false, false, true, 5),
    ];

    public static IEnumerable<TestCaseData> FdNames() =>
        FdCases.Select(c => new TestCaseData(c.Name).SetName($"HeadsBackward fd {c.Name}"));

    [TestCaseSource(nameof(FdNames))]
    public void GradientsMatchFiniteDifferencesOfAFloat64Forward(string name)
    {
        var fc = FdCases.Single(c => c.Name == name);
        const int B = 2, N = 4, D = 6, R = 3, H = 2, Dh = 3, F = 5;
        var rt = new RandomTensors(7);
        var w = HeadsFamily.RandomWeights(rt, D, R, H, Dh, F, fc.P);
        var x = rt.Floats(DType.F32, -2, 2, B, N, D);
        var dOut = rt.Floats(DType.F32, -1, 1, B, D);
        HostTensor? mask = null, prefix = null;
        var keep = new byte[B * N];
        Array.Fill(keep, (byte)1);
        if (fc.Mask)
        {
            long[] m = [0, 0, 0, 0, 1, 0, 1, 1]; // row 0 keeps no token
            mask = HostTensor.From(m, B, N);
            for (int i = 0; i < m.Length; i++) keep[i] = (byte)m[i];
        }
        if (fc.Prefix)
        {
            prefix = HostTensor.From(new long[] { 1, 1 }, B);
            // row 1 keeps tokens 0, 2, 3: the prefix drops token 0 (row 0 keeps nothing)
            keep[N + 0] = 0;
        }
        var reference = TestDevices.Get("reference");
        using var head = PoolingHead.FromTensors(reference, w, H);
        var grads = fc.MultiLayer ? head.MultiLayerBackward(x, dOut, fc.Normalize)
            : fc.Variant == LatentAttentionVariant.Resampler ? head.ResamplerBackward(x, mask, dOut, fc.Normalize)
            : head.NvEmbedBackward(x, mask, prefix, dOut, fc.Normalize);
        var hw = head.WeightArrays;
        var dims = new HeadDims(B, N, D, R, H, Dh, F, fc.MultiLayer ? fc.P : 0, fc.Variant == LatentAttentionVariant.NvEmbed, fc.MultiLayer,
            fc.Normalize);
        var sh = new HeadBackwardShared<double>(dims);
        var s = new HeadBackwardScratch<double>(dims);
        var xs = x.AsSpan<float>().ToArray();
        var dout = dOut.AsSpan<float>().ToArray();
        var o = new double[D];
        bool hasKeep = dims.NvEmbed || fc.Mask;
        double Loss()
        {
            double l = 0;
            var x0 = new float[N * D];
            for (int b = 0; b < B; b++)
            {
                for (int i = 0; i < N * D; i++) x0[i] = fc.MultiLayer ? xs[b * N * D + i] + hw.PosEmb[i] : xs[b * N * D + i];
                HeadBackward<double>.Forward(dims, hw, sh, s, x0, hasKeep ? keep.AsSpan(b * N, N) : default, o);
                for (int c = 0; c < D; c++) l += dout[b * D + c] * o[c];
            }
            return l;
        }
        // the recompute's forward is the head's forward (so the differences below test the backward of the real op)
        var fwd = fc.MultiLayer ? head.MultiLayer(x, fc.Normalize)
            : fc.Variant == LatentAttentionVariant.Resampler ? head.Resampler(x, mask, fc.Normalize)
            : head.NvEmbed(x, mask, prefix, fc.Normalize);
        var x0b = new float[N * D];
        for (int b = 0; b < B; b++)
        {
            for (int i = 0; i < N * D; i++) x0b[i] = fc.MultiLayer ? xs[b * N * D + i] + hw.PosEmb[i] : xs[b * N * D + i];
            HeadBackward<double>.Forward(dims, hw, sh, s, x0b, hasKeep ? keep.AsSpan(b * N, N) : default, o);
            for (int c = 0; c < D; c++) Assert.That(o[c], Is.EqualTo(fwd.AsSpan<float>()[b * D + c]).Within(2e-5), $"forward [{b},{c}]");
        }
        void Check(float[] values, int index, float analytic, string what)
        {
            const float h = 1e-3f;
            float keepV = values[index];
            values[index] = keepV + h; float up = values[index]; double lu = Loss();
            values[index] = keepV - h; float down = values[index]; double ld = Loss();
            values[index] = keepV;
            double fd = (lu - ld) / ((double)up - down);
            Assert.That(analytic, Is.EqualTo(fd).Within(2e-3 + 2e-3 * Math.Abs(fd)), $"{name}: {what}[{index}]");
        }
        string dxName = fc.MultiLayer ? "d_layers" : "d_hidden";
        var dx = grads[dxName].AsSpan<float>().ToArray();
        for (int i = 0; i < xs.Length; i++) Check(xs, i, dx[i], dxName);
        var arrays = new Dictionary<string, float[]>
        {
            [PoolingHead.Latents] = hw.Latents,
            [PoolingHead.PosEmb] = hw.PosEmb,
            [PoolingHead.Norm0W] = hw.N0W,
            [PoolingHead.Norm0B] = hw.N0B,
            [PoolingHead.NormCtxW] = hw.NCW,
            [PoolingHead.NormCtxB] = hw.NCB,
            [PoolingHead.ToQ] = hw.Wq,
            [PoolingHead.ToKv] = hw.Wkv,
            [PoolingHead.ToOut] = hw.Wout,
            [PoolingHead.Norm1W] = hw.N1W,
            [PoolingHead.Norm1B] = hw.N1B,
            [PoolingHead.Net0W] = hw.W1,
            [PoolingHead.Net0B] = hw.B1,
            [PoolingHead.Net2W] = hw.W2,
            [PoolingHead.Net2B] = hw.B2,
        };
        var pick = new Random(3);
        foreach (var gname in head.GradientNames(fc.MultiLayer))
        {
            var values = arrays[gname[2..]];
            var g = grads[gname].AsSpan<float>().ToArray();
            Assert.That(g, Has.Length.EqualTo(values.Length), gname);
            for (int t = 0; t < 6; t++)
            {
                int i = pick.Next(values.Length);
                Check(values, i, g[i], gname);
            }
        }
        if (fc.MultiLayer)
        {
            var dp = grads["d_pos_emb.weight"].AsSpan<float>();
            for (int i = N * D; i < dp.Length; i++) Assert.That(dp[i], Is.Zero, $"d_pos_emb.weight row {i / D} >= L");
            // and rows < L are the batch sum of d_layers
            for (int i = 0; i < N * D; i++) Assert.That(dp[i], Is.EqualTo(dx[i] + dx[N * D + i]).Within(1e-5), $"d_pos_emb.weight[{i}]");
        }
    }

    // ------------------------------------------------------------------ determinism

    [Test]
    public void SimdIsTheSameOnEveryThreadCount()
    {
        foreach (bool nv in new[] { false, true })
        {
            const int B = 19, N = 9, D = 16, R = 4, H = 2, Dh = 8, F = 32; // B > 2 waves of 8
            var rt = new RandomTensors(11);
            using var head = PoolingHead.FromTensors(TestDevices.Get("reference"), HeadsFamily.RandomWeights(rt, D, R, H, Dh, F, 0), H);
            var dims = new HeadDims(B, N, D, R, H, Dh, F, 0, nv, false, true);
            var x = rt.Floats(DType.F32, -2, 2, B, N, D).AsSpan<float>().ToArray();
            var dout = rt.Floats(DType.F32, -1, 1, B, D).AsSpan<float>().ToArray();
            float[]? first = null;
            foreach (int workers in new[] { 1, 2, 3, 8 })
            {
                var run = new HeadBackwardRun<float>(dims, head.WeightArrays);
                x.CopyTo(run.X0); dout.CopyTo(run.DOut);
                for (int i = 0; i < run.Keep.Length; i++) run.Keep[i] = (byte)(i % 5 == 0 ? 0 : 1);
                run.HasKeep = true;
                run.Run(new WorkerPool(workers));
                var all = run.DX.Concat(run.Grads).ToArray();
                if (first is null) first = all;
                else Assert.That(all, Is.EqualTo(first), $"nvembed={nv}, {workers} workers");
            }
        }
    }

    // ------------------------------------------------------------------ bad input

    private static Dictionary<string, HostTensor> W(int posRows = 6) =>
        HeadsFamily.RandomWeights(new RandomTensors(5), 8, 3, 2, 4, 8, posRows);

    private static Dictionary<string, DeviceTensor> Grads(Device d, PoolingHead head, bool multiLayer)
    {
        var sd = head.StateDict();
        return head.GradientNames(multiLayer).ToDictionary(n => n, n => d.Allocate(DType.F32, sd[n[2..]].ShapeArray));
    }

    public static IEnumerable<TestCaseData> BadInputs()
    {
        var x = HostTensor.Zeros(DType.F32, 2, 4, 8);
        yield return BadInput.Case("dOut", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(), 2);
            h.ResamplerBackward(x, null, HostTensor.Zeros(DType.F32, 2, 7));
        }).SetName("HeadsBackward bad dOut shape (resampler)");
        yield return BadInput.Case("dOut", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(), 2);
            h.MultiLayerBackward(x, HostTensor.Zeros(DType.F32, 3, 8));
        }).SetName("HeadsBackward bad dOut shape (multi_layer)");
        yield return BadInput.Case("dOut", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(), 2);
            h.NvEmbedBackward(x, null, null, HostTensor.Zeros(DType.F16, 2, 8));
        }).SetName("HeadsBackward bad dOut dtype (nvembed)");
        yield return BadInput.Case("hidden", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(), 2);
            h.NvEmbedBackward(HostTensor.Zeros(DType.F32, 2, 4, 9), null, null, HostTensor.Zeros(DType.F32, 2, 8));
        }).SetName("HeadsBackward hidden of another width");
        yield return BadInput.Case("layers", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(3), 2);
            h.MultiLayerBackward(x, HostTensor.Zeros(DType.F32, 2, 8));
        }).SetName("HeadsBackward layers beyond pos_emb rows");
        yield return BadInput.Case("weights", d =>
        {
            var w = W();
            w[PoolingHead.Net2W] = HostTensor.Zeros(DType.F32, 8, 5);
            using var h = PoolingHead.FromTensors(d, w, 2);
        }).SetName("HeadsBackward weights of other sizes");
        yield return BadInput.Case("attentionMask", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(), 2);
            h.ResamplerBackward(x, HostTensor.Zeros(DType.I64, 2, 5), HostTensor.Zeros(DType.F32, 2, 8));
        }).SetName("HeadsBackward mask of the wrong shape");
        yield return BadInput.Case("prefixLen", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(), 2);
            h.NvEmbedBackward(x, null, HostTensor.From(new long[] { 1, -1 }, 2), HostTensor.Zeros(DType.F32, 2, 8));
        }).SetName("HeadsBackward negative prefix_len");
        yield return BadInput.Case("dHidden", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(), 2);
            using var dx = d.Upload(x); using var go = d.Upload(HostTensor.Zeros(DType.F32, 2, 8));
            using var gx = d.Allocate(DType.F32, 2, 4, 7);
            var gw = Grads(d, h, false);
            try { h.ResamplerBackward(dx, null, go, gx, gw); }
            finally { foreach (var t in gw.Values) t.Dispose(); }
        }).SetName("HeadsBackward dHidden of the wrong shape");
        yield return BadInput.Case("dWeights", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(), 2);
            using var dx = d.Upload(x); using var go = d.Upload(HostTensor.Zeros(DType.F32, 2, 8));
            using var gx = d.Allocate(DType.F32, 2, 4, 8);
            var gw = Grads(d, h, false);
            gw["d_cross_attend_blocks.0.fn.to_kv.weight"].Dispose();
            gw["d_cross_attend_blocks.0.fn.to_kv.weight"] = d.Allocate(DType.F32, 8, 8);
            try { h.NvEmbedBackward(dx, null, null, go, gx, gw); }
            finally { foreach (var t in gw.Values) t.Dispose(); }
        }).SetName("HeadsBackward a weight gradient of the wrong shape");
        yield return BadInput.Case("dWeights", d =>
        {
            using var h = PoolingHead.FromTensors(d, W(), 2);
            using var dx = d.Upload(x); using var go = d.Upload(HostTensor.Zeros(DType.F32, 2, 8));
            using var gx = d.Allocate(DType.F32, 2, 4, 8);
            var gw = Grads(d, h, false); // no d_pos_emb.weight: multi_layer needs it
            try { h.MultiLayerBackward(dx, go, gx, gw); }
            finally { foreach (var t in gw.Values) t.Dispose(); }
        }).SetName("HeadsBackward a missing weight gradient");
    }

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputIsRejectedOnEveryDevice(string param, Action<Device> call) => BadInput.AssertRejectedEverywhere(param, call);

    // ------------------------------------------------------------------ allocation

    [Test]
    public void SteadyStateSimdBackwardAllocatesNothing()
    {
        var simd = TestDevices.Get("simd");
        foreach (bool multi in new[] { false, true })
        {
            var w = HeadsFamily.RandomWeights(new RandomTensors(9), 16, 4, 2, 8, 32, multi ? 6 : 0);
            using var head = PoolingHead.FromTensors(simd, w, 2);
            var rt = new RandomTensors(10);
            using var x = simd.Upload(rt.Floats(DType.F32, -2, 2, 3, 5, 16));
            using var go = simd.Upload(rt.Floats(DType.F32, -1, 1, 3, 16));
            using var mask = simd.Upload(HostTensor.From(new long[] { 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1 }, 3, 5));
            using var gx = simd.Allocate(DType.F32, 3, 5, 16);
            var gw = Grads(simd, head, multi);
            Action run = multi ? () => head.MultiLayerBackward(x, go, gx, gw) : () => head.NvEmbedBackward(x, mask, null, go, gx, gw);
            for (int i = 0; i < 3; i++) run();
            long least = long.MaxValue;
            for (int i = 0; i < 5 && least != 0; i++)
            {
                long before = GC.GetTotalAllocatedBytes(true);
                run();
                least = Math.Min(least, GC.GetTotalAllocatedBytes(true) - before);
            }
            foreach (var t in gw.Values) t.Dispose();
            Assert.That(least, Is.Zero, $"multi_layer={multi}: bytes per steady-state call");
        }
    }
}
