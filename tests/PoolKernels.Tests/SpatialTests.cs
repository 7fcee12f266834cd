using NUnit.Framework;
using PoolKernels.Kernels.Spatial;

namespace PoolKernels.Tests;

/// <summary>Spatial, region and retrieval pooling beyond the vectors and the randomized conformance: hand-computed
/// values, PyTorch's pooling edge cases, empty sets, API forms agreeing, bad input on every device.</summary>
public class SpatialTests
{
    private static float[] F(HostTensor t) => t.AsSpan<float>().ToArray();
    private static long[] L(HostTensor t) => t.ToInt64s();
    private static HostTensor X(float[] v, params int[] shape) => HostTensor.From(v, shape);
    private static HostTensor Iota(params int[] shape) => X(Enumerable.Range(0, (int)Shape.Count(shape)).Select(i => (float)i).ToArray(),
        shape);

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SpatialPoolModesWithValidMaskAndEmptyRow(string id)
    {
        var d = TestDevices.Get(id);
        // b0: c0 = [1,2,3,4], c1 = [-1,5,0,8]; valid keeps cells 0, 2, 3 (value 7 also keeps). b1 keeps nothing.
        var x = X([1, 2, 3, 4, -1, 5, 0, 8, 9, 9, 9, 9, 9, 9, 9, 9], 2, 2, 2, 2);
        var valid = HostTensor.From(new byte[] { 1, 0, 7, 1, 0, 0, 0, 0 }, 2, 2, 2);
        Assert.That(F(d.SpatialPool(x, new() { Mode = SpatialPoolMode.Avg }, valid)), Is.EqualTo(new[] { 8f / 3, 7f / 3, 0,
            0 }).Within(1e-5f));
        Assert.That(F(d.SpatialPool(x, new() { Mode = SpatialPoolMode.Max }, valid)), Is.EqualTo(new[] { 4f, 8, 0, 0 }));
        Assert.That(F(d.SpatialPool(x, new() { Mode = SpatialPoolMode.Gem, P = 2 }, valid)),
            Is.EqualTo(new[] { MathF.Sqrt(26f / 3), MathF.Sqrt(64f / 3), 0, 0 }).Within(1e-5f));
        var n = F(d.SpatialPool(x, new() { Mode = SpatialPoolMode.Max, Normalize = true }, valid));
        Assert.That(n, Is.EqualTo(new[] { 4 / MathF.Sqrt(80), 8 / MathF.Sqrt(80), 0, 0 }).Within(1e-6f),
            "normalize leaves an empty row at zero");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void MaskPoolManyMasksOfTheOutputSizeMatchReference(string id)
    {
        // Mask counts that are not multiples of the 4-mask register tile, soft masks already at the output size (read in
        // place), odd H·W and an all-zero mask (denominator eps only), plus resized binary masks.
        var r = new Verification.RandomTensors(21);
        var x = r.Floats(DType.F32, -1, 1, 2, 19, 7, 9);
        foreach (var (q, mh, mw, type) in new[] { (70, 7, 9, MaskType.Soft), (37, 7, 9, MaskType.Soft), (41, 5, 4, MaskType.BinaryLogits),
            (33, 7, 9, MaskType.SigmoidNormalized) })
        {
            var masks = r.Floats(DType.F32, 0, 1, 2, q, mh, mw);
            masks.AsSpan<float>().Slice(3 * mh * mw, mh * mw).Clear(); // mask 3 of batch 0 is empty
            var eps = type == MaskType.SigmoidNormalized ? 0f : 1e-8f;
            var want = TestDevices.Get("reference").MaskPool(x, masks, type, 0.5f, eps).AsSpan<float>().ToArray();
            var got = TestDevices.Get(id).MaskPool(x, masks, type, 0.5f, eps).AsSpan<float>().ToArray();
            Assert.That(got, Is.EqualTo(want).Within(1e-4f), $"{type} Q={q}");
        }
        // H·W = 1073: two whole k blocks of 384, a partial one of 305 (19 transposes of 16 and a scalar tail of 1);
        // 13 channels (one panel of ≤ 16 columns: the half tile), 13 masks (a whole row tile and an edge tile of 1 row: the
        // 4-row kernel, accumulating over the k blocks)
        var xl = r.Floats(DType.F32, -1, 1, 1, 13, 37, 29);
        var ml = r.Floats(DType.F32, 0, 1, 1, 13, 37, 29);
        Assert.That(TestDevices.Get(id).MaskPool(xl, ml, MaskType.Soft).AsSpan<float>().ToArray(),
            Is.EqualTo(TestDevices.Get("reference").MaskPool(xl, ml, MaskType.Soft).AsSpan<float>().ToArray()).Within(1e-4f), "H·W = 1073");
        // 203 masks: two blocks of A rows (≤ 192 per item), the second's last tile short; 70 channels: two whole panels
        // and one of 6 columns, each panel its own work item
        var xq = r.Floats(DType.F32, -1, 1, 1, 70, 3, 7);
        var mq = r.Floats(DType.F32, 0, 1, 1, 203, 3, 7);
        Assert.That(TestDevices.Get(id).MaskPool(xq, mq, MaskType.Soft).AsSpan<float>().ToArray(),
            Is.EqualTo(TestDevices.Get("reference").MaskPool(xq, mq, MaskType.Soft).AsSpan<float>().ToArray()).Within(1e-4f), "Q = 203");
    }

    [TestCase(2.5f)]
    [TestCase(0.4f)]
    [TestCase(4.6f)]
    [TestCase(1.7f)]
    [TestCase(7f)]
    [TestCase(0.3f)]
    [TestCase(3f)]
    [TestCase(2f)]
    [TestCase(1f)]
    public void SimdPowMatchesMathPow(float p)
    {
        // The GeM family's pow (exp(p·ln x) by TensorPrimitives; exact paths for p = 2, 3): 1000 random x over 60 decades,
        // the ends (0, -0, a denormal, 1, +inf, NaN, a negative) and 7 more past the last whole vector
        var r = new Random(7);
        var x = new List<float> { 0f, -0f, 1e-40f, 1f, float.PositiveInfinity, float.NaN, -2f, 1e30f, 1e-30f, float.Epsilon,
            float.MaxValue };
        for (int i = 0; i < 1000; i++) x.Add((float)Math.Pow(10, r.NextDouble() * 60 - 30));
        for (int i = 0; i < 7; i++) x.Add((float)(r.NextDouble() * 3));
        var xs = x.ToArray();
        var y = new float[xs.Length];
        PoolKernels.Kernels.VectorMath.Pow(xs, p, y);
        for (int i = 0; i < xs.Length; i++)
        {
            // whole powers of a negative x are defined
            double want = xs[i] < 0 && p != 1f && p != 2f && p != 3f ? double.NaN : Math.Pow(xs[i], p);
            float w = (float)want;
            if (float.IsNaN(w)) { Assert.That(y[i], Is.NaN, $"x = {xs[i]}"); continue; }
            if (float.IsInfinity(w)) { Assert.That(y[i], Is.EqualTo(w), $"x = {xs[i]}"); continue; }
            // relative error ~|p·ln x|·ε of the log plus the exp's few ulp; results below the normal range by absolute error
            double tol = 4e-7 * (2 + Math.Abs(p * Math.Log(Math.Max(xs[i], 1e-45)))) * Math.Abs(want) + 1e-38;
            Assert.That(Math.Abs(y[i] - want), Is.LessThanOrEqualTo(tol), $"x = {xs[i]:R}, p = {p}");
        }
        // in place (y aliasing x) gives the same
        var inPlace = (float[])xs.Clone();
        PoolKernels.Kernels.VectorMath.Pow(inPlace, p, inPlace);
        Assert.That(inPlace, Is.EqualTo(y));
    }

    [Test]
    public void SimdCbrtMatchesMathCbrt()
    {
        // GeM p = 3's root (vector exp/log and a Newton step): random x over 80 decades, the ends, a scalar tail of 5
        var r = new Random(11);
        var x = new List<float> { 0f, 1f, 8f, 27f, 1e-40f, float.Epsilon, float.MaxValue, float.PositiveInfinity, float.NaN };
        for (int i = 0; i < 1000; i++) x.Add((float)Math.Pow(10, r.NextDouble() * 80 - 40));
        for (int i = 0; i < 5; i++) x.Add((float)r.NextDouble());
        var xs = x.ToArray();
        var y = new float[xs.Length];
        PoolKernels.Kernels.VectorMath.Cbrt(xs, y);
        for (int i = 0; i < xs.Length; i++)
        {
            double want = Math.Cbrt(xs[i]);
            if (double.IsNaN(want)) { Assert.That(y[i], Is.NaN); continue; }
            Assert.That(Math.Abs(y[i] - want), Is.LessThanOrEqualTo(3e-7 * want + 1e-45), $"x = {xs[i]:R}");
        }
        var inPlace = (float[])xs.Clone();
        PoolKernels.Kernels.VectorMath.Cbrt(inPlace, inPlace);
        Assert.That(inPlace, Is.EqualTo(y));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void NanAndInfinityPropagateLikeTheReference(string id)
    {
        // a NaN and a +inf in plane 0 of a [2,3,37,45] map (rows longer than 32 floats take the vector paths), -inf in
        // plane 4: max/min pooling keeps NaN (PyTorch's max_pool2d does), sums give NaN/inf in the cells that hold them
        var r = new Verification.RandomTensors(5);
        var x = r.Floats(DType.F32, -1, 1, 2, 3, 37, 45);
        var v = x.AsSpan<float>();
        v[3 * 45 + 40] = float.NaN;
        v[30 * 45 + 2] = float.PositiveInfinity;
        v[4 * 37 * 45 + 100] = float.NegativeInfinity;
        var d = TestDevices.Get(id);
        var reference = TestDevices.Get("reference");
        foreach (var (name, run) in new (string, Func<Device, HostTensor>)[]
        {
            ("pool2d max", dev => dev.Pool2d(x, new() { Mode = Pool2dMode.Max, Kernel = (3, 3), Stride = (2, 2), Padding = (1, 1) })),
            ("pool2d avg", dev => dev.Pool2d(x, new() { Mode = Pool2dMode.Avg, Kernel = (4, 4) })),
            ("adaptive max 5x7", dev => dev.AdaptivePool2d(x, Pool2dMode.Max, (5, 7))),
            ("adaptive avg 1x1", dev => dev.AdaptivePool2d(x, Pool2dMode.Avg, (1, 1))),
            ("spp max 1,2,4", dev => dev.Spp(x, [1, 2, 4])),
            ("spatial_pool max", dev => dev.SpatialPool(x, new() { Mode = SpatialPoolMode.Max })),
        })
        {
            var want = run(reference).AsSpan<float>().ToArray();
            var got = run(d).AsSpan<float>().ToArray();
            Assert.That(want.Count(float.IsNaN), Is.GreaterThan(0), $"{name}: the case must hold a NaN");
            for (int i = 0; i < want.Length; i++)
            {
                if (float.IsNaN(want[i]) || float.IsInfinity(want[i])) Assert.That(got[i], Is.EqualTo(want[i]), $"{name} [{i}]");
                else Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-4f), $"{name} [{i}]");
            }
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SpatialPoolNhwcMatchesNchw(string id)
    {
        var d = TestDevices.Get(id);
        var nchw = Iota(2, 3, 2, 5);
        var v = F(nchw);
        var t = new float[v.Length];
        for (int b = 0; b < 2; b++) for (int c = 0; c < 3; c++) for (int i = 0; i < 10; i++) t[(b * 10 + i) * 3 + c] = v[(b * 3 + c) * 10
            + i];
        foreach (var mode in new[] { SpatialPoolMode.Avg, SpatialPoolMode.Max, SpatialPoolMode.Gem })
            Assert.That(F(d.SpatialPool(X(t, 2, 2, 5, 3), new() { Mode = mode, Nhwc = true })), Is.EqualTo(F(d.SpatialPool(nchw,
                new() { Mode = mode }))).Within(1e-4f), mode.ToString());
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Pool2dHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        var x = Iota(1, 1, 4, 4);
        Assert.That(F(d.Pool2d(x, new() { Mode = Pool2dMode.Max, Kernel = (2, 2) })), Is.EqualTo(new float[] { 5, 7, 13, 15 }));
        Assert.That(F(d.Pool2d(x, new() { Mode = Pool2dMode.Min, Kernel = (2, 2) })), Is.EqualTo(new float[] { 0, 2, 8, 10 }));
        // avg k3 s2 p1: the corner window holds 0,1,4,5 inside the input
        var avg = new Pool2dOptions { Mode = Pool2dMode.Avg, Kernel = (3, 3), Stride = (2, 2), Padding = (1, 1) };
        Assert.That(F(d.Pool2d(x, avg with { CountIncludePad = false }))[0], Is.EqualTo(2.5f).Within(1e-6f));
        Assert.That(F(d.Pool2d(x, avg))[0], Is.EqualTo(10f / 9).Within(1e-6f));
        var lp = F(d.Pool2d(x, new() { Mode = Pool2dMode.Lp, Kernel = (2, 2), P = 2 }));
        Assert.That(lp[0], Is.EqualTo(MathF.Sqrt(0 + 1 + 16 + 25)).Within(1e-5f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Pool2dReflectAndReplicatePadTheInputFirst(string id)
    {
        var d = TestDevices.Get(id);
        var x = X([1, 2, 3, 4, 5, 6, 7, 8, 9], 1, 1, 3, 3);
        var o = new Pool2dOptions { Mode = Pool2dMode.Avg, Kernel = (3, 3), Stride = (1, 1), Padding = (1, 1) };
        Assert.That(F(d.Pool2d(x, o with { PaddingMode = "reflect" }))[0], Is.EqualTo(33f / 9).Within(1e-6f));
        Assert.That(F(d.Pool2d(x, o with { PaddingMode = "replicate" }))[0], Is.EqualTo(21f / 9).Within(1e-6f));
        // replicate allows padding wider than half the kernel (F.pad first), reflect up to H-1
        Assert.That(F(d.Pool2d(x, new() { Mode = Pool2dMode.Max, Kernel = (1, 1), Padding = (2, 2), PaddingMode = "replicate" })).Length,
            Is.EqualTo(49));
        Assert.That(F(d.Pool2d(x, new() { Mode = Pool2dMode.Max, Kernel = (1, 1), Padding = (2, 2), PaddingMode = "reflect" }))[0],
            Is.EqualTo(9f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Pool2dCeilModeEdgeWindowsAndOddSizes(string id)
    {
        var d = TestDevices.Get(id);
        var x = Iota(1, 1, 5, 5);
        var o = d.Pool2d(x, new() { Mode = Pool2dMode.Max, Kernel = (2, 2), CeilMode = true });
        Assert.That(o.Shape.ToArray(), Is.EqualTo(new[] { 1, 1, 3, 3 }));
        Assert.That(F(o), Is.EqualTo(new float[] { 6, 8, 9, 16, 18, 19, 21, 23, 24 }), "the edge windows hold one column / row");
        var a = d.Pool2d(x, new() { Mode = Pool2dMode.Avg, Kernel = (2, 2), CeilMode = true });
        Assert.That(F(a)[8], Is.EqualTo(24f), "an avg edge window clipped to the input divides by its cells");
        // PyTorch drops a last window that would start in the right padding: H=5, k=2, s=2, p=1, ceil -> 3, not 4
        Assert.That(SpatialPooling.Pool2dShape([1, 1, 5, 5], new() { Kernel = (2, 2), Stride = (2, 2), Padding = (1, 1), CeilMode = true }),
            Is.EqualTo(new[] { 1, 1, 3, 3 }));
        Assert.That(SpatialPooling.Pool2dShape([1, 1, 4, 4], new() { Kernel = (3, 3), Stride = (2, 2), Padding = (1, 1), CeilMode = true }),
            Is.EqualTo(new[] { 1, 1, 3, 3 }));
        Assert.That(SpatialPooling.Pool2dShape([1, 1, 4, 4], new() { Kernel = (3, 3), Stride = (2, 2), Padding = (1, 1) }),
            Is.EqualTo(new[] { 1, 1, 2, 2 }));
        Assert.That(SpatialPooling.Pool2dShape([1, 1, 6, 6], new() { Kernel = (3, 3), Stride = (2, 2), Padding = (1, 1), CeilMode = true }),
            Is.EqualTo(new[] { 1, 1, 4, 4 }));
        Assert.That(SpatialPooling.Pool2dShape([1, 1, 7, 9], new()
        {
            Kernel = (3, 2),
            Stride = (2, 3),
            Padding = (1, 0),
            Dilation = (2,
            1)
        }), Is.EqualTo(new[] { 1, 1, 3, 3 }));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void OneByOneInputsAndWindowsLargerThanTheInput(string id)
    {
        var d = TestDevices.Get(id);
        var x = X([7], 1, 1, 1, 1);
        Assert.That(F(d.Pool2d(x, new() { Mode = Pool2dMode.Max, Kernel = (3, 3), Stride = (1, 1), Padding = (1, 1) })),
            Is.EqualTo(new[] { 7f }));
        Assert.That(F(d.Pool2d(x, new() { Mode = Pool2dMode.Avg, Kernel = (3, 3), Stride = (1, 1), Padding = (1, 1) })),
            Is.EqualTo(new[] { 7f / 9 }).Within(1e-6f));
        Assert.That(F(d.Pool2d(x, new() { Mode = Pool2dMode.Avg, Kernel = (3, 3), Padding = (1, 1), CountIncludePad = false })),
            Is.EqualTo(new[] { 7f }));
        Assert.That(F(d.AdaptivePool2d(x, Pool2dMode.Avg, (2, 3))), Is.All.EqualTo(7f));
        Assert.That(F(d.Spp(x, [1, 2])), Is.All.EqualTo(7f));
        Assert.That(F(d.SpatialPool(x, new() { Mode = SpatialPoolMode.Gem })), Is.EqualTo(new[] { 7f }).Within(1e-5f));
        Assert.That(F(d.RegionalGem(x, 3, 1)), Is.EqualTo(new[] { 7f }).Within(1e-5f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SppConcatenatesLevelsInTheOrderGiven(string id)
    {
        var d = TestDevices.Get(id);
        var x = Iota(1, 2, 4, 4);
        var o = F(d.Spp(x, [2, 1]));
        Assert.That(o, Is.EqualTo(new float[] { 5, 7, 13, 15, 21, 23, 29, 31, 15, 31 }));
        Assert.That(F(d.Spp(x, [1], Pool2dMode.Avg)), Is.EqualTo(new[] { 7.5f, 23.5f }));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void RegionalGemOfAConstantIsTheConstantAndNegativesClampToZero(string id)
    {
        var d = TestDevices.Get(id);
        var x = X(Enumerable.Repeat(2f, 25).ToArray(), 1, 1, 5, 5);
        Assert.That(F(d.RegionalGem(x, 4.6f, 5)), Is.All.EqualTo(2f).Within(1e-5f));
        Assert.That(F(d.RegionalGem(X([-3, -1, -2, -5], 1, 1, 2, 2), 2.5f, 3)), Is.All.EqualTo(0f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void ScaleGemHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        var x = X([3, 4, 0, 2], 2, 1, 2);
        Assert.That(F(d.ScaleGem(x)), Is.EqualTo(new[] { 0.6f, 1f }).Within(1e-6f));
        Assert.That(F(d.ScaleGem(x, 1)), Is.EqualTo(new[] { 1.5f, 3f }).Within(1e-5f));
        // γ = -1: ((1/2)((0)^2 + (2)^2))^(1/2) - 1 for d0
        Assert.That(F(d.ScaleGem(X([-1, 1, 1, 3], 2, 1, 2), 2))[0], Is.EqualTo(MathF.Sqrt(2) - 1).Within(1e-5f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void MaskPoolWeightsResizeAndEmptyMasks(string id)
    {
        var d = TestDevices.Get(id);
        var x = X([1, 2, 3, 4], 1, 1, 2, 2);
        var masks = X([1, -1, 1, -1, -1, -1, -1, -1], 1, 2, 2, 2);
        Assert.That(F(d.MaskPool(x, masks, MaskType.BinaryLogits)), Is.EqualTo(new[] { 2f, 0f }).Within(1e-6f), "an empty mask pools to 0");
        Assert.That(F(d.MaskPool(x, masks, MaskType.Gated, 0.5f, 0)), Is.EqualTo(new[] { 2f, 0f }).Within(1e-6f),
            "eps = 0 and no weight still gives 0");
        Assert.That(F(d.MaskPool(x, X([0.5f], 1, 1, 1, 1), MaskType.Soft)), Is.EqualTo(new[] { 2.5f }).Within(1e-6f),
            "a 1×1 mask resizes to a constant");
        var sig = F(d.MaskPool(x, X([0, 0, 0, 0], 1, 1, 2, 2), MaskType.SigmoidNormalized, 0.5f, 0));
        Assert.That(sig, Is.EqualTo(new[] { 2.5f }).Within(1e-6f));
        // 2×1 mask [0, 1] upsampled to 2×2 rows: row 0 samples src -0.25 -> 0, row 1 samples 0.75 -> 0.75
        var up = F(d.MaskPool(x, X([0, 1], 1, 1, 2, 1), MaskType.Soft, 0.5f, 0));
        Assert.That(up, Is.EqualTo(new[] { (3 * 0.75f + 4 * 0.75f) / 1.5f }).Within(1e-5f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SpatioTemporalMeansAndEmptyRegion(string id)
    {
        var d = TestDevices.Get(id);
        var x = X([1, 3, 5, 7], 1, 2, 2, 1);
        var (o, r) = d.SpatioTemporalPool(x, HostTensor.From(new int[] { 1, 0, 0, 9, 0, 0, 0, 0 }, 1, 2, 2, 2));
        Assert.That(F(o), Is.EqualTo(new float[] { 2, 6, 3, 5 }));
        Assert.That(F(r!), Is.EqualTo(new float[] { 4, 0 }));
        Assert.That(d.SpatioTemporalPool(x).Regions, Is.Null);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SimilarityTopkTiesGoToTheLowerIndex(string id)
    {
        var d = TestDevices.Get(id);
        var db = X([1, 0, 1, 0, 0, 1, 2, 0], 4, 2);
        var q = X([1, 0], 1, 2);
        var (i, s) = d.SimilarityTopk(q, db, 3);
        Assert.That(L(i), Is.EqualTo(new long[] { 3, 0, 1 }));
        Assert.That(F(s), Is.EqualTo(new float[] { 2, 1, 1 }));
        var (ic, sc) = d.SimilarityTopk(q, db, 4, cosine: true);
        Assert.That(L(ic), Is.EqualTo(new long[] { 0, 1, 3, 2 }), "k = N returns every row");
        Assert.That(F(sc), Is.EqualTo(new float[] { 1, 1, 1, 0 }).Within(1e-6f));
        Assert.That(d.SimilarityTopk(q, db, 0).Index.Shape.ToArray(), Is.EqualTo(new[] { 1, 0 }));
    }

    [Test]
    public void SimdTopkPathsAgreeWithTheReference()
    {
        var r = new Verification.RandomTensors(11);
        var ints = new float[70 * 20];
        for (int i = 0; i < ints.Length; i++) ints[i] = r.Rng.Next(-2, 3);
        var db = X(ints, 70, 20);                                   // integer rows: exact ties everywhere
        var q = r.Floats(DType.F32, -1, 1, 9, 20);
        var dup = F(r.Floats(DType.F32, -1, 1, 300, 17));
        for (int i = 0; i < 100; i++) for (int j = 0; j < 17; j++) dup[(200 + i) * 17 + j] = 2 * dup[i * 17 + j]; // scaled duplicates
        var cases = new[] { (q, db, 13, false), (q, db, 70, true), (r.Floats(DType.F32, -1, 1, 5, 17), X(dup, 300, 17), 150, true) };
        long saved = Kernels.Retrieval.SimilarityTopkSimd.TileHeapLimit;
        try
        {
            foreach (long limit in new[] { saved, 0L })
            {
                Kernels.Retrieval.SimilarityTopkSimd.TileHeapLimit = limit;
                foreach (var (qq, dd, k, cos) in cases)
                {
                    var (wi, ws) = TestDevices.Get("reference").SimilarityTopk(qq, dd, k, cos);
                    var (gi, gs) = TestDevices.Get("simd").SimilarityTopk(qq, dd, k, cos);
                    Assert.That(L(gi), Is.EqualTo(L(wi)), $"limit {limit} k {k} cosine {cos}");
                    Assert.That(F(gs), Is.EqualTo(F(ws)).Within(1e-4f));
                }
            }
        }
        finally { Kernels.Retrieval.SimilarityTopkSimd.TileHeapLimit = saved; }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void RerankWithMLargerThanNRanksEveryRowOnce(string id)
    {
        var d = TestDevices.Get(id);
        var r = new Verification.RandomTensors(5);
        var db = r.Floats(DType.F32, -1, 1, 7, 4);
        var q = r.Floats(DType.F32, -1, 1, 2, 4);
        var (order, scores) = d.RerankRefine(q, db, 400, 9, 0.15f);
        Assert.That(order.Shape.ToArray(), Is.EqualTo(new[] { 2, 7 }));
        var o = L(order);
        for (int k = 0; k < 2; k++) Assert.That(o.Skip(7 * k).Take(7).Order(), Is.EqualTo(Enumerable.Range(0, 7).Select(v => (long)v)));
        var s = F(scores);
        for (int j = 1; j < 7; j++) Assert.That(s[j], Is.LessThanOrEqualTo(s[j - 1]));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void DeviceTensorsChainAndSpanOverloadsAgree(string id)
    {
        var d = TestDevices.Get(id);
        var x = new Verification.RandomTensors(3).Floats(DType.F32, -1, 1, 2, 3, 9, 7);
        var opt = new Pool2dOptions { Mode = Pool2dMode.Max, Kernel = (3, 3), Stride = (2, 2), Padding = (1, 1) };
        var sp = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, Normalize = true };
        var want = F(d.SpatialPool(d.Pool2d(x, opt), sp));
        using var xd = d.Upload(x);
        using var mid = d.Allocate(DType.F32, SpatialPooling.Pool2dShape(x.Shape, opt));
        using var od = d.Allocate(DType.F32, 2, 3);
        d.Pool2d(xd, mid, opt);
        d.SpatialPool(mid, od, sp);
        Assert.That(F(od.ToTensor()), Is.EqualTo(want));
        var pooled = new float[2 * 3 * 5 * 4];
        d.Pool2d(F(x), pooled, 2, 3, 9, 7, opt);
        Assert.That(pooled, Is.EqualTo(F(d.Pool2d(x, opt))));
        var o = new float[6];
        d.SpatialPool(pooled, o, 2, 3, 5, 4, sp);
        Assert.That(o, Is.EqualTo(want).Within(1e-6f));
    }

    public static IEnumerable<TestCaseData> BadInputs()
    {
        var x = HostTensor.Zeros(DType.F32, 1, 2, 3, 3);
        var max = new Pool2dOptions { Mode = Pool2dMode.Max, Kernel = (2, 2) };
        yield return Bad("kernel", d => d.Pool2d(x, max with { Kernel = (0, 2) }));
        yield return Bad("stride", d => d.Pool2d(x, max with { Stride = (0, 1) }));
        yield return Bad("padding", d => d.Pool2d(x, max with { Kernel = (3, 3), Padding = (3, 0), PaddingMode = "reflect" }));
        yield return Bad("padding", d => d.Pool2d(x, max with { Kernel = (3, 3), Padding = (2, 2) }));
        yield return Bad("padding", d => d.Pool2d(x, max with { Padding = (-1, 0) }));
        yield return Bad("dilation", d => d.Pool2d(x, max with { Mode = Pool2dMode.Avg, Dilation = (2, 2) }));
        yield return Bad("dilation", d => d.Pool2d(x, max with { Dilation = (0, 1) }));
        yield return Bad("p", d => d.Pool2d(x, max with { Mode = Pool2dMode.Lp, P = 0 }));
        yield return Bad("PaddingMode", d => d.Pool2d(x, max with { PaddingMode = "circular" }));
        yield return Bad("kernel", d => d.Pool2d(x, max with { Kernel = (5, 5) }));
        yield return Bad("x", d => d.Pool2d(HostTensor.Zeros(DType.F32, 2, 3, 3), max));
        yield return Bad("x", d => d.Pool2d(HostTensor.Zeros(DType.F16, 1, 2, 3, 3), max));
        yield return Bad("mode", _ => Pool2dOptions.ParseMode("median"));
        yield return Bad("p", d => d.SpatialPool(x, new() { Mode = SpatialPoolMode.Gem, P = 0 }));
        yield return Bad("p", d => d.SpatialPool(x, new() { Mode = SpatialPoolMode.Gem, P = -2 }));
        yield return Bad("valid", d => d.SpatialPool(x, new(), HostTensor.Zeros(DType.U8, 1, 3, 2)));
        yield return Bad("valid", d => d.SpatialPool(x, new(), HostTensor.Zeros(DType.F32, 1, 3, 3)));
        yield return Bad("mode", _ => SpatialPoolOptions.ParseMode("median"));
        yield return Bad("layout", _ => SpatialPoolOptions.ParseLayout("chwn"));
        yield return Bad("x", d => d.SpatialPool(new float[5], new float[2], 1, 2, 3, 3, new SpatialPoolOptions()));
        yield return Bad("outputSize", d => d.AdaptivePool2d(x, Pool2dMode.Avg, (0, 2)));
        yield return Bad("mode", d => d.AdaptivePool2d(x, Pool2dMode.Lp, (2, 2)));
        yield return Bad("levels", d => d.Spp(x, []));
        yield return Bad("levels", d => d.Spp(x, [1, 0]));
        yield return Bad("p", d => d.RegionalGem(x, 0));
        yield return Bad("p", d => d.RegionalGem(x, -1));
        yield return Bad("kernel", d => d.RegionalGem(x, 2.5f, 4));
        yield return Bad("kernel", d => d.RegionalGem(x, 2.5f, 0));
        yield return Bad("kernel", d => d.RegionalGem(x, 2.5f, 7));
        yield return Bad("p", d => d.ScaleGem(HostTensor.Zeros(DType.F32, 2, 1, 3), 0));
        yield return Bad("p", d => d.ScaleGem(HostTensor.Zeros(DType.F32, 2, 1, 3), -1));
        yield return Bad("x", d => d.ScaleGem(x));
        yield return Bad("masks", d => d.MaskPool(x, HostTensor.Zeros(DType.F32, 2, 1, 3, 3), MaskType.Soft));
        yield return Bad("masks", d => d.MaskPool(x, HostTensor.Zeros(DType.I64, 1, 1, 3, 3), MaskType.Soft));
        yield return Bad("eps", d => d.MaskPool(x, HostTensor.Zeros(DType.F32, 1, 1, 3, 3), MaskType.Soft, 0.5f, -1));
        yield return Bad("name", _ => SpatialPooling.ParseMaskType("hard"));
        yield return Bad("regionMasks", d => d.SpatioTemporalPool(x, HostTensor.Zeros(DType.Bool, 1, 2, 2, 2)));
        yield return Bad("regionMasks", d => d.SpatioTemporalPool(x, HostTensor.Zeros(DType.F32, 1, 2, 2, 3)));
        var q = HostTensor.Zeros(DType.F32, 2, 4);
        var db = HostTensor.Zeros(DType.F32, 5, 4);
        yield return Bad("k", d => d.SimilarityTopk(q, db, 6));
        yield return Bad("k", d => d.SimilarityTopk(q, db, -1));
        yield return Bad("db", d => d.SimilarityTopk(q, HostTensor.Zeros(DType.F32, 5, 3), 2));
        yield return Bad("query", d => d.SimilarityTopk(HostTensor.Zeros(DType.F32, 4), db, 2));
        yield return Bad("metric", _ => Retrieval.ParseMetric("l2"));
        yield return Bad("m", d => d.RerankRefine(q, db, 0));
        yield return Bad("k", d => d.RerankRefine(q, db, 3, -1));
        yield return Bad("db", d => d.RerankRefine(q, HostTensor.Zeros(DType.F32, 5, 3)));
    }

    private static TestCaseData Bad(string param, Action<Device> call) => BadInput.Case(param, call);

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputNamesTheArgument(string param, Action<Device> call)
        => BadInput.AssertRejectedEverywhere(param, call);
}
