using NUnit.Framework;
using PoolKernels.Kernels.Attention;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>sdpa's score modifiers (softcap, ALiBi, sinks) beyond the vectors and the randomized conformance: their limits
/// against plain sdpa, hand-computed sinks, a fully masked row with a sink, many tiles at every SIMD width, and bad input
/// on every device.</summary>
[NonParallelizable]
public class AttentionModifierTests
{
    private static HostTensor Rand(int seed, params int[] shape) => HostTensor.From(new RandomSource(seed).Floats((int)Shape.Count(shape)),
        shape);

    private static void Near(HostTensor actual, HostTensor expected, float tol, string what)
    {
        var a = actual.AsSpan<float>(); var e = expected.AsSpan<float>();
        Assert.That(a.Length, Is.EqualTo(e.Length), what);
        for (int i = 0; i < a.Length; i++)
        {
            if (!float.IsFinite(e[i])) Assert.That(a[i], Is.EqualTo(e[i]), $"{what}[{i}]");
            else Assert.That(a[i], Is.EqualTo(e[i]).Within(tol + tol * Math.Abs(e[i])), $"{what}[{i}]");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void LimitsEqualPlainSdpa(string id)
    {
        var d = TestDevices.Get(id);
        var q = Rand(1, 2, 4, 9, 16); var k = Rand(2, 2, 2, 11, 16); var v = Rand(3, 2, 2, 11, 8);
        var plain = new SdpaOptions { Causal = SdpaCausal.BottomRight };
        var (o0, l0) = d.Sdpa(q, k, v, options: plain);
        // a cap far above every score is the identity; ALiBi with zero slopes adds 0; a sink of -80 adds e^-80 to a
        // denominator of at least e^-|max score|
        foreach (var mod in new[]
        {
            plain with { Softcap = 1e6f },
            plain with { AlibiSlopes = new float[4] },
            plain with { AlibiSlopes = new float[8] },
            plain with { Sinks = new float[] { -80, -80, -80, -80 } },
        })
        {
            var (o1, l1) = d.Sdpa(q, k, v, options: mod);
            Near(o1, o0, 2e-5f, $"out {mod}");
            Near(l1, l0, 2e-5f, $"lse {mod}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SinksAndAlibiHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        // E = 1, scale 1, two keys with scores 1 and 0 for the one query; v = [1, 3]
        var q = HostTensor.From(new float[] { 1 }, 1, 1, 1, 1);
        var k = HostTensor.From(new float[] { 1, 0 }, 1, 1, 2, 1);
        var v = HostTensor.From(new float[] { 1, 3 }, 1, 1, 2, 1);
        double e1 = Math.E, sink = 0.5, es = Math.Exp(sink);
        var (o, l) = d.Sdpa(q, k, v, options: new SdpaOptions { Scale = 1, Sinks = new[] { (float)sink } });
        Assert.That(o.AsSpan<float>()[0], Is.EqualTo((e1 + 3) / (e1 + 1 + es)).Within(1e-5));
        Assert.That(l.AsSpan<float>()[0], Is.EqualTo(Math.Log(e1 + 1 + es)).Within(1e-5));
        // ALiBi, causal none (o = 0): query 0 against keys 0, 1 adds -0.5·0 and -0.5·1: scores 1 and -0.5
        (o, l) = d.Sdpa(q, k, v, options: new SdpaOptions { Scale = 1, AlibiSlopes = new[] { 0.5f } });
        double em = Math.Exp(-0.5);
        Assert.That(o.AsSpan<float>()[0], Is.EqualTo((e1 + 3 * em) / (e1 + em)).Within(1e-5));
        Assert.That(l.AsSpan<float>()[0], Is.EqualTo(Math.Log(e1 + em)).Within(1e-5));
        // softcap 0.5: scores 0.5·tanh(2) and 0
        (o, l) = d.Sdpa(q, k, v, options: new SdpaOptions { Scale = 1, Softcap = 0.5f });
        double ec = Math.Exp(0.5 * Math.Tanh(2));
        Assert.That(o.AsSpan<float>()[0], Is.EqualTo((ec + 3) / (ec + 1)).Within(1e-5));
        Assert.That(l.AsSpan<float>()[0], Is.EqualTo(Math.Log(ec + 1)).Within(1e-5));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void FullyMaskedRowWithSinkGivesZeroAndTheSink(string id)
    {
        var d = TestDevices.Get(id);
        var q = Rand(4, 1, 2, 3, 8); var k = Rand(5, 1, 2, 4, 8); var v = Rand(6, 1, 2, 4, 8);
        var kpm = HostTensor.From(new bool[4], 1, 4); // every key padded
        var (o, l) = d.Sdpa(q, k, v, keyPaddingMask: kpm, options: new SdpaOptions
        {
            Sinks = new[] { 1.5f, -2f },
            Softcap = 3,
            AlibiSlopes = new[] { 1f, 2f }
        });
        Assert.That(o.AsSpan<float>().ToArray(), Is.All.EqualTo(0f));
        Assert.That(l.AsSpan<float>().ToArray(), Is.EqualTo(new[] { 1.5f, 1.5f, 1.5f, -2f, -2f, -2f }));
    }

    public static IEnumerable<TestCaseData> Widths() => new[] { 16, 8, 4 }.Select(w
        => new TestCaseData(w).SetName($"ManyTilesWithModifiers V{w * 32}"));

    [TestCaseSource(nameof(Widths))]
    public void ManyTilesWithModifiers(int lanes)
    {
        // several query blocks and key tiles, every modifier with key padding, a bottom_right window and GQA
        int b = 2, hq = 4, hkv = 2, tq = 150, tk = 211, e = 32;
        var q = Rand(7, b, hq, tq, e); var k = Rand(8, b, hkv, tk, e); var v = Rand(9, b, hkv, tk, e);
        var pad = new bool[b * tk];
        for (int j = 0; j < tk; j++) { pad[j] = j < tk - 40; pad[tk + j] = j >= 30 && (j < 100 || j > 120); }
        var slopes = Enumerable.Range(0, b * hq).Select(i => 0.02f * (i + 1)).ToArray();
        var opts = new SdpaOptions
        {
            Causal = SdpaCausal.BottomRight,
            WindowLeft = 90,
            Softcap = 4,
            AlibiSlopes = slopes,
            Sinks = new[] { 0.3f, -1f, 2f, 0f },
        };
        var kpm = HostTensor.From(pad, b, tk);
        var (wo, wl) = TestDevices.Get("reference").Sdpa(q, k, v, keyPaddingMask: kpm, options: opts);
        SdpaSimd.ForceVector256 = lanes == 8;
        SdpaSimd.ForceVector128 = lanes == 4;
        try
        {
            var (go, gl) = TestDevices.Get("simd").Sdpa(q, k, v, keyPaddingMask: kpm, options: opts);
            Near(go, wo, 1e-4f, "out");
            Near(gl, wl, 1e-4f, "lse");
        }
        finally { SdpaSimd.ForceVector256 = false; SdpaSimd.ForceVector128 = false; }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void BadModifiersAreArgumentExceptions(string id)
    {
        var d = TestDevices.Get(id);
        var q = Rand(1, 2, 4, 3, 8); var k = Rand(2, 2, 2, 5, 8); var v = Rand(3, 2, 2, 5, 8);
        void Bad(SdpaOptions o, string param, string text)
        {
            var ex = Assert.Throws<ArgumentException>(() => d.Sdpa(q, k, v, options: o), o.ToString());
            Assert.That(ex!.ParamName, Is.EqualTo(param));
            Assert.That(ex.Message, Does.Contain(text));
        }
        Bad(new SdpaOptions { Softcap = -1 }, "Softcap", "softcap");
        Bad(new SdpaOptions { Softcap = float.NaN }, "Softcap", "softcap");
        Bad(new SdpaOptions { Softcap = float.PositiveInfinity }, "Softcap", "softcap");
        Bad(new SdpaOptions { AlibiSlopes = new float[3] }, "AlibiSlopes", "Hq = 4");
        Bad(new SdpaOptions { AlibiSlopes = new float[12] }, "AlibiSlopes", "B·Hq = 8");
        Bad(new SdpaOptions { AlibiSlopes = new[] { 1f, float.NaN, 1, 1 } }, "AlibiSlopes", "finite");
        Bad(new SdpaOptions { Sinks = new float[8] }, "Sinks", "Hq = 4");
        Bad(new SdpaOptions { Sinks = new[] { 1f, float.NegativeInfinity, 1, 1 } }, "Sinks", "finite");
        // sdpa_varlen checks against its own batch (B = 1 here)
        var cu = HostTensor.From(new long[] { 0, 3 }, 2); var cuk = HostTensor.From(new long[] { 0, 5 }, 2);
        var ex = Assert.Throws<ArgumentException>(() => d.SdpaVarlen(Rand(1, 3, 4, 8), Rand(2, 5, 2, 8), Rand(3, 5, 2, 8), cu, cuk,
            new SdpaOptions { AlibiSlopes = new float[8] }));
        Assert.That(ex!.ParamName, Is.EqualTo("AlibiSlopes"));
    }

    [Test]
    public void OptionsCopyTheirArraysAndPrintThem()
    {
        var slopes = new[] { 0.5f, 0.25f };
        var o = new SdpaOptions { AlibiSlopes = slopes, Sinks = new[] { 1f, 2f }, Softcap = 30 };
        slopes[0] = 9; // the options keep their own copy
        Assert.That(o.AlibiSlopes.Span[0], Is.EqualTo(0.5f));
        Assert.That(o.ToString(), Does.Contain("AlibiSlopes = [0.5, 0.25]").And.Contain("Sinks = [1, 2]").And.Contain("Softcap = 30"));
        var o2 = o with { Sinks = ReadOnlyMemory<float>.Empty };
        Assert.That(o2.Mods, Is.EqualTo(new[] { 0.5f, 0.25f }));
        Assert.That(o.Mods, Is.EqualTo(new[] { 0.5f, 0.25f, 1f, 2f }));
    }
}
