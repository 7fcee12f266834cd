using NUnit.Framework;
using PoolKernels.Kernels.Attention;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>The simd sdpa's tiling against the reference on shapes of several query blocks and key tiles (the randomized
/// conformance cases are small): partial last blocks and tiles, key ranges that the padding row narrows (padding at both
/// ends and inside), causal diagonals, windows, attn_mask, F16, GQA, interleaved query-block chunks; Vector512, Vector256 and Vector128
/// (the widths this leg's hardware has, narrower ones forced by SdpaSimd's test switches).</summary>
[NonParallelizable]
public class SdpaSimdTilingTests
{
    private static HostTensor Rand(int seed, params int[] shape) => HostTensor.From(new RandomSource(seed).Floats((int)Shape.Count(shape)),
        shape);

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (int lanes in new[] { 16, 8, 4 })
        {
            string w = "V" + lanes * 32;
            yield return new TestCaseData(lanes, 150, 211, 64, 64, SdpaCausal.None, -1, -1, true, false,
                false).SetName($"{w} padding 150x211 E64");
            yield return new TestCaseData(lanes, 200, 200, 64, 64, SdpaCausal.TopLeft, -1, -1, true, false,
                false).SetName($"{w} causal+padding 200 E64");
            yield return new TestCaseData(lanes, 130, 260, 17, 40, SdpaCausal.BottomRight, 70, 30, true, false,
                false).SetName($"{w} bottom_right window 130x260 E17/40");
            yield return new TestCaseData(lanes, 129, 140, 32, 24, SdpaCausal.None, 50, 20, false, true,
                false).SetName($"{w} window+attn_mask 129x140");
            yield return new TestCaseData(lanes, 190, 190, 64, 64, SdpaCausal.TopLeft, -1, -1, true, true,
                true).SetName($"{w} F16 causal+padding+attn_mask 190");
            yield return new TestCaseData(lanes, 300, 70, 64, 32, SdpaCausal.None, -1, -1, false, false,
                false).SetName($"{w} plain 300x70");
            // rows past the keys see nothing (i - 10 > Tk - 1 from row 58 on): blocks whose last rows are empty
            yield return new TestCaseData(lanes, 150, 48, 16, 16, SdpaCausal.None, 10, -1, true, false,
                false).SetName($"{w} window past the keys 150x48");
            yield return new TestCaseData(lanes, 200, 120, 32, 32, SdpaCausal.TopLeft, 5, -1, false, false,
                false).SetName($"{w} causal window past the keys 200x120");
            // bottom_right with Tq > Tk: the first rows see nothing
            yield return new TestCaseData(lanes, 180, 100, 16, 16, SdpaCausal.BottomRight, -1, -1, true, false,
                false).SetName($"{w} bottom_right first rows empty 180x100");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void ManyTilesMatchReference(int lanes, int tq, int tk, int e, int ev, SdpaCausal causal, int wl, int wr, bool kpm, bool mask,
        bool f16)
    {
        int b = 3, hq = 4, hkv = 2;
        var q = Rand(tq + e, b, hq, tq, e); var k = Rand(tk + 2 * e, b, hkv, tk, e); var v = Rand(tk + ev, b, hkv, tk, ev);
        if (f16) { q = q.To(DType.F16); k = k.To(DType.F16); v = v.To(DType.F16); }
        HostTensor? pad = null, am = null;
        if (kpm)
        {
            // batch 0: right padding; batch 1: left and right padding and a hole; batch 2: everything padded but one key
            var p = new bool[b * tk];
            for (int j = 0; j < tk; j++)
            {
                p[j] = j < tk - 45;
                p[tk + j] = j >= 70 && j < tk - 3 && (j < 100 || j >= 140);
                p[2 * tk + j] = j == tk / 2;
            }
            pad = HostTensor.From(p, b, tk);
        }
        if (mask)
        {
            var r = new Random(tq * tk);
            var m = new bool[b * tq * tk];
            for (int i = 0; i < m.Length; i++) m[i] = r.Next(5) != 0;
            am = HostTensor.From(m, b, 1, tq, tk);
        }
        var opts = new SdpaOptions { Causal = causal, WindowLeft = wl, WindowRight = wr };
        var (wo, wlse) = TestDevices.Get("reference").Sdpa(q, k, v, am, pad, opts);
        SdpaSimd.ForceVector256 = lanes == 8;
        SdpaSimd.ForceVector128 = lanes == 4;
        try
        {
            var (go, glse) = TestDevices.Get("simd").Sdpa(q, k, v, am, pad, opts);
            Near(go.AsSpan<float>().ToArray(), wo.AsSpan<float>().ToArray(), "out");
            Near(glse.AsSpan<float>().ToArray(), wlse.AsSpan<float>().ToArray(), "lse");
        }
        finally { SdpaSimd.ForceVector256 = false; SdpaSimd.ForceVector128 = false; }
    }

    private static void Near(float[] actual, float[] expected, string what, float tol = 1e-4f)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        int empty = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            if (float.IsInfinity(expected[i]) || float.IsNaN(expected[i]))
            {
                Assert.That(actual[i], Is.EqualTo(expected[i]),
                $"{what}[{i}]"); empty++;
            }
            else Assert.That(actual[i], Is.EqualTo(expected[i]).Within(tol + tol * Math.Abs(expected[i])), $"{what}[{i}]");
        }
        Assert.That(empty, Is.LessThan(actual.Length), $"{what}: every row empty");
    }
}
