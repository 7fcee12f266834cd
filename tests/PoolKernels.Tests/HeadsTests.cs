using NUnit.Framework;
using PoolKernels.IO;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>The pooling heads' building blocks (Linear, LayerNorm, GEGLU, MeanRows) and <see cref="PoolingHead"/> beyond the
/// vectors and the randomized conformance: hand-computed values, odd sizes vs reference, bad input, weights files.</summary>
public class HeadsTests
{
    private static Device Ref => TestDevices.Get("reference");

    private static void Close(HostTensor actual, HostTensor expected, double rtol = 1e-4, double atol = 1e-5)
    {
        Assert.That(actual.Shape.ToArray(), Is.EqualTo(expected.Shape.ToArray()));
        var a = actual.ToDoubles(); var e = expected.ToDoubles();
        for (int i = 0; i < a.Length; i++)
        {
            if (double.IsNaN(e[i])) { Assert.That(a[i], Is.NaN, $"element {i}"); continue; }
            Assert.That(Math.Abs(a[i] - e[i]), Is.LessThanOrEqualTo(atol + rtol * Math.Abs(e[i])), $"element {i}: {a[i]} vs {e[i]}");
        }
    }

    // ------------------------------------------------------------------ Linear

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void LinearHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        var x = HostTensor.From(new float[] { 1, 2, -1, 3 }, 2, 2);
        var w = HostTensor.From(new float[] { 1, 0, 0, 1, 1, 1 }, 3, 2);
        var b = HostTensor.From(new float[] { 0.5f, 0, -1 }, 3);
        var res = HostTensor.From(new float[] { 10, 20, 30, 40, 50, 60 }, 2, 3);
        Assert.That(d.Linear(x, w, b).AsSpan<float>().ToArray(), Is.EqualTo(new float[] { 1.5f, 2, 2, -0.5f, 3, 1 }));
        Assert.That(d.Linear(x, w, null, res).AsSpan<float>().ToArray(), Is.EqualTo(new float[] { 11, 22, 33, 39, 53, 62 }));
    }

    private static readonly (int M, int N, int K)[] GemmShapes =
        [(1, 1, 1), (7, 33, 5), (13, 70, 37), (6, 32, 16), (100, 45, 64), (97, 129, 3), (2, 5, 300), (0, 5, 3), (5, 3, 0),
         (26, 64, 520)]; // the last: whole 12 × 32 tiles accumulating in y over three k blocks, with bias and residual

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.NonReference))]
    public void LinearMatchesReferenceAtOddSizes(string id)
    {
        var d = TestDevices.Get(id);
        var r = new RandomTensors(7);
        foreach (var (m, n, k) in GemmShapes)
        {
            var x = r.Floats(DType.F32, -1, 1, 3, m, k); // leading dims are flattened
            var w = r.Floats(DType.F32, -1, 1, n, k);
            var b = r.Floats(DType.F32, -1, 1, n);
            var res = r.Floats(DType.F32, -1, 1, 3, m, n);
            Close(d.Linear(x, w), Ref.Linear(x, w));
            Close(d.Linear(x, w, b, res), Ref.Linear(x, w, b, res));
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void LinearResidualMayBeTheOutput(string id)
    {
        var d = TestDevices.Get(id);
        var r = new RandomTensors(3);
        var x = r.Floats(DType.F32, -1, 1, 9, 20); var w = r.Floats(DType.F32, -1, 1, 35, 20); var res = r.Floats(DType.F32, -1, 1, 9, 35);
        var expected = Ref.Linear(x, w, null, res);
        using var dx = d.Upload(x); using var dw = d.Upload(w); using var y = d.Upload(res);
        d.Linear(dx, dw, null, y, y);
        Close(y.ToTensor(), expected);
    }

    // ------------------------------------------------------------------ LayerNorm

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void LayerNormHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        var x = HostTensor.From(new float[] { 1, 2, 3, 5, 5, 5 }, 2, 3);
        var w = HostTensor.From(new float[] { 1, 2, 1 }, 3);
        var b = HostTensor.From(new float[] { 0, 0, 1 }, 3);
        float s = 1 / MathF.Sqrt(2f / 3 + 1e-5f);
        Close(d.LayerNorm(x, w, b), HostTensor.From(new float[] { -s, 0, s + 1, 0, 0, 1 }, 2, 3));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.NonReference))]
    public void LayerNormMatchesReferenceAtOddSizes(string id)
    {
        var d = TestDevices.Get(id);
        var r = new RandomTensors(11);
        foreach (var (rows, dim) in new[] { (1, 1), (3, 17), (5, 300), (2, 1023), (0, 4) })
        {
            var x = r.Floats(DType.F32, -3, 5, rows, dim);
            var w = r.Floats(DType.F32, 0.5f, 1.5f, dim); var b = r.Floats(DType.F32, -1, 1, dim);
            Close(d.LayerNorm(x, w, b), Ref.LayerNorm(x, w, b), 1e-4, 1e-4);
            Close(d.LayerNorm(x, w, b, 0.1f), Ref.LayerNorm(x, w, b, 0.1f), 1e-4, 1e-4);
        }
    }

    // ------------------------------------------------------------------ GEGLU

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void GegluHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        // a = [2, 1, 3, 1, 1], g = [1, -1, 0, NaN, 10]; gelu(1) = 0.841344746, gelu(-1) = -0.158655254 (exact erf form)
        var h = HostTensor.From(new float[] { 2, 1, 3, 1, 1, 1, -1, 0, float.NaN, 10 }, 1, 10);
        var y = d.Geglu(h).AsSpan<float>().ToArray();
        Assert.That(y[..3], Is.EqualTo(new[] { 2 * 0.841344746f, -0.158655254f, 0 }).Within(1e-6f));
        Assert.That(y[3], Is.NaN);
        Assert.That(y[4], Is.EqualTo(10f).Within(1e-5f));
        Assert.That(Kernels.Heads.HeadsReference.Erf(0.5), Is.EqualTo(0.5204998778130465).Within(1e-13));
        Assert.That(Kernels.Heads.HeadsReference.Erf(-2.5), Is.EqualTo(-0.999593047982555).Within(1e-13));
        Assert.That(Kernels.Heads.HeadsReference.Erf(4.5), Is.EqualTo(0.9999999998033839).Within(1e-13));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.NonReference))]
    public void GegluMatchesReferenceAtOddSizes(string id)
    {
        var d = TestDevices.Get(id);
        var r = new RandomTensors(5);
        foreach (var (rows, f) in new[] { (1, 1), (3, 17), (4, 64), (2, 101), (0, 3) })
        {
            var h = r.Floats(DType.F32, -7, 7, rows, 2 * f);
            // atol: 1 + erf(x) near x = -4 cancels in float (~6e-8 absolute), times |a·g/2| up to 25
            Close(d.Geglu(h), Ref.Geglu(h), 1e-5, 5e-6);
        }
    }

    // ------------------------------------------------------------------ MeanRows

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void MeanRowsMaskedAndEmpty(string id)
    {
        var d = TestDevices.Get(id);
        var x = HostTensor.From(new float[] { 1, 2, 3, 4, 5, 6, /**/ 1, 1, 2, 2, 3, 3 }, 2, 3, 2);
        Assert.That(d.MeanRows(x).AsSpan<float>().ToArray(), Is.EqualTo(new float[] { 3, 4, 2, 2 }).Within(1e-6f));
        var mask = HostTensor.From(new long[] { 1, 0, 1, 0, 0, 0 }, 2, 3);
        Assert.That(d.MeanRows(x, mask).AsSpan<float>().ToArray(), Is.EqualTo(new float[] { 3, 4, 0, 0 }).Within(1e-6f));
    }

    // ------------------------------------------------------------------ bad input

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void BadKernelInputNamesTheArgument(string id)
    {
        var d = TestDevices.Get(id);
        var x = HostTensor.Zeros(DType.F32, 2, 3);
        Assert.That(() => d.Linear(x, HostTensor.Zeros(DType.F32, 4, 2)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("weight"));
        Assert.That(() => d.Linear(x, HostTensor.Zeros(DType.F32, 4)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("weight"));
        Assert.That(() => d.Linear(x, HostTensor.Zeros(DType.F32, 4, 3), HostTensor.Zeros(DType.F32, 3)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("bias"));
        Assert.That(() => d.Linear(x, HostTensor.Zeros(DType.F32, 4, 3), null, HostTensor.Zeros(DType.F32, 2, 3)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("residual"));
        Assert.That(() => d.Linear(x.To(DType.F16), HostTensor.Zeros(DType.F32, 4, 3)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("x"));
        Assert.That(() => d.LayerNorm(x, HostTensor.Zeros(DType.F32, 2), HostTensor.Zeros(DType.F32, 3)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("weight"));
        Assert.That(() => d.LayerNorm(x, HostTensor.Zeros(DType.F32, 3), HostTensor.Zeros(DType.F32, 3, 1)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("bias"));
        Assert.That(() => d.LayerNorm(x, HostTensor.Zeros(DType.F32, 3), HostTensor.Zeros(DType.F32, 3), -1),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("eps"));
        Assert.That(() => d.Geglu(x), Throws.ArgumentException.With.Property("ParamName").EqualTo("h"));
        Assert.That(() => d.MeanRows(x), Throws.ArgumentException.With.Property("ParamName").EqualTo("x"));
    }

    // ------------------------------------------------------------------ heads

    private static Dictionary<string, HostTensor> Weights(int seed, int d = 16, int r = 4, int h = 2, int dh = 6, int f = 20, int pos = 5,
        DType dt = DType.F32) =>
        HeadsFamily.RandomWeights(new RandomTensors(seed), d, r, h, dh, f, pos, dt);

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void HeadShapesAreInferred(string id)
    {
        using var head = PoolingHead.FromTensors(TestDevices.Get(id), Weights(1, d: 12, r: 3, h: 3, dh: 5, f: 7, pos: 9), heads: 3);
        Assert.That((head.Dim, head.LatentCount, head.HeadCount, head.HeadDim, head.FfWidth, head.PosEmbRows), Is.EqualTo((12, 3, 3, 5, 7,
            9)));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.NonReference))]
    public void RandomHeadsMatchReference(string id)
    {
        var d = TestDevices.Get(id);
        var r = new RandomTensors(21);
        foreach (var (dim, rr, h, dh, f) in new[] { (16, 4, 2, 6, 20), (9, 1, 1, 3, 5), (24, 7, 4, 4, 48) })
        {
            var w = HeadsFamily.RandomWeights(r, dim, rr, h, dh, f, 6);
            using var head = PoolingHead.FromTensors(d, w, h);
            using var refHead = PoolingHead.FromTensors(Ref, w, h);
            var hidden = r.Floats(DType.BF16, -2, 2, 3, 11, dim);
            var mask = r.Mask(DType.I32, 3, 11);
            var prefix = HostTensor.From(new long[] { 0, 1, 2 }, 3);
            Close(head.Resampler(hidden), refHead.Resampler(hidden), 5e-4, 5e-5);
            Close(head.Resampler(hidden, mask, normalize: false), refHead.Resampler(hidden, mask, normalize: false), 5e-4, 5e-5);
            Close(head.NvEmbed(hidden, mask, prefix), refHead.NvEmbed(hidden, mask, prefix), 5e-4, 5e-5);
            var layers = r.Floats(DType.F32, -2, 2, 2, 6, dim);
            Close(head.MultiLayer(layers), refHead.MultiLayer(layers), 5e-4, 5e-5);
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void ResamplerRowWithNoKeptKeyEqualsNoTokens(string id)
    {
        // docs/operations.md: a resampler row whose mask keeps nothing gets O = 0, so it pools latents + FF(latents): the same as N = 0.
        var d = TestDevices.Get(id);
        using var head = PoolingHead.FromTensors(d, Weights(2), 2);
        var r = new RandomTensors(4);
        var hidden = r.Floats(DType.F32, -2, 2, 2, 5, 16);
        var mask = HostTensor.From(new byte[] { 1, 1, 0, 1, 0, 0, 0, 0, 0, 0 }, 2, 5);
        var masked = head.Resampler(hidden, mask).AsSpan<float>().ToArray();
        var empty = head.Resampler(HostTensor.Zeros(DType.F32, 1, 0, 16)).AsSpan<float>().ToArray();
        Assert.That(masked[16..], Is.EqualTo(empty).Within(1e-5f));
        Assert.That(masked[..16], Is.Not.EqualTo(empty).Within(1e-3f));
        // nvembed: mask only in the final mean; a row keeping nothing gives 0
        var nv = head.NvEmbed(hidden, mask).AsSpan<float>().ToArray();
        Assert.That(nv[16..], Is.All.EqualTo(0f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void HeadIsReusableAcrossShapesAndVariants(string id)
    {
        var d = TestDevices.Get(id);
        var w = Weights(3);
        var r = new RandomTensors(8);
        var a = r.Floats(DType.F32, -2, 2, 2, 5, 16); var b = r.Floats(DType.F16, -2, 2, 3, 4, 16);
        using var head = PoolingHead.FromTensors(d, w, 2);
        var ra = head.Resampler(a); var nb = head.NvEmbed(b); var rb = head.Resampler(b); var ra2 = head.Resampler(a); var ml
            = head.MultiLayer(b);
        using var fresh = PoolingHead.FromTensors(d, w, 2);
        Close(ra2, ra, 0, 0);
        Close(rb, fresh.Resampler(b), 0, 0);
        Close(nb, fresh.NvEmbed(b), 0, 0);
        Close(ml, fresh.MultiLayer(b), 0, 0);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void DeviceTensorCallsMatchHostCalls(string id)
    {
        var d = TestDevices.Get(id);
        using var head = PoolingHead.FromTensors(d, Weights(9), 2);
        var r = new RandomTensors(9);
        var x = r.Floats(DType.F32, -2, 2, 2, 5, 16); var m = r.Mask(DType.Bool, 2, 5);
        using var dx = d.Upload(x); using var dm = d.Upload(m); using var o = d.Allocate(DType.F32, 2, 16);
        head.Resampler(dx, dm, o);
        Close(o.ToTensor(), head.Resampler(x, m), 0, 0);
        head.NvEmbed(dx, dm, null, o, normalize: false);
        Close(o.ToTensor(), head.NvEmbed(x, m, normalize: false), 0, 0);
        head.MultiLayer(dx, o);
        Close(o.ToTensor(), head.MultiLayer(x), 0, 0);
    }

    /// <summary>The ILGPU devices present (ilgpu-cpu, opencl:N, cuda:N).</summary>
    public static IEnumerable<string> Accelerators() => TestDevices.All().Where(id => TestDevices.Get(id) is IlgpuDevice);

    [TestCaseSource(nameof(Accelerators))]
    public void PoolingHeadSynchronizesOncePerCall(string id)
    {
        var g = (IlgpuDevice)TestDevices.Get(id);
        using var head = PoolingHead.FromTensors(g, Weights(9), 2);
        var r = new RandomTensors(9);
        var x = r.Floats(DType.F32, -2, 2, 2, 5, 16); var m = r.Mask(DType.Bool, 2, 5);
        using var dx = g.Upload(x); using var dm = g.Upload(m); using var o = g.Allocate(DType.F32, 2, 16);
        using var o2 = g.Allocate(DType.F32, 2, 16);
        head.Resampler(dx, dm, o); head.NvEmbed(dx, dm, null, o); head.MultiLayer(dx, o); // first calls build the workspaces
        foreach (var (name, call) in new (string, Action)[]
        {
            ("resampler", () => head.Resampler(dx, dm, o)),
            ("nvembed", () => head.NvEmbed(dx, dm, null, o)),
            ("multi_layer", () => head.MultiLayer(dx, o)),
        })
        {
            call(); // the workspace follows the variant: build it outside the count
            long before = g.Synchronizations;
            call();
            Assert.That(g.Synchronizations - before, Is.EqualTo(1), $"{name}: synchronizations of one call");
            before = g.Synchronizations;
            using (g.BeginBatch())
            {
                call();
                Assert.That(g.Synchronizations - before, Is.Zero, $"{name}: inside a batch the call only enqueues");
            }
            Assert.That(g.Synchronizations - before, Is.EqualTo(1), $"{name}: one call in a batch, one synchronization at its end");
        }
        // the results of a batch are the synchronous ones
        head.Resampler(dx, dm, o);
        using (g.BeginBatch()) { head.Resampler(dx, dm, o2); head.Resampler(dx, dm, o2); }
        Close(o2.ToTensor(), o.ToTensor(), 0, 0);
    }

    [TestCaseSource(nameof(Accelerators))]
    public void BatchedCallsSynchronizeAtTheEndOrAtAHostRead(string id)
    {
        var g = (IlgpuDevice)TestDevices.Get(id);
        var r = new RandomTensors(4);
        var x = r.Floats(DType.F32, -1, 1, 3, 8); var w = r.Floats(DType.F32, -1, 1, 8); var b = r.Floats(DType.F32, -1, 1, 8);
        var expected = Ref.LayerNorm(x, w, b);
        using var dx = g.Upload(x); using var dw = g.Upload(w); using var db = g.Upload(b);
        using var y = g.Allocate(DType.F32, 3, 8);
        using var z = g.Allocate(DType.F32, 3, 8);
        long before = g.Synchronizations;
        using (var batch = g.BeginBatch())
        {
            Assert.That(batch.Device, Is.SameAs(g));
            g.LayerNorm(dx, dw, db, y);
            using (g.BeginBatch()) g.LayerNorm(y, dw, db, z); // a nested batch joins the outer one
            Assert.That(g.Synchronizations - before, Is.Zero);
            Close(y.ToTensor(), expected); // a host read waits for what was enqueued before it
            Assert.That(g.Synchronizations - before, Is.EqualTo(1));
            g.LayerNorm(dx, dw, db, z);
        }
        Assert.That(g.Synchronizations - before, Is.EqualTo(2));
        Close(z.ToTensor(), expected);
        var outer = g.BeginBatch();
        var inner = g.BeginBatch();
        Assert.That(() => outer.Dispose(), Throws.InvalidOperationException, "batches end in reverse order");
        inner.Dispose(); outer.Dispose();
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void BadHeadInputNamesTheArgument(string id)
    {
        var d = TestDevices.Get(id);
        using var head = PoolingHead.FromTensors(d, Weights(1), 2);
        var x = HostTensor.Zeros(DType.F32, 2, 3, 16);
        Assert.That(() => head.Resampler(HostTensor.Zeros(DType.F32, 2, 3, 15)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("hidden"));
        Assert.That(() => head.Resampler(HostTensor.Zeros(DType.F32, 3, 16)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("hidden"));
        Assert.That(() => head.Resampler(HostTensor.Zeros(DType.I64, 2, 3, 16)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("hidden"));
        Assert.That(() => head.Resampler(x, HostTensor.Zeros(DType.I64, 2, 4)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("attentionMask"));
        Assert.That(() => head.Resampler(x, HostTensor.Zeros(DType.F32, 2, 3)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("attentionMask"));
        Assert.That(() => head.NvEmbed(x, null, HostTensor.From(new long[] { 0, -1 }, 2)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("prefixLen"));
        Assert.That(() => head.NvEmbed(x, null, HostTensor.From(new long[] { 0 }, 1)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("prefixLen"));
        Assert.That(() => head.MultiLayer(HostTensor.Zeros(DType.F32, 2, 6, 16)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("layers"));
        var call = new OpCall(new Dictionary<string, HostTensor>(Weights(1))
        {
            ["hidden"] = x,
            ["prefix_len"] = HostTensor.From(new long[] { 0, 0 }, 2)
        },
            new Dictionary<string, string> { ["variant"] = "resampler", ["heads"] = "2" });
        Assert.That(() => OpRegistry.All["latent_attention_pool"].Run(d, call),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("prefix_len"));
        var bad = new OpCall(call.Inputs, new Dictionary<string, string> { ["variant"] = "perceiver", ["heads"] = "2" });
        Assert.That(() => OpRegistry.All["latent_attention_pool"].Run(d, bad),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("variant"));
    }

    // ------------------------------------------------------------------ weights files

    [Test]
    public void BadWeightsAreListed()
    {
        var d = TestDevices.Get("simd");
        var w = Weights(1);
        w.Remove(PoolingHead.ToOut);
        w.Remove(PoolingHead.Net0B);
        w["cross_attend_blocks.2.norm.weight"] = HostTensor.Zeros(DType.F32, 16);
        w[PoolingHead.Norm1W] = HostTensor.Zeros(DType.F32, 15);
        w[PoolingHead.ToKv] = HostTensor.Zeros(DType.F32, 12, 16);
        var e = Assert.Throws<ArgumentException>(() => PoolingHead.FromTensors(d, w, 2))!;
        Assert.That(e.ParamName, Is.EqualTo("weights"));
        Assert.That(e.Message, Does.Contain("missing tensor 'cross_attend_blocks.0.fn.to_out.weight'")
            .And.Contain("missing tensor 'cross_attend_blocks.1.fn.net.0.bias'")
            .And.Contain("unexpected tensor 'cross_attend_blocks.2.norm.weight'")
            .And.Contain("'cross_attend_blocks.1.norm.weight' must be [16], got [15]")
            .And.Contain("'cross_attend_blocks.0.fn.to_kv.weight' must be [24, 16], got [12, 16]"));
        var ints = Weights(1); ints[PoolingHead.Net2B] = HostTensor.Zeros(DType.I64, 16);
        Assert.That(() => PoolingHead.FromTensors(d, ints, 2), Throws.ArgumentException.With.Message.Contain("dtype I64"));
        Assert.That(() => PoolingHead.FromTensors(d, Weights(1), 5), Throws.ArgumentException.With.Property("ParamName").EqualTo("heads"));
        Assert.That(() => PoolingHead.FromTensors(d, Weights(1), 0), Throws.ArgumentException.With.Property("ParamName").EqualTo("heads"));
    }

    [Test]
    public void SafetensorsRoundTripAndHalfWeights()
    {
        var d = TestDevices.Get("simd");
        string dir = Path.Combine(Path.GetTempPath(), "pk-heads-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            var w = Weights(4);
            var x = new RandomTensors(4).Floats(DType.F32, -2, 2, 2, 5, 16);
            using var head = PoolingHead.FromTensors(d, w, 2);
            string path = Path.Combine(dir, "head.safetensors");
            head.Save(path);
            using var loaded = PoolingHead.Load(d, path, 2);
            var sd = loaded.StateDict();
            Assert.That(sd.Keys, Is.EquivalentTo(w.Keys));
            foreach (var (name, t) in w) Assert.That(sd[name].AsSpan<float>().ToArray(), Is.EqualTo(t.AsSpan<float>().ToArray()), name);
            Close(loaded.Resampler(x), head.Resampler(x), 0, 0);
            Close(loaded.MultiLayer(x), head.MultiLayer(x), 0, 0);

            // BF16/F16 files load, converted to F32 once: the same as loading their F32 widening.
            foreach (var dt in new[] { DType.F16, DType.BF16 })
            {
                var half = w.ToDictionary(kv => kv.Key, kv => kv.Value.To(dt));
                string hp = Path.Combine(dir, $"head-{dt}.safetensors");
                Safetensors.Write(hp, half);
                using var h16 = PoolingHead.Load(d, hp, 2);
                using var h32 = PoolingHead.FromTensors(d, half.ToDictionary(kv => kv.Key, kv => kv.Value.To(DType.F32)), 2);
                Close(h16.NvEmbed(x), h32.NvEmbed(x), 0, 0);
            }

            // a truncated file is rejected by the reader
            string cut = Path.Combine(dir, "cut.safetensors");
            File.WriteAllBytes(cut, File.ReadAllBytes(path)[..100]);
            Assert.That(() => PoolingHead.Load(d, cut, 2), Throws.InstanceOf<SafetensorsFormatException>());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void RealisticSizeOnSimdMatchesReference()
    {
        // The benchmark head (D = 1024, 8 heads of dh = 128), with few latents/tokens to keep the reference short.
        var r = new RandomTensors(12);
        var w = HeadsFamily.RandomWeights(r, 1024, 8, 8, 128, 1024, 8);
        using var head = PoolingHead.FromTensors(TestDevices.Get("simd"), w, 8);
        using var refHead = PoolingHead.FromTensors(Ref, w, 8);
        var x = r.Floats(DType.BF16, -2, 2, 2, 6, 1024);
        Close(head.Resampler(x), refHead.Resampler(x), 1e-3, 1e-5);
        Close(head.MultiLayer(x), refHead.MultiLayer(x), 1e-3, 1e-5);
    }

    [Test, Explicit("large: ~2 GB of weights")]
    public void PaperSizeRunsOnSimd()
    {
        // D = 4096, dh = 2048 (2 heads here), L = 32 layers: must run; checks only finiteness and unit norm.
        var r = new RandomTensors(13);
        var w = HeadsFamily.RandomWeights(r, 4096, 16, 2, 2048, 4096, 32);
        using var head = PoolingHead.FromTensors(TestDevices.Get("simd"), w, 2);
        var o = head.MultiLayer(r.Floats(DType.F32, -2, 2, 2, 32, 4096)).AsSpan<float>().ToArray();
        Assert.That(o.All(float.IsFinite));
        Assert.That(Math.Sqrt(o[..4096].Sum(v => (double)v * v)), Is.EqualTo(1).Within(1e-4));
    }
}
