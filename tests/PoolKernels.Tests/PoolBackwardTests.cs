using NUnit.Framework;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Sequence;
using PoolKernels.Kernels.Spatial;

namespace PoolKernels.Tests;

/// <summary>sequence_pool_backward and spatial_pool_backward beyond the vectors and the randomized conformance (which run
/// every backend against the reference): the gradients against central finite differences of the reference forward
/// L = Σ d_out ∘ out, the same bits on every simd thread count, bad input on every device and the simd allocation
/// guarantee.</summary>
[NonParallelizable]
public class PoolBackwardTests
{
    /// <summary>n distinct values 0.05 apart (shuffled, offset so none is within 0.01 of 0): no ties and no GeM clamp within
    /// a finite-difference step.</summary>
    private static float[] Distinct(int seed, int n, float offset = 0.013f)
    {
        var r = new Random(seed);
        var v = Enumerable.Range(0, n).Select(i => (i - n / 2) * 0.05f + offset).ToArray();
        r.Shuffle(v);
        return v;
    }

    private static float[] Uniform(int seed, int n, float lo, float hi)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(lo + r.NextDouble() * (hi - lo))).ToArray();
    }

    private const int B = 3, T = 5, D = 4;

    /// <summary>Left padding, an empty row (prefix longer than its kept tokens) and a row with prefix 1.</summary>
    private static readonly long[] Mask = [0, 0, 1, 1, 1, /**/ 1, 1, 0, 0, 0, /**/ 1, 0, 1, 1, 1];
    private static readonly long[] Prefix = [0, 2, 1];

    public static IEnumerable<TestCaseData> SequenceCases()
    {
        foreach (var id in TestDevices.All())
        {
            const string all = "cls,last_token,mean,mean_sqrt_len,weighted_mean,max,gem";
            yield return new TestCaseData(id, all, 26, true, Array.Empty<float>())
                .SetName($"sequence all modes dims 26 normalize on {id}");
            yield return new TestCaseData(id, "gem,mean", -1, true, new[] { 2.5f, 4f }).SetName($"sequence ggem G=2 normalize on {id}");
            yield return new TestCaseData(id, "max,gem,weighted_mean", -1, false, new[] { 3f }).SetName($"sequence ggem G=1 on {id}");
        }
    }

    [TestCaseSource(nameof(SequenceCases))]
    public void SequenceGradientsMatchFiniteDifferences(string id, string modes, int dims, bool normalize, float[] pGroups)
    {
        var d = TestDevices.Get(id);
        var x = modes.Contains("max", StringComparison.Ordinal) || modes.Contains("cls", StringComparison.Ordinal)
            ? Distinct(1, B * T * D) : Uniform(1, B * T * D, 0.1f, 2f);
        var o = new SequencePoolOptions(SequencePoolOptions.ParseModes(modes)) { Dims = dims, Normalize = normalize, PGroups = pGroups };
        int w = o.OutputWidth(D);
        var go = Uniform(2, B * w, -1, 1);
        var mask = HostTensor.From(Mask, B, T);
        var prefix = HostTensor.From(Prefix, B);
        var (dh, dp) = d.SequencePoolBackward(HostTensor.From(x, B, T, D), mask, HostTensor.From(go, B, w), o, prefix);
        Assert.That(dp is null, Is.EqualTo(pGroups.Length == 0));
        double Loss(float[] xs, SequencePoolOptions opt)
        {
            var outp = new float[B * w];
            var modesSpan = opt.Modes.ToArray();
            SequencePoolReference.Run<float, long, long>(xs, Mask, Prefix, outp, B, T, D, modesSpan, opt.P, opt.Eps, w, opt.Normalize,
                -1, opt.PGroupsArray);
            double l = 0;
            for (int i = 0; i < outp.Length; i++) l += (double)go[i] * outp[i];
            return l;
        }
        const float h = 1e-3f;
        var g = dh.AsSpan<float>();
        for (int i = 0; i < x.Length; i++)
        {
            float keep = x[i];
            x[i] = keep + h; double up = Loss(x, o);
            x[i] = keep - h; double down = Loss(x, o);
            x[i] = keep;
            double fd = (up - down) / (2 * h);
            Assert.That(g[i], Is.EqualTo(fd).Within(2e-3 + 2e-3 * Math.Abs(fd)), $"d_hidden[{i}]");
        }
        for (int k = 0; k < pGroups.Length; k++)
        {
            var pu = (float[])pGroups.Clone(); pu[k] += h;
            var pd = (float[])pGroups.Clone(); pd[k] -= h;
            double fd = (Loss(x, o with { PGroups = pu }) - Loss(x, o with { PGroups = pd })) / (2 * h);
            Assert.That(dp!.AsSpan<float>()[k], Is.EqualTo(fd).Within(2e-3 + 2e-3 * Math.Abs(fd)), $"d_p_groups[{k}]");
        }
    }

    [Test]
    public void SequenceSimdIsTheSameOnEveryThreadCount()
    {
        const int b = 5, t = 20, dim = 150;
        var x = Uniform(3, b * t * dim, -1, 2);
        var mask = new byte[b * t];
        for (int i = 0; i < mask.Length; i++) mask[i] = (byte)(i % 7 == 3 ? 0 : 1);
        var go = Uniform(4, b * 2 * dim, -1, 1);
        var q = new PoolBackwardParams
        {
            Batch = b,
            Len = t,
            Dim = dim,
            Dims = 2 * dim,
            ModeCount = 2,
            Modes = (int)SequencePoolMode.Gem | (int)SequencePoolMode.Max << 4,
            P = 3,
            Eps = 1e-6f,
            GroupSize = dim / 3,
            Groups = 3,
            MaskSize = 1,
            Normalize = 1,
            StrideB = t * dim,
            StrideT = dim,
            StrideD = 1,
        };
        float[] pg = [2f, 3.5f, 1.5f];
        float[]? first = null;
        foreach (int workers in new[] { 1, 2, 3, 8 })
        {
            var dx = new float[x.Length]; var dp = new float[3];
            SequencePoolBackwardSimd.Run<float>(x, mask, default, go, pg, dx, dp, q, new WorkerPool(workers));
            var all = dx.Concat(dp).ToArray();
            if (first is null) first = all;
            else Assert.That(all, Is.EqualTo(first), $"{workers} workers");
        }
    }

    /// <summary>Spatial [2,6,3,4] (with p_groups [3] or [2]: groups of channels); the second row's cells are all invalid.</summary>
    private const int SB = 2, SC = 6, SH = 3, SW = 4;
    private static readonly byte[] Valid = [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    public static IEnumerable<TestCaseData> SpatialCases()
    {
        foreach (var id in TestDevices.All())
            foreach (var (mode, nhwc, norm, groups) in new[]
            {
                (SpatialPoolMode.Avg, false, true, 0), (SpatialPoolMode.Max, true, false, 0), (SpatialPoolMode.Max, false, true, 0),
                (SpatialPoolMode.Gem, false, false, 3), (SpatialPoolMode.Gem, true, true, 2),
            })
                yield return new TestCaseData(id, mode, nhwc, norm, groups)
                    .SetName($"spatial {mode} {(nhwc ? "nhwc" : "nchw")} normalize={norm} G={groups} on {id}");
    }

    [TestCaseSource(nameof(SpatialCases))]
    public void SpatialGradientsMatchFiniteDifferences(string id, SpatialPoolMode mode, bool nhwc, bool normalize, int groups)
    {
        var d = TestDevices.Get(id);
        int n = SB * SC * SH * SW;
        var x = mode == SpatialPoolMode.Max ? Distinct(7, n) : Uniform(7, n, 0.1f, 2f);
        var pg = groups == 0 ? Array.Empty<float>() : Uniform(8, groups, 1.5f, 4f);
        var o = new SpatialPoolOptions { Mode = mode, Nhwc = nhwc, Normalize = normalize, P = 3.5f, PGroups = pg };
        var go = Uniform(9, SB * SC, -1, 1);
        int[] shape = nhwc ? [SB, SH, SW, SC] : [SB, SC, SH, SW];
        var (dx, dp) = d.SpatialPoolBackward(HostTensor.From(x, shape), HostTensor.From(go, SB, SC), o, HostTensor.From(Valid, SB, SH, SW));
        Assert.That(dp is null, Is.EqualTo(groups == 0));
        double Loss(float[] xs, SpatialPoolOptions opt)
        {
            var outp = new float[SB * SC];
            SpatialPoolReference.Run(xs, Valid, 1, outp, SB, SC, SH, SW, nhwc, mode, opt.P, opt.Eps, opt.Normalize, opt.PGroupsArray);
            double l = 0;
            for (int i = 0; i < outp.Length; i++) l += (double)go[i] * outp[i];
            return l;
        }
        const float h = 1e-3f;
        var g = dx.AsSpan<float>();
        for (int i = 0; i < n; i++)
        {
            float keep = x[i];
            x[i] = keep + h; double up = Loss(x, o);
            x[i] = keep - h; double down = Loss(x, o);
            x[i] = keep;
            double fd = (up - down) / (2 * h);
            Assert.That(g[i], Is.EqualTo(fd).Within(2e-3 + 2e-3 * Math.Abs(fd)), $"d_x[{i}]");
        }
        for (int k = 0; k < groups; k++)
        {
            var pu = (float[])pg.Clone(); pu[k] += h;
            var pd = (float[])pg.Clone(); pd[k] -= h;
            double fd = (Loss(x, o with { PGroups = pu }) - Loss(x, o with { PGroups = pd })) / (2 * h);
            Assert.That(dp!.AsSpan<float>()[k], Is.EqualTo(fd).Within(2e-3 + 2e-3 * Math.Abs(fd)), $"d_p_groups[{k}]");
        }
    }

    [Test]
    public void SpatialSimdIsTheSameOnEveryThreadCount()
    {
        const int b = 4, c = 200, hh = 5, ww = 6;
        var x = Uniform(10, b * c * hh * ww, -0.5f, 2);
        var go = Uniform(11, b * c, -1, 1);
        float[] pg = [2f, 3.5f, 1.5f, 4f];
        foreach (bool nhwc in new[] { false, true })
        {
            var q = SpatialPoolBackwardParams.Of(b, c, hh, ww, nhwc, SpatialPoolMode.Gem, 3, 1e-6f, true, pg.Length, 0);
            float[]? first = null;
            foreach (int workers in new[] { 1, 2, 3, 8 })
            {
                var dx = new float[x.Length]; var dp = new float[pg.Length];
                SequencePoolBackwardSimd.Run<float>(x, default, default, go, pg, dx, dp, q, new WorkerPool(workers));
                var all = dx.Concat(dp).ToArray();
                if (first is null) first = all;
                else Assert.That(all, Is.EqualTo(first), $"{(nhwc ? "nhwc" : "nchw")} {workers} workers");
            }
        }
    }

    public static IEnumerable<TestCaseData> BadInputs()
    {
        HostTensor Z(DType t, params int[] s) => HostTensor.Zeros(t, s);
        HostTensor X() => Z(DType.F32, 2, 3, 4);
        HostTensor M() => Z(DType.I64, 2, 3);
        var mean = new SequencePoolOptions(SequencePoolMode.Mean);
        var gem = new SequencePoolOptions(SequencePoolMode.Gem) { PGroups = new[] { 3f, 2f } };
        yield return Bad("dOut", "seq d_out shape", d => d.SequencePoolBackward(X(), M(), Z(DType.F32, 2, 5), mean));
        yield return Bad("dOut", "seq d_out dtype", d => d.SequencePoolBackward(X(), M(), Z(DType.F16, 2, 4), mean));
        yield return Bad("hidden", "seq hidden dtype", d => d.SequencePoolBackward(Z(DType.I32, 2, 3, 4), M(), Z(DType.F32, 2, 4), mean));
        yield return Bad("attentionMask", "seq mask dtype",
            d => d.SequencePoolBackward(Z(DType.F32, 2, 3, 4), Z(DType.F32, 2, 3), Z(DType.F32, 2, 4), mean));
        yield return Bad("dims", "seq dims", d => d.SequencePoolBackward(X(), M(), Z(DType.F32, 2, 9),
            mean with { Dims = 9 }));
        yield return Bad("dPGroups", "seq d_p_groups without p_groups", d =>
        {
            using var h = d.Upload(X()); using var m = d.Upload(M()); using var go = d.Upload(Z(DType.F32, 2, 4));
            using var dh = d.Allocate(DType.F32, 2, 3, 4); using var dp = d.Allocate(DType.F32, 2);
            d.SequencePoolBackward(h, m, go, dh, mean, null, dp);
        });
        yield return Bad("dPGroups", "seq p_groups without d_p_groups", d =>
        {
            using var h = d.Upload(X()); using var m = d.Upload(M()); using var go = d.Upload(Z(DType.F32, 2, 4));
            using var dh = d.Allocate(DType.F32, 2, 3, 4);
            d.SequencePoolBackward(h, m, go, dh, gem);
        });
        yield return Bad("dPGroups", "seq d_p_groups shape", d =>
        {
            using var h = d.Upload(X()); using var m = d.Upload(M()); using var go = d.Upload(Z(DType.F32, 2, 4));
            using var dh = d.Allocate(DType.F32, 2, 3, 4); using var dp = d.Allocate(DType.F32, 3);
            d.SequencePoolBackward(h, m, go, dh, gem, null, dp);
        });
        yield return Bad("dHidden", "seq d_hidden dtype", d =>
        {
            using var h = d.Upload(X()); using var m = d.Upload(M()); using var go = d.Upload(Z(DType.F32, 2, 4));
            using var dh = d.Allocate(DType.F16, 2, 3, 4);
            d.SequencePoolBackward(h, m, go, dh, mean);
        });
    }

    public static IEnumerable<TestCaseData> SpatialBadInputs()
    {
        HostTensor Z(DType t, params int[] s) => HostTensor.Zeros(t, s);
        HostTensor X() => Z(DType.F32, 2, 3, 4, 5);
        var avg = new SpatialPoolOptions();
        var gem = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, PGroups = new[] { 3f } };
        yield return Bad("dOut", "spatial d_out shape", d => d.SpatialPoolBackward(X(), Z(DType.F32, 2, 4), avg));
        yield return Bad("dOut", "spatial d_out dtype", d => d.SpatialPoolBackward(X(), Z(DType.BF16, 2, 3), avg));
        yield return Bad("x", "spatial x dtype", d => d.SpatialPoolBackward(Z(DType.F16, 2, 3, 4, 5), Z(DType.F32, 2, 3), avg));
        yield return Bad("valid", "spatial valid shape", d => d.SpatialPoolBackward(X(), Z(DType.F32, 2, 3), avg, Z(DType.U8, 2, 5, 4)));
        yield return Bad("valid", "spatial valid dtype", d => d.SpatialPoolBackward(X(), Z(DType.F32, 2, 3), avg, Z(DType.F32, 2, 4, 5)));
        yield return Bad("PGroups", "spatial p_groups must divide C",
            d => d.SpatialPoolBackward(X(), Z(DType.F32, 2, 3), gem with { PGroups = new[] { 3f, 2f } }));
        yield return Bad("dPGroups", "spatial d_p_groups without p_groups", d =>
        {
            using var x = d.Upload(X()); using var go = d.Upload(Z(DType.F32, 2, 3));
            using var dx = d.Allocate(DType.F32, 2, 3, 4, 5); using var dp = d.Allocate(DType.F32, 1);
            d.SpatialPoolBackward(x, go, dx, avg, null, dp);
        });
        yield return Bad("dPGroups", "spatial p_groups without d_p_groups", d =>
        {
            using var x = d.Upload(X()); using var go = d.Upload(Z(DType.F32, 2, 3));
            using var dx = d.Allocate(DType.F32, 2, 3, 4, 5);
            d.SpatialPoolBackward(x, go, dx, gem);
        });
        yield return Bad("dX", "spatial d_x shape", d =>
        {
            using var x = d.Upload(X()); using var go = d.Upload(Z(DType.F32, 2, 3));
            using var dx = d.Allocate(DType.F32, 2, 3, 5, 4);
            d.SpatialPoolBackward(x, go, dx, avg);
        });
    }

    [TestCaseSource(nameof(SpatialBadInputs))]
    public void SpatialBadInputIsAnArgumentExceptionOnEveryDevice(string param, Action<Device> call) =>
        BadInput.AssertRejectedEverywhere(param, call);

    private static TestCaseData Bad(string param, string what, Action<Device> call) =>
        new TestCaseData(param, call).SetName($"Bad {param}: {what}");

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputIsAnArgumentExceptionOnEveryDevice(string param, Action<Device> call) =>
        BadInput.AssertRejectedEverywhere(param, call);

    [Test]
    public void SimdSteadyStateAllocatesNothing()
    {
        var d = TestDevices.Get("simd");
        var o = new SequencePoolOptions(SequencePoolMode.Mean, SequencePoolMode.Gem)
        {
            Normalize = true,
            PGroups = new[] { 2f, 3f },
        };
        using var h = d.Upload(HostTensor.From(Uniform(5, 4 * 9 * 70, -1, 1), 4, 9, 70));
        using var m = d.Upload(HostTensor.From(Enumerable.Range(0, 36).Select(i => (long)(i % 5 == 0 ? 0 : 1)).ToArray(), 4, 9));
        using var go = d.Upload(HostTensor.From(Uniform(6, 4 * 140, -1, 1), 4, 140));
        using var dh = d.Allocate(DType.F32, 4, 9, 70); using var dp = d.Allocate(DType.F32, 2);
        var so = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, Normalize = true, PGroups = new[] { 2f, 3f } };
        using var x = d.Upload(HostTensor.From(Uniform(7, 2 * 8 * 3 * 3, 0, 1), 2, 8, 3, 3));
        using var v = d.Upload(HostTensor.From(Enumerable.Range(0, 18).Select(i => i % 4 != 0).ToArray(), 2, 3, 3));
        using var sgo = d.Upload(HostTensor.From(Uniform(8, 16, -1, 1), 2, 8));
        using var dx = d.Allocate(DType.F32, 2, 8, 3, 3); using var sdp = d.Allocate(DType.F32, 2);
        // warm past tiered compilation's promotions (their stubs allocate a few bytes once, in the first ~30 calls)
        for (int i = 0; i < 100; i++) { d.SequencePoolBackward(h, m, go, dh, o, null, dp); d.SpatialPoolBackward(x, sgo, dx, so, v, sdp); }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) { d.SequencePoolBackward(h, m, go, dh, o, null, dp); d.SpatialPoolBackward(x, sgo, dx, so, v, sdp); }
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }
}
