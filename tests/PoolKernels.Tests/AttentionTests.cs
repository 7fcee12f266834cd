using NUnit.Framework;
using PoolKernels.Kernels.Attention;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>sdpa and sdpa_varlen beyond the vectors and the randomized conformance: hand-computed values, each mask form
/// against its equivalent boolean mask, GQA against repeated heads, layouts, varlen against per-sequence sdpa, edge
/// shapes, bad input and the SIMD allocation guarantee — every test body on every device.</summary>
public class AttentionTests
{
    private static (float[] Out, float[] Lse) Run(Device d, HostTensor q, HostTensor k, HostTensor v, HostTensor? mask = null,
        HostTensor? kpm = null, SdpaOptions? o = null)
    {
        var (out_, lse) = d.Sdpa(q, k, v, mask, kpm, o);
        return (out_.AsSpan<float>().ToArray(), lse.AsSpan<float>().ToArray());
    }

    private static HostTensor Rand(int seed, params int[] shape) => HostTensor.From(new RandomSource(seed).Floats((int)Shape.Count(shape)),
        shape);

    private static void Near(float[] actual, float[] expected, float tol = 2e-5f, string what = "out")
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        for (int i = 0; i < actual.Length; i++)
        {
            if (float.IsInfinity(expected[i]) || float.IsNaN(expected[i])) Assert.That(actual[i], Is.EqualTo(expected[i]), $"{what}[{i}]");
            else Assert.That(actual[i], Is.EqualTo(expected[i]).Within(tol + tol * Math.Abs(expected[i])), $"{what}[{i}]");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void HandComputedTwoByTwo(string id)
    {
        var d = TestDevices.Get(id);
        // E = 1, scale 1: scores row 0 = [1, 0], row 1 = [2, 0]; v = [1, 3]
        var q = HostTensor.From(new float[] { 1, 2 }, 1, 1, 2, 1);
        var k = HostTensor.From(new float[] { 1, 0 }, 1, 1, 2, 1);
        var v = HostTensor.From(new float[] { 1, 3 }, 1, 1, 2, 1);
        float e1 = MathF.E, e2 = MathF.E * MathF.E;
        var (o, l) = Run(d, q, k, v, o: new SdpaOptions { Scale = 1 });
        Near(o, [(e1 + 3) / (e1 + 1), (e2 + 3) / (e2 + 1)]);
        Near(l, [MathF.Log(e1 + 1), MathF.Log(e2 + 1)], what: "lse");
        var (oc, lc) = Run(d, q, k, v, o: new SdpaOptions { Scale = 1, Causal = SdpaCausal.TopLeft });
        Near(oc, [1, (e2 + 3) / (e2 + 1)]);
        Near(lc, [1, MathF.Log(e2 + 1)], what: "lse");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void LargeLogitsAreStable(string id)
    {
        var d = TestDevices.Get(id);
        // scores 1e4, 0, -1e4 (and a second row with the order reversed): softmax is one-hot, lse = max score
        var q = HostTensor.From(new float[] { 100, -100 }, 1, 1, 2, 1);
        var k = HostTensor.From(new float[] { 100, 0, -100 }, 1, 1, 3, 1);
        var v = HostTensor.From(new float[] { 1, 2, 3, 4, 5, 6 }, 1, 1, 3, 2);
        var (o, l) = Run(d, q, k, v, o: new SdpaOptions { Scale = 1 });
        Near(o, [1, 2, 5, 6]);
        Near(l, [1e4f, 1e4f], what: "lse");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void RowsWithNoAllowedKeyGiveZeroAndMinusInfinity(string id)
    {
        var d = TestDevices.Get(id);
        int b = 2, h = 2, tq = 5, tk = 3, e = 4;
        var q = Rand(1, b, h, tq, e); var k = Rand(2, b, h, tk, e); var v = Rand(3, b, h, tk, e);
        // bottom_right with Tq > Tk: rows 0 and 1 see nothing (j <= i - 2); batch 1 has no key at all
        var kpm = HostTensor.From(new long[] { 1, 1, 1, 0, 0, 0 }, b, tk);
        var (o, l) = Run(d, q, k, v, kpm: kpm, o: new SdpaOptions { Causal = SdpaCausal.BottomRight });
        for (int bb = 0; bb < b; bb++)
            for (int hh = 0; hh < h; hh++)
                for (int i = 0; i < tq; i++)
                {
                    bool empty = bb == 1 || i < 2;
                    int row = (bb * h + hh) * tq + i;
                    if (empty)
                    {
                        Assert.That(l[row], Is.EqualTo(float.NegativeInfinity), $"lse row {row}");
                        Assert.That(o.AsSpan(row * e, e).ToArray(), Is.All.EqualTo(0f), $"out row {row}");
                    }
                    else Assert.That(float.IsFinite(l[row]), Is.True, $"lse row {row}");
                }
        // a window that excludes every key (left 0, right 0 around a diagonal beyond Tk) also gives empty rows
        var (o2, l2) = Run(d, Rand(4, 1, 1, 4, 2), Rand(5, 1, 1, 2, 2), Rand(6, 1, 1, 2, 2), o: new SdpaOptions
        {
            WindowLeft = 0,
            WindowRight = 0
        });
        Assert.That(l2[2..], Is.All.EqualTo(float.NegativeInfinity));
        Assert.That(o2[4..], Is.All.EqualTo(0f));
    }

    /// <summary>causal / window / key padding / additive -inf each equal the boolean attn_mask that spells them out.</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void EveryMaskFormEqualsItsBooleanMask(string id)
    {
        var d = TestDevices.Get(id);
        int b = 2, h = 2, tq = 6, tk = 9, e = 5;
        var q = Rand(11, b, h, tq, e); var k = Rand(12, b, h, tk, e); var v = Rand(13, b, h, tk, 3);
        var pad = new byte[b * tk];
        for (int j = 0; j < b * tk; j++) pad[j] = (byte)(j % 4 == 1 ? 0 : 1);
        var additive = new float[b * h * tq * tk];
        var r = new Random(3);
        for (int i = 0; i < additive.Length; i++) additive[i] = r.Next(4) == 0 ? float.NegativeInfinity : 0f;
        foreach (var causal in new[] { SdpaCausal.None, SdpaCausal.TopLeft, SdpaCausal.BottomRight })
            foreach (var (wl, wr) in new[] { (-1, -1), (2, -1), (-1, 1), (1, 2), (0, 0), (20, 30) })
            {
                var opts = new SdpaOptions { Causal = causal, WindowLeft = wl, WindowRight = wr };
                var boolMask = new bool[b * h * tq * tk];
                int off = causal == SdpaCausal.BottomRight ? tk - tq : 0;
                for (int bb = 0; bb < b; bb++)
                    for (int hh = 0; hh < h; hh++)
                        for (int i = 0; i < tq; i++)
                            for (int j = 0; j < tk; j++)
                            {
                                int x = ((bb * h + hh) * tq + i) * tk + j, diag = i + off;
                                bool ok = (causal == SdpaCausal.None || j <= diag) && (wl < 0 || j >= diag - wl)
                                    && (wr < 0 || j <= diag + wr)
                                    && pad[bb * tk + j] != 0 && additive[x] == 0;
                                boolMask[x] = ok;
                            }
                var (want, wantLse) = Run(d, q, k, v, HostTensor.From(boolMask, b, h, tq, tk));
                var (got, gotLse) = Run(d, q, k, v, HostTensor.From(additive, b, h, tq, tk), HostTensor.From(pad, b, tk).To(DType.Bool),
                    opts);
                Near(got, want, 1e-5f, $"out {causal} [{wl},{wr}]");
                Near(gotLse, wantLse, 1e-5f, $"lse {causal} [{wl},{wr}]");
            }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void MaskBroadcastEqualsExpandedMask(string id)
    {
        var d = TestDevices.Get(id);
        int b = 2, h = 3, tq = 4, tk = 7, e = 6;
        var q = Rand(21, b, h, tq, e); var k = Rand(22, b, h, tk, e); var v = Rand(23, b, h, tk, e);
        var small = new RandomSource(24).Floats(tq * tk, -3, 3);
        var full = new float[b * h * tq * tk];
        for (int x = 0; x < full.Length; x++) full[x] = small[x % (tq * tk)];
        var (want, wl) = Run(d, q, k, v, HostTensor.From(full, b, h, tq, tk).To(DType.F16));
        var (got, gl) = Run(d, q, k, v, HostTensor.From(small, 1, 1, tq, tk).To(DType.F16));
        Near(got, want, 1e-5f); Near(gl, wl, 1e-5f, "lse");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void GqaEqualsRepeatedKeyValueHeads(string id)
    {
        var d = TestDevices.Get(id);
        int b = 1, hq = 6, tq = 5, tk = 7, e = 8;
        var q = Rand(31, b, hq, tq, e);
        foreach (int hkv in new[] { 1, 2, 3, 6 })
        {
            var k = Rand(32 + hkv, b, hkv, tk, e); var v = Rand(40 + hkv, b, hkv, tk, 3);
            var (got, gl) = Run(d, q, k, v, o: new SdpaOptions { Causal = SdpaCausal.BottomRight });
            var (want, wl) = Run(d, q, Repeat(k, hq / hkv), Repeat(v, hq / hkv), o: new SdpaOptions { Causal = SdpaCausal.BottomRight });
            Near(got, want, 1e-6f, $"out Hkv {hkv}"); Near(gl, wl, 1e-6f, $"lse Hkv {hkv}");
        }

        static HostTensor Repeat(HostTensor t, int n)
        {
            int bb = t.Shape[0], hh = t.Shape[1], tt = t.Shape[2], ee = t.Shape[3];
            var s = t.AsSpan<float>(); var r = new float[bb * hh * n * tt * ee];
            for (int x = 0; x < bb; x++)
                for (int h = 0; h < hh * n; h++)
                    s.Slice(((x * hh) + h / n) * tt * ee, tt * ee).CopyTo(r.AsSpan(((x * hh * n) + h) * tt * ee));
            return HostTensor.From(r, bb, hh * n, tt, ee);
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void BthdEqualsTransposedBhtd(string id)
    {
        var d = TestDevices.Get(id);
        int b = 2, hq = 4, hkv = 2, tq = 3, tk = 5, e = 7, ev = 5;
        var q = Rand(51, b, hq, tq, e); var k = Rand(52, b, hkv, tk, e); var v = Rand(53, b, hkv, tk, ev);
        var (want, wl) = Run(d, q, k, v, o: new SdpaOptions { Causal = SdpaCausal.TopLeft, WindowLeft = 1 });
        var (got, gl) = Run(d, Swap12(q), Swap12(k), Swap12(v), o: new SdpaOptions
        {
            Causal = SdpaCausal.TopLeft,
            WindowLeft = 1,
            Layout = SdpaLayout.Bthd
        });
        Near(got, Swap12(HostTensor.From(want, b, hq, tq, ev)).AsSpan<float>().ToArray(), 1e-6f);
        Near(gl, wl, 1e-6f, "lse");

        static HostTensor Swap12(HostTensor t)
        {
            int a = t.Shape[0], x = t.Shape[1], y = t.Shape[2], z = t.Shape[3];
            var s = t.AsSpan<float>(); var r = new float[s.Length];
            for (int i = 0; i < a; i++) for (int j = 0; j < x; j++) for (int l = 0; l < y; l++)
                s.Slice(((i * x + j) * y + l) * z, z).CopyTo(r.AsSpan(((i * y + l) * x + j) * z));
            return HostTensor.From(r, a, y, x, z);
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void EdgeShapes(string id)
    {
        var d = TestDevices.Get(id);
        var refd = TestDevices.Get("reference");
        (int Tq, int Tk, int E, int Ev)[] shapes = [(1, 1, 1, 1), (1, 9, 3, 2), (9, 1, 1, 4), (3, 4, 256, 256), (2, 3, 96, 40), (70, 67, 17,
            9)];
        foreach (var (tq, tk, e, ev) in shapes)
            foreach (var causal in new[] { SdpaCausal.None, SdpaCausal.BottomRight })
            {
                var q = Rand(tq * 7 + e, 1, 2, tq, e); var k = Rand(tk * 5 + e, 1, 1, tk, e); var v = Rand(tk + ev, 1, 1, tk, ev);
                var opts = new SdpaOptions { Causal = causal, WindowLeft = 100, WindowRight = 1000 }; // windows wider than the sequence
                var (got, gl) = Run(d, q, k, v, o: opts);
                var (want, wl) = Run(refd, q, k, v, o: new SdpaOptions { Causal = causal });
                Near(got, want, 1e-4f, $"out {tq},{tk},{e},{ev} {causal}"); Near(gl, wl, 1e-4f, $"lse {tq},{tk},{e},{ev} {causal}");
            }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void HalfAndBFloat16MatchFloatOfTheSameValues(string id)
    {
        var d = TestDevices.Get(id);
        var q = Rand(61, 1, 2, 5, 8).To(DType.F16); var k = Rand(62, 1, 2, 6, 8).To(DType.F16); var v = Rand(63, 1, 2, 6, 8).To(DType.F16);
        var (o16, l16) = Run(d, q, k, v);
        var (o32, l32) = Run(d, q.To(DType.F32), k.To(DType.F32), v.To(DType.F32));
        Near(o16, o32, 1e-6f); Near(l16, l32, 1e-6f, "lse");
        var (obf, lbf) = Run(d, q.To(DType.BF16), k.To(DType.BF16), v.To(DType.BF16));
        var (obf32, lbf32) = Run(d, q.To(DType.BF16).To(DType.F32), k.To(DType.BF16).To(DType.F32), v.To(DType.BF16).To(DType.F32));
        Near(obf, obf32, 1e-6f); Near(lbf, lbf32, 1e-6f, "lse");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void VarlenEqualsSdpaPerSequence(string id)
    {
        var d = TestDevices.Get(id);
        int[] lq = [3, 0, 5, 2], lk = [4, 2, 6, 0];
        int hq = 4, hkv = 2, e = 6, ev = 5, nq = lq.Sum(), nk = lk.Sum();
        var q = Rand(71, nq, hq, e); var k = Rand(72, nk, hkv, e); var v = Rand(73, nk, hkv, ev);
        var cq = new int[lq.Length + 1]; var ck = new long[lk.Length + 1];
        for (int i = 0; i < lq.Length; i++) { cq[i + 1] = cq[i] + lq[i]; ck[i + 1] = ck[i] + lk[i]; }
        var opts = new SdpaOptions { Causal = SdpaCausal.BottomRight, WindowLeft = 2 };
        var (o, l) = d.SdpaVarlen(q, k, v, HostTensor.From(cq, cq.Length), HostTensor.From(ck, ck.Length), opts); // mixed I32 / I64 offsets
        var os = o.AsSpan<float>(); var ls = l.AsSpan<float>();
        for (int s = 0; s < lq.Length; s++)
        {
            if (lq[s] == 0) continue;
            var qs = HostTensor.From(q.AsSpan<float>().Slice(cq[s] * hq * e, lq[s] * hq * e).ToArray(), 1, lq[s], hq, e);
            var ks = HostTensor.From(k.AsSpan<float>().Slice((int)ck[s] * hkv * e, lk[s] * hkv * e).ToArray(), 1, lk[s], hkv, e);
            var vs = HostTensor.From(v.AsSpan<float>().Slice((int)ck[s] * hkv * ev, lk[s] * hkv * ev).ToArray(), 1, lk[s], hkv, ev);
            var (wo, wl) = d.Sdpa(qs, ks, vs, options: opts with { Layout = SdpaLayout.Bthd });
            Near(os.Slice(cq[s] * hq * ev, lq[s] * hq * ev).ToArray(), wo.AsSpan<float>().ToArray(), 1e-6f, $"out seq {s}");
            var wls = wl.AsSpan<float>(); // [1, Hq, Tq] vs varlen [Tq, Hq]
            for (int i = 0; i < lq[s]; i++)
                for (int h = 0; h < hq; h++)
                    Assert.That(ls[(cq[s] + i) * hq + h], Is.EqualTo(wls[h * lq[s] + i]).Within(1e-5f), $"lse seq {s} row {i} head {h}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SpanAndDeviceTensorFormsAgreeWithTensors(string id)
    {
        var d = TestDevices.Get(id);
        int b = 2, hq = 2, hkv = 1, tq = 5, tk = 6, e = 4, ev = 3;
        var q = Rand(81, b, hq, tq, e); var k = Rand(82, b, hkv, tk, e); var v = Rand(83, b, hkv, tk, ev);
        var pad = new long[] { 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1 };
        var opts = new SdpaOptions { Causal = SdpaCausal.TopLeft };
        var (want, wl) = Run(d, q, k, v, kpm: HostTensor.From(pad, b, tk), o: opts);

        var so = new float[want.Length]; var sl = new float[wl.Length];
        d.Sdpa<float, long>(q.AsSpan<float>(), k.AsSpan<float>(), v.AsSpan<float>(), pad, so, sl, new SdpaDims(b, hq, hkv, tq, tk, e, ev),
            opts);
        Assert.That(so, Is.EqualTo(want)); Assert.That(sl, Is.EqualTo(wl));

        using var dq = d.Upload(q); using var dk = d.Upload(k); using var dv = d.Upload(v); using var dp = d.Upload<long>(pad, b, tk);
        using var o = d.Allocate(DType.F32, b, hq, tq, ev); using var l = d.Allocate(DType.F32, b, hq, tq);
        d.Sdpa(dq, dk, dv, o, l, keyPaddingMask: dp, options: opts);
        Assert.That(o.ToTensor().AsSpan<float>().ToArray(), Is.EqualTo(want));
        Assert.That(l.ToTensor().AsSpan<float>().ToArray(), Is.EqualTo(wl));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void ManyThreadsOnOneDevice(string id)
    {
        var d = TestDevices.Get(id);
        var inputs = Enumerable.Range(0, 4).Select(i => (Rand(90 + i, 2, 2, 9, 8), Rand(95 + i, 2, 2, 11, 8), Rand(99 + i, 2, 2, 11,
            8))).ToArray();
        var expected = inputs.Select(x => Run(TestDevices.Get("reference"), x.Item1, x.Item2, x.Item3).Out).ToArray();
        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.For(0, 16, new ParallelOptions { MaxDegreeOfParallelism = 4 }, c =>
        {
            var (qq, kk, vv) = inputs[c % 4];
            var o = Run(d, qq, kk, vv).Out;
            for (int j = 0; j < o.Length; j++)
                if (Math.Abs(o[j] - expected[c % 4][j]) > 1e-4f) { errors.Add($"call {c}: [{j}] {o[j]} vs {expected[c % 4][j]}"); break; }
        });
        Assert.That(errors, Is.Empty);
    }

    [Test]
    public void SimdVector256PathMatchesReference()
    {
        SdpaSimd.ForceVector256 = true;
        try
        {
            foreach (var op in new[] { "sdpa", "sdpa_varlen" })
            {
                var row = Conformance.Run(OpRegistry.All[op], TestDevices.Get("simd"), TestDevices.Get("reference"), 7);
                Assert.That(row.Failed, Is.Zero, row.Message);
            }
        }
        finally { SdpaSimd.ForceVector256 = false; }
    }

    [Test]
    public void SimdVector128PathMatchesReference()
    {
        SdpaSimd.ForceVector128 = true;
        try
        {
            Assert.That(SdpaSimd.Lanes, Is.EqualTo(4));
            foreach (var op in new[] { "sdpa", "sdpa_varlen", "latent_attention_pool", "multi_layer_pool" })
            {
                var row = Conformance.Run(OpRegistry.All[op], TestDevices.Get("simd"), TestDevices.Get("reference"), 7);
                Assert.That(row.Failed, Is.Zero, row.Message);
            }
        }
        finally { SdpaSimd.ForceVector128 = false; }
    }

    [Test]
    public unsafe void SimdVector128ExpIsAccurateAndExactAtTheEnds()
    {
        // the NEON / SSE4 width (fused multiply-adds on NEON, multiply and add on SSE): the same bound as the wider forms
        var x = new float[4];
        float worst = 0;
        for (int k = 0; k <= 20000; k++)
        {
            for (int i = 0; i < 4; i++) x[i] = -k * 0.0045f - i * 0.0011f; // [-90, 0]
            fixed (float* p = x)
            {
                var y = V128.Exp(System.Runtime.Intrinsics.Vector128.Load(p));
                for (int i = 0; i < 4; i++)
                {
                    if (x[i] < -87.33654f) { Assert.That(y[i], Is.Zero); continue; }
                    double want = Math.Exp(x[i]);
                    worst = Math.Max(worst, (float)(Math.Abs(y[i] - want) / want));
                }
            }
        }
        Assert.That(worst, Is.LessThan(5e-7f));
        Assert.That(V128.Exp(System.Runtime.Intrinsics.Vector128.Create(float.NegativeInfinity))[0], Is.Zero);
        Assert.That(float.IsNaN(V128.Exp(System.Runtime.Intrinsics.Vector128.Create(float.NaN))[0]), Is.True);
        Assert.That(V128.Exp(System.Runtime.Intrinsics.Vector128<float>.Zero)[3], Is.EqualTo(1f));
    }

    [Test]
    public unsafe void SimdFloatExpIsAccurateAndExactAtTheEnds()
    {
        // the Vector512 form only where AVX-512 is present (the AVX2 leg of CI runs without it); the Vector256 form always
        bool v512 = System.Runtime.Intrinsics.X86.Avx512F.IsSupported;
        var x = new float[16];
        float worst = 0;
        for (int k = 0; k <= 20000; k++)
        {
            for (int i = 0; i < 16; i++) x[i] = -k * 0.0045f - i * 0.0002f; // [-90, 0]
            fixed (float* p = x)
            {
                var y256 = V256.Exp(System.Runtime.Intrinsics.Vector256.Load(p));
                var y512 = v512 ? V512.Exp(System.Runtime.Intrinsics.Vector512.Load(p)) : default;
                for (int i = 0; i < 16; i++)
                {
                    double want = Math.Exp(x[i]);
                    if (x[i] < -87.33654f)
                    {
                        if (v512) Assert.That(y512[i], Is.Zero);
                        if (i < 8) Assert.That(y256[i], Is.Zero);
                        continue;
                    }
                    if (v512) worst = Math.Max(worst, (float)(Math.Abs(y512[i] - want) / want));
                    if (i < 8) worst = Math.Max(worst, (float)(Math.Abs(y256[i] - want) / want));
                }
            }
        }
        Assert.That(worst, Is.LessThan(5e-7f));
        Assert.That(V256.Exp(System.Runtime.Intrinsics.Vector256.Create(float.NegativeInfinity))[0], Is.Zero);
        Assert.That(float.IsNaN(V256.Exp(System.Runtime.Intrinsics.Vector256.Create(float.NaN))[0]), Is.True);
        Assert.That(V256.Exp(System.Runtime.Intrinsics.Vector256<float>.Zero)[3], Is.EqualTo(1f));
        if (!v512) return;
        Assert.That(V512.Exp(System.Runtime.Intrinsics.Vector512.Create(float.NegativeInfinity))[0], Is.Zero);
        Assert.That(float.IsNaN(V512.Exp(System.Runtime.Intrinsics.Vector512.Create(float.NaN))[0]), Is.True);
        Assert.That(V512.Exp(System.Runtime.Intrinsics.Vector512<float>.Zero)[3], Is.EqualTo(1f));
    }

    [Test]
    public void SimdMemoryIsLinearInSequenceLength()
    {
        // T = 4096, one head: a score matrix would be 64 MiB; the per-worker scratch (K, V staged once, one query block) is O(T).
        var d = TestDevices.Get("simd");
        int t = 4096, e = 16;
        var q = new RandomSource(5).Floats(t * e); var k = new RandomSource(6).Floats(t * e); var v = new RandomSource(7).Floats(t * e);
        var o = new float[t * e]; var l = new float[t];
        var dims = new SdpaDims(1, 1, 1, t, t, e, e);
        long before = GC.GetTotalAllocatedBytes(true);
        d.Sdpa<float>(q, k, v, o, l, dims, new SdpaOptions { Causal = SdpaCausal.BottomRight });
        long first = GC.GetTotalAllocatedBytes(true) - before;
        long linear = (long)Environment.ProcessorCount * 4 * (t * (2L * e + 64) + 64 * (e + 64 + 32)) + (1 << 16);
        Assert.That(first, Is.LessThan(linear), $"first call allocated {first} bytes; O(T) bound {linear}, Tq·Tk floats = {4L * t * t}");
        // process-wide count (other threads allocate a little too: the test host writes the previous tests' results, 100+ KB
        // at times, seen with a GC allocation-tick listener), so the least of three calls; the exact per-thread zero is
        // SimdSteadyStateAllocatesNothing
        long steady = long.MaxValue;
        for (int i = 0; i < 3; i++)
        {
            before = GC.GetTotalAllocatedBytes(true);
            d.Sdpa<float>(q, k, v, o, l, dims, new SdpaOptions { Causal = SdpaCausal.BottomRight });
            steady = Math.Min(steady, GC.GetTotalAllocatedBytes(true) - before);
        }
        Assert.That(steady, Is.LessThan(1 << 16), "steady state");
        Assert.That(l.All(float.IsFinite), Is.True);
    }

    [Test]
    public void SimdSteadyStateAllocatesNothing()
    {
        var d = TestDevices.Get("simd");
        int b = 2, h = 4, t = 100, e = 32;
        var q = new RandomSource(1).Floats(b * h * t * e); var k = new RandomSource(2).Floats(b * h * t * e); var v
            = new RandomSource(3).Floats(b * h * t * e);
        var pad = Enumerable.Range(0, b * t).Select(i => (byte)(i % 7 == 0 ? 0 : 1)).ToArray();
        var o = new float[b * h * t * e]; var l = new float[b * h * t];
        var dims = new SdpaDims(b, h, h, t, t, e, e);
        var opts = new SdpaOptions { Causal = SdpaCausal.TopLeft };
        for (int i = 0; i < 3; i++) d.Sdpa<float, byte>(q, k, v, pad, o, l, dims, opts);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) d.Sdpa<float, byte>(q, k, v, pad, o, l, dims, opts);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }

    // ---------------------------------------------------------------- bad input

    private static HostTensor Z(DType t, params int[] s) => HostTensor.Zeros(t, s);
    private static HostTensor Q => Z(DType.F32, 2, 4, 3, 8);
    private static HostTensor K => Z(DType.F32, 2, 2, 5, 8);
    private static HostTensor V => Z(DType.F32, 2, 2, 5, 6);

    public static IEnumerable<TestCaseData> BadInputs()
    {
        yield return Bad("k", d => d.Sdpa(Q, Z(DType.F32, 2, 3, 5, 8), Z(DType.F32, 2, 3, 5, 6)));           // Hq 4 not a multiple of Hkv 3
        yield return Bad("k", d => d.Sdpa(Q, Z(DType.F32, 2, 2, 5, 7), V));                                  // head dim
        yield return Bad("k", d => d.Sdpa(Q, Z(DType.F32, 1, 2, 5, 8), V));                                  // batch
        yield return Bad("v", d => d.Sdpa(Q, K, Z(DType.F32, 2, 1, 5, 6)));                                  // heads differ from k
        yield return Bad("v", d => d.Sdpa(Q, K, Z(DType.F32, 2, 2, 4, 6)));                                  // length differs from k
        yield return Bad("q", d => d.Sdpa(Z(DType.F32, 2, 4, 3), K, V));                                     // rank
        yield return Bad("q", d => d.Sdpa(Z(DType.I32, 2, 4, 3, 8), K, V));                                  // dtype
        yield return Bad("k", d => d.Sdpa(Q, Z(DType.F16, 2, 2, 5, 8), V));                                  // mixed dtypes
        yield return Bad("attnMask", d => d.Sdpa(Q, K, V, Z(DType.Bool, 2, 4, 3, 4)));                      // Tk
        yield return Bad("attnMask", d => d.Sdpa(Q, K, V, Z(DType.Bool, 2, 2, 3, 5)));                      // heads neither Hq nor 1
        yield return Bad("attnMask", d => d.Sdpa(Q, K, V, Z(DType.Bool, 4, 3, 5)));                         // rank
        yield return Bad("attnMask", d => d.Sdpa(Q, K, V, Z(DType.I64, 2, 4, 3, 5)));                       // dtype
        yield return Bad("keyPaddingMask", d => d.Sdpa(Q, K, V, null, Z(DType.I64, 2, 4)));
        yield return Bad("keyPaddingMask", d => d.Sdpa(Q, K, V, null, Z(DType.F32, 2, 5)));
        yield return Bad("WindowLeft", d => d.Sdpa(Q, K, V, options: new SdpaOptions { WindowLeft = -2 }));
        yield return Bad("WindowRight", d => d.Sdpa(Q, K, V, options: new SdpaOptions { WindowRight = -5 }));
        yield return Bad("Scale", d => d.Sdpa(Q, K, V, options: new SdpaOptions { Scale = float.NaN }));
        yield return Bad("Causal", d => d.Sdpa(Q, K, V, options: new SdpaOptions { Causal = (SdpaCausal)7 }));
        yield return Bad("text", _ => SdpaOptions.ParseCausal("upper"));
        yield return Bad("text", _ => SdpaOptions.ParseLayout("tbhd"));
        yield return Bad("k", d => d.Sdpa(Q, K, V, options: new SdpaOptions { Layout = SdpaLayout.Bthd })); // shapes read as bthd
        yield return Bad("output", d => d.Sdpa<float>(new float[2 * 4 * 3 * 8], new float[2 * 2 * 5 * 8], new float[2 * 2 * 5 * 6],
            new float[5], new float[24], new SdpaDims(2, 4, 2, 3, 5, 8, 6)));
        yield return Bad("lse", d => d.Sdpa<float>(new float[2 * 4 * 3 * 8], new float[2 * 2 * 5 * 8], new float[2 * 2 * 5 * 6],
            new float[144], new float[23], new SdpaDims(2, 4, 2, 3, 5, 8, 6)));
        yield return Bad("q", d => d.Sdpa<float>(new float[7], new float[2 * 2 * 5 * 8], new float[2 * 2 * 5 * 6], new float[144],
            new float[24], new SdpaDims(2, 4, 2, 3, 5, 8, 6)));
        yield return Bad("keyPaddingMask", d => d.Sdpa<float, int>(new float[2 * 4 * 3 * 8], new float[2 * 2 * 5 * 8],
            new float[2 * 2 * 5 * 6], new int[9], new float[144], new float[24], new SdpaDims(2, 4, 2, 3, 5, 8, 6)));
        yield return Bad("q", d => d.Sdpa<double>(new double[192], new double[160], new double[120], new float[144], new float[24],
            new SdpaDims(2, 4, 2, 3, 5, 8, 6)));

        var vq = Z(DType.F32, 6, 4, 8); var vk = Z(DType.F32, 7, 2, 8); var vv = Z(DType.F32, 7, 2, 3);
        HostTensor Cu(params long[] x) => HostTensor.From(x, x.Length);
        yield return Bad("cuSeqlensQ", d => d.SdpaVarlen(vq, vk, vv, Cu(0, 4, 2, 6), Cu(0, 3, 5, 7)));      // not monotonic
        yield return Bad("cuSeqlensQ", d => d.SdpaVarlen(vq, vk, vv, Cu(1, 4, 6), Cu(0, 3, 7)));            // does not start at 0
        yield return Bad("cuSeqlensQ", d => d.SdpaVarlen(vq, vk, vv, Cu(0, 4, 5), Cu(0, 3, 7)));            // does not end at Nq
        yield return Bad("cuSeqlensK", d => d.SdpaVarlen(vq, vk, vv, Cu(0, 4, 6), Cu(0, 8, 7)));            // not monotonic
        yield return Bad("cuSeqlensK", d => d.SdpaVarlen(vq, vk, vv, Cu(0, 4, 6), Cu(0, 7)));              // B differs
        yield return Bad("cuSeqlensK", d => d.SdpaVarlen(vq, vk, vv, Cu(0, 4, 6), Cu(0, 3, 7).To(DType.F32)));
        yield return Bad("k", d => d.SdpaVarlen(vq, Z(DType.F32, 7, 3, 8), Z(DType.F32, 7, 3, 3), Cu(0, 6), Cu(0, 7)));
        yield return Bad("v", d => d.SdpaVarlen(vq, vk, Z(DType.F32, 6, 2, 3), Cu(0, 6), Cu(0, 7)));
        yield return Bad("WindowLeft", d => d.SdpaVarlen(vq, vk, vv, Cu(0, 6), Cu(0, 7), new SdpaOptions { WindowLeft = -3 }));
    }

    private static TestCaseData Bad(string param, Action<Device> call) => BadInput.Case(param, call);

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputNamesTheArgument(string param, Action<Device> call)
        => BadInput.AssertRejectedEverywhere(param, call);
}
