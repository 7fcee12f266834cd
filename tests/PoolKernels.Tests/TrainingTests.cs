using NUnit.Framework;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Training;

namespace PoolKernels.Tests;

/// <summary>info_nce and adamw_step beyond the vectors and the randomized conformance: gradients against central finite
/// differences of the loss, thread-count determinism, a sequence of AdamW steps against a hand-written loop, bad input
/// on every device and the simd allocation guarantee.</summary>
[NonParallelizable]
public class TrainingTests
{
    private static HostTensor Rand(int seed, float spread, params int[] shape)
    {
        var r = new Random(seed);
        var a = new float[(int)Shape.Count(shape)];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * spread;
        return HostTensor.From(a, shape);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void InfoNceGradientsMatchFiniteDifferences(string id)
    {
        var d = TestDevices.Get(id);
        foreach (var sim in new[] { InfoNceSimilarity.Cosine, InfoNceSimilarity.Dot })
        {
            var a = Rand(1, 1, 3, 5); var c = Rand(2, 1, 7, 5);
            var (_, da, dc) = d.InfoNce(a, c, 4, sim);
            // central differences of the double-precision reference loss
            double Loss(HostTensor x, HostTensor y)
            {
                var l = new float[1];
                InfoNceReference.Run(x.AsSpan<float>(), y.AsSpan<float>(), 3, 7, 5, 4, sim == InfoNceSimilarity.Cosine, l, new float[15],
                    new float[35]);
                return l[0];
            }
            const float h = 1e-2f;
            foreach (var (t, g, name) in new[] { (a, da, "d_anchors"), (c, dc, "d_candidates") })
                for (int i = 0; i < t.Count; i++)
                {
                    var s = t.AsSpan<float>();
                    float keep = s[i];
                    s[i] = keep + h; double up = Loss(a, c);
                    s[i] = keep - h; double down = Loss(a, c);
                    s[i] = keep;
                    Assert.That(g.AsSpan<float>()[i], Is.EqualTo((up - down) / (2 * h)).Within(2e-3), $"{sim} {name}[{i}]");
                }
        }
    }

    [Test]
    public void InfoNceIsTheSameOnEveryThreadCount()
    {
        var a = Rand(3, 1, 17, 40); var c = Rand(4, 1, 51, 40);
        float[]? first = null;
        foreach (int workers in new[] { 1, 2, 3, 8 })
        {
            var l = new float[1]; var da = new float[17 * 40]; var dc = new float[51 * 40];
            InfoNceSimd.Run(a.AsSpan<float>(), c.AsSpan<float>(), 17, 51, 40, 20, true, l, da, dc, new WorkerPool(workers));
            var all = l.Concat(da).Concat(dc).ToArray();
            if (first is null) first = all;
            else Assert.That(all, Is.EqualTo(first), $"{workers} workers");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void AdamWStepsMatchAHandWrittenLoop(string id)
    {
        var d = TestDevices.Get(id);
        var p = Rand(5, 1, 3, 11); var m = HostTensor.Zeros(DType.F32, 3, 11); var v = HostTensor.Zeros(DType.F32, 3, 11);
        var hp = p.AsSpan<float>().ToArray().Select(x => (double)x).ToArray();
        var hm = new double[hp.Length]; var hv = new double[hp.Length];
        var o = new AdamWOptions { Lr = 0.05f, WeightDecay = 0.1f };
        for (int t = 1; t <= 5; t++)
        {
            var g = Rand(10 + t, 2, 3, 11);
            d.AdamWStep(p, g, m, v, t, o);
            for (int i = 0; i < hp.Length; i++)
            {
                double gi = g.AsSpan<float>()[i];
                hp[i] *= 1 - 0.05 * 0.1;
                hm[i] = 0.9 * hm[i] + 0.1 * gi; hv[i] = 0.999 * hv[i] + 0.001 * gi * gi;
                hp[i] -= 0.05 / (1 - Math.Pow(0.9, t)) * hm[i] / (Math.Sqrt(hv[i]) / Math.Sqrt(1 - Math.Pow(0.999, t)) + 1e-8);
            }
        }
        for (int i = 0; i < hp.Length; i++) Assert.That(p.AsSpan<float>()[i], Is.EqualTo(hp[i]).Within(1e-5), $"param[{i}]");
    }

    public static IEnumerable<TestCaseData> BadInputs()
    {
        HostTensor Z(DType t, params int[] s) => HostTensor.Zeros(t, s);
        yield return Bad("candidates", "N >= B", d => d.InfoNce(Z(DType.F32, 4, 8), Z(DType.F32, 3, 8)));
        yield return Bad("candidates", "width D = 8", d => d.InfoNce(Z(DType.F32, 4, 8), Z(DType.F32, 4, 7)));
        yield return Bad("anchors", "F32", d => d.InfoNce(Z(DType.F16, 4, 8), Z(DType.F32, 4, 8)));
        yield return Bad("anchors", "[B,D]", d => d.InfoNce(Z(DType.F32, 4), Z(DType.F32, 4, 8)));
        yield return Bad("scale", "finite", d => d.InfoNce(Z(DType.F32, 4, 8), Z(DType.F32, 4, 8), float.NaN));
        yield return Bad("similarity", "cosine or dot", d => d.InfoNce(Z(DType.F32, 4, 8), Z(DType.F32, 4, 8), 20, (InfoNceSimilarity)7));
        var p = Z(DType.F32, 3, 4);
        yield return Bad("step", ">= 1", d => d.AdamWStep(p, Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), 0));
        yield return Bad("grad", "param's shape", d => d.AdamWStep(p, Z(DType.F32, 4, 3), Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), 1));
        yield return Bad("expAvgSq", "F32", d => d.AdamWStep(p, Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), Z(DType.F16, 3, 4), 1));
        yield return Bad("Lr", "lr", d => d.AdamWStep(p, Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), 1,
            new AdamWOptions { Lr = -1 }));
        yield return Bad("Beta2", "beta2", d => d.AdamWStep(p, Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), 1,
            new AdamWOptions { Beta2 = 1 }));
        yield return Bad("Eps", "eps", d => d.AdamWStep(p, Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), Z(DType.F32, 3, 4), 1,
            new AdamWOptions { Eps = 0 }));
        yield return Bad("grad", "param's length", d => d.AdamWStep(new float[4], new float[3], new float[4], new float[4], 1));
    }

    private static TestCaseData Bad(string param, string text, Action<Device> call) => new(param, text,
        call)
    { TestName = $"Bad {param}: {text}" };

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputIsAnArgumentExceptionOnEveryDevice(string param, string text, Action<Device> call)
    {
        foreach (var id in TestDevices.All())
        {
            var ex = Assert.Throws<ArgumentException>(() => call(TestDevices.Get(id)), id);
            Assert.That(ex!.ParamName, Is.EqualTo(param), $"{id}: {ex.Message}");
            Assert.That(ex.Message, Does.Contain(text), id);
        }
    }

    [Test]
    public void SimdSteadyStateAllocatesNothing()
    {
        var d = TestDevices.Get("simd");
        using var a = d.Upload(Rand(1, 1, 8, 32)); using var c = d.Upload(Rand(2, 1, 24, 32));
        using var l = d.Allocate(DType.F32, 1); using var da = d.Allocate(DType.F32, 8, 32); using var dc = d.Allocate(DType.F32, 24, 32);
        var p = new float[5000]; var g = new float[5000]; var m = new float[5000]; var v = new float[5000];
        for (int i = 0; i < 3; i++) { d.InfoNce(a, c, l, da, dc); d.AdamWStep(p, g, m, v, i + 1); }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) { d.InfoNce(a, c, l, da, dc); d.AdamWStep(p, g, m, v, i + 4); }
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }
}
