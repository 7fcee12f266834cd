using NUnit.Framework;
using PoolKernels.Kernels.Bilinear;

namespace PoolKernels.Tests;

/// <summary>bilinear_pool, mfb_pool, mfh_pool and compact_bilinear_pool beyond the vectors: hand-computed values, MCB at
/// odd, prime and the usual d = 16000, bad input on every device.</summary>
public class BilinearTests
{
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void BilinearHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        // x [1,2,2], y [1,2,1]; n = 1 masked out: mean over n = 0 only
        var x = HostTensor.From(new float[] { 2, -3, 9, 9 }, 1, 2, 2);
        var y = HostTensor.From(new float[] { 4, 9 }, 1, 2, 1);
        var mask = HostTensor.From(new[] { true, false }, 1, 2);
        var raw = d.BilinearPool(x, y, mask, signedSqrt: false, normalize: false).AsSpan<float>().ToArray();
        Assert.That(raw, Is.EqualTo(new float[] { 8, -12 }));
        var full = d.BilinearPool(x, y, mask).AsSpan<float>().ToArray();
        float a = MathF.Sqrt(8), b = -MathF.Sqrt(12), n = MathF.Sqrt(8 + 12);
        Assert.That(full, Is.EqualTo(new[] { a / n, b / n }).Within(1e-6f));
        var none = d.BilinearPool(x, y, HostTensor.From(new[] { false, false }, 1, 2)).AsSpan<float>().ToArray();
        Assert.That(none, Is.All.EqualTo(0f), "no valid n gives zeros");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void MfbAndMfhHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        // Dx = Dy = 1, o = 1, k = 2: px = (2x, -x), py = (y, 3y) with no bias
        var x = HostTensor.From(new float[] { 1 }, 1, 1); var y = HostTensor.From(new float[] { 2 }, 1, 1);
        var w = new MfbWeights<HostTensor>(HostTensor.From(new float[] { 2, -1 }, 2, 1), HostTensor.Zeros(DType.F32, 2),
            HostTensor.From(new float[] { 1, 3 }, 2, 1), HostTensor.Zeros(DType.F32, 2));
        var raw = new MfbOptions { K = 2, SignedSqrt = false, Normalize = false };
        Assert.That(d.MfbPool(x, y, w, raw).AsSpan<float>().ToArray(), Is.EqualTo(new float[] { 2 * 2 + -1 * 6 }));
        Assert.That(d.MfbPool(x, y, w, raw with { Activation = MfbActivation.Relu }).AsSpan<float>().ToArray(),
            Is.EqualTo(new float[] { 4 }));
        Assert.That(d.MfbPool(x, y, w, raw with { Activation = MfbActivation.LeakyRelu }).AsSpan<float>().ToArray(),
            Is.EqualTo(new[] { 4 + -0.01f * 6 }).Within(1e-6f));
        // MFH: block 2 = block 1, so e2 = e1² per factor: z2 = 4² + (-6)²
        var h = d.MfhPool(x, y, w, w, raw).AsSpan<float>().ToArray();
        Assert.That(h, Is.EqualTo(new float[] { -2, 16 + 36 }));
        var hs = d.MfhPool(x, y, w, w, raw with { SignedSqrt = true, Normalize = true }).AsSpan<float>().ToArray();
        Assert.That(hs, Is.EqualTo(new float[] { -1, 1 }).Within(1e-6f), "each block normalized separately");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void McbHandComputedOddD(string id)
    {
        var d = TestDevices.Get(id);
        // d = 3; x sketch: x0 -> bin 2 (+), x1 -> bin 2 (-); y sketch: y0 -> bin 1
        var o = d.CompactBilinearPool(HostTensor.From(new float[] { 5, 2 }, 1, 2), HostTensor.From(new float[] { 3 }, 1, 1),
            HostTensor.From(new long[] { 2, 2 }, 2), HostTensor.From(new float[] { 1, -1 }, 2), HostTensor.From(new long[] { 1 }, 1),
                HostTensor.From(new float[] { 1 }, 1), 3);
        Assert.That(o.AsSpan<float>().ToArray(), Is.EqualTo(new float[] { 9, 0, 0 }).Within(1e-5f), "(2 + 1) mod 3 = 0 holds (5 - 2)·3");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void McbUsualD16000AndPrimeDMatchTheDirectSum(string id)
    {
        var d = TestDevices.Get(id);
        var rng = new Random(16000);
        foreach (int dd in new[] { 16000, 4099 })
        {
            int b = 3, dx = 48, dy = 40;
            HostTensor F(params int[] s) => HostTensor.From(Enumerable.Range(0, (int)Shape.Count(s)).Select(_
                => (float)(rng.NextDouble() * 2 - 1)).ToArray(), s);
            HostTensor H(int n) => HostTensor.From(Enumerable.Range(0, n).Select(_ => (long)rng.Next(dd)).ToArray(), n);
            HostTensor S(int n) => HostTensor.From(Enumerable.Range(0, n).Select(_ => rng.Next(2) == 0 ? -1f : 1f).ToArray(), n);
            var (x, y, hx, sx, hy, sy) = (F(b, dx), F(b, dy), H(dx), S(dx), H(dy), S(dy));
            var want = TestDevices.Get("reference").CompactBilinearPool(x, y, hx, sx, hy, sy, dd,
                normalize: true).AsSpan<float>().ToArray();
            var got = d.CompactBilinearPool(x, y, hx, sx, hy, sy, dd, normalize: true).AsSpan<float>().ToArray();
            Assert.That(got, Is.EqualTo(want).Within(2e-5f), $"d = {dd}");
        }
    }

    private static HostTensor X2 => HostTensor.Zeros(DType.F32, 2, 3);
    private static HostTensor Y2 => HostTensor.Zeros(DType.F32, 2, 4);

    private static MfbWeights<HostTensor> W(int rows, int dx = 3, int dy = 4) =>
        new(HostTensor.Zeros(DType.F32, rows, dx), HostTensor.Zeros(DType.F32, rows), HostTensor.Zeros(DType.F32, rows, dy),
            HostTensor.Zeros(DType.F32, rows));

    public static IEnumerable<TestCaseData> BadInputs()
    {
        yield return Bad("k", d => d.MfbPool(X2, Y2, W(6), new MfbOptions { K = 0 }));
        yield return Bad("k", d => d.MfbPool(X2, Y2, W(6), new MfbOptions { K = -2 }));
        yield return Bad("wx", d => d.MfbPool(X2, Y2, W(6), new MfbOptions { K = 4 }));
        yield return Bad("wx", d => d.MfbPool(X2, Y2, W(6, dx: 2), new MfbOptions { K = 3 }));
        yield return Bad("wy", d => d.MfbPool(X2, Y2, W(6, dy: 5), new MfbOptions { K = 3 }));
        yield return Bad("by", d => d.MfbPool(X2, Y2, W(6) with { By = HostTensor.Zeros(DType.F32, 5) }, new MfbOptions { K = 3 }));
        yield return Bad("y", d => d.MfbPool(X2, HostTensor.Zeros(DType.F32, 3, 4), W(6), new MfbOptions { K = 3 }));
        yield return Bad("wx2", d => d.MfhPool(X2, Y2, W(6), W(9), new MfbOptions { K = 3 }));
        yield return Bad("activation", _ => MfbOptions.ParseActivation("gelu"));
        yield return Bad("hx", d => d.CompactBilinearPool(X2, Y2, HostTensor.From(new long[] { 0, 1, 8 }, 3), HostTensor.Zeros(DType.F32,
            3), HostTensor.Zeros(DType.I64, 4), HostTensor.Zeros(DType.F32, 4), 8));
        yield return Bad("hx", d => d.CompactBilinearPool(X2, Y2, HostTensor.From(new long[] { 0, -1, 2 }, 3), HostTensor.Zeros(DType.F32,
            3), HostTensor.Zeros(DType.I64, 4), HostTensor.Zeros(DType.F32, 4), 8));
        yield return Bad("hy", d => d.CompactBilinearPool(X2, Y2, HostTensor.Zeros(DType.I64, 3), HostTensor.Zeros(DType.F32, 3),
            HostTensor.From(new int[] { 0, 9, 0, 0 }, 4), HostTensor.Zeros(DType.F32, 4), 8));
        yield return Bad("hx", d => d.CompactBilinearPool(X2, Y2, HostTensor.Zeros(DType.I64, 2), HostTensor.Zeros(DType.F32, 3),
            HostTensor.Zeros(DType.I64, 4), HostTensor.Zeros(DType.F32, 4), 8));
        yield return Bad("sy", d => d.CompactBilinearPool(X2, Y2, HostTensor.Zeros(DType.I64, 3), HostTensor.Zeros(DType.F32, 3),
            HostTensor.Zeros(DType.I64, 4), HostTensor.Zeros(DType.F32, 3), 8));
        yield return Bad("d", d => d.CompactBilinearPool(X2, Y2, HostTensor.Zeros(DType.I64, 3), HostTensor.Zeros(DType.F32, 3),
            HostTensor.Zeros(DType.I64, 4), HostTensor.Zeros(DType.F32, 4), 0));
        yield return Bad("y", d => d.BilinearPool(HostTensor.Zeros(DType.F32, 2, 3, 4), HostTensor.Zeros(DType.F32, 2, 2, 4)));
        yield return Bad("mask", d => d.BilinearPool(HostTensor.Zeros(DType.F32, 2, 3, 4), null, HostTensor.Zeros(DType.Bool, 2, 2)));
        yield return Bad("mask", d => d.BilinearPool(HostTensor.Zeros(DType.F32, 2, 3, 4), null, HostTensor.Zeros(DType.F32, 2, 3)));
        yield return Bad("x", d => d.BilinearPool(HostTensor.Zeros(DType.F32, 2, 3)));
    }

    private static TestCaseData Bad(string param, Action<Device> call) => BadInput.Case(param, call);

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputNamesTheArgument(string param, Action<Device> call)
        => BadInput.AssertRejectedEverywhere(param, call);
}
