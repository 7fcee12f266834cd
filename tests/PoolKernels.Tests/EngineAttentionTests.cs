using NUnit.Framework;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Attention;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>sdpa_paged, kv_cache_write and attention_combine beyond the vectors and the randomized conformance: paged
/// attention against sdpa over the gathered keys, sdpa over disjoint key chunks combined against sdpa over all keys, the
/// decode kernel against the tiled one, a decode loop through the cache, bad input on every device, and the simd
/// allocation guarantee.</summary>
[NonParallelizable]
public class EngineAttentionTests
{
    private static HostTensor Rand(int seed, params int[] shape) => HostTensor.From(new RandomSource(seed).Floats((int)Shape.Count(shape)),
        shape);

    private static void Near(HostTensor actual, HostTensor expected, float tol, string what)
    {
        var a = actual.AsSpan<float>(); var e = expected.AsSpan<float>();
        if (tol == 0) { Assert.That(a.ToArray(), Is.EqualTo(e.ToArray()), what); return; }
        Assert.That(a.Length, Is.EqualTo(e.Length), what);
        for (int i = 0; i < a.Length; i++)
        {
            if (!float.IsFinite(e[i])) Assert.That(a[i], Is.EqualTo(e[i]), $"{what}[{i}]");
            else Assert.That(a[i], Is.EqualTo(e[i]).Within(tol + tol * Math.Abs(e[i])), $"{what}[{i}]");
        }
    }

    /// <summary>Sequence b's keys gathered from the cache into [1, Hkv, len, E] (bhtd).</summary>
    private static HostTensor Gather(HostTensor cache, HostTensor table, int b, int len)
    {
        int s = cache.Shape[1], hkv = cache.Shape[2], e = cache.Shape[3];
        var t = table.ToInt64s();
        int maxPages = table.Shape[1];
        var src = cache.AsSpan<float>();
        var dst = new float[hkv * len * e];
        for (int j = 0; j < len; j++)
        {
            long row = t[b * maxPages + j / s] * s + j % s;
            for (int h = 0; h < hkv; h++)
                src.Slice((int)((row * hkv + h) * e), e).CopyTo(dst.AsSpan((h * len + j) * e, e));
        }
        return HostTensor.From(dst, 1, hkv, len, e);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void PagedEqualsSdpaOverTheGatheredKeys(string id)
    {
        var d = TestDevices.Get(id);
        int[] lens = [0, 1, 23, 61];
        int hq = 8, hkv = 2, e = 16, tq = 3, s = 5;
        var (table, seqLens, pages) = EngineAttentionFamily.PagedLayout(new Random(3), lens, s, 3, true, false);
        var kc = Rand(1, pages, s, hkv, e); var vc = Rand(2, pages, s, hkv, e); var q = Rand(3, lens.Length, hq, tq, e);
        var opts = new SdpaOptions
        {
            Causal = SdpaCausal.BottomRight,
            Softcap = 4,
            AlibiSlopes = Enumerable.Range(1, hq).Select(i => 0.1f * i).ToArray(),
            Sinks = Enumerable.Range(0, hq).Select(i => 0.2f * i - 0.5f).ToArray(),
            WindowLeft = 15
        };
        var (po, pl) = d.SdpaPaged(q, kc, vc, table, seqLens, opts);
        for (int b = 0; b < lens.Length; b++)
        {
            var qb = HostTensor.From(q.AsSpan<float>().Slice(b * hq * tq * e, hq * tq * e).ToArray(), 1, hq, tq, e);
            var (so, sl) = d.Sdpa(qb, Gather(kc, table, b, lens[b]), Gather(vc, table, b, lens[b]), options: opts);
            Near(HostTensor.From(po.AsSpan<float>().Slice(b * hq * tq * e, hq * tq * e).ToArray(), 1, hq, tq, e), so, 2e-5f, $"out b{b}");
            Near(HostTensor.From(pl.AsSpan<float>().Slice(b * hq * tq, hq * tq).ToArray(), 1, hq, tq), sl, 2e-5f, $"lse b{b}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void CombinedChunksEqualSdpaOverAllKeys(string id)
    {
        var d = TestDevices.Get(id);
        int b = 2, hq = 4, hkv = 2, tq = 5, tk = 37, e = 8;
        var q = Rand(4, b, hq, tq, e); var k = Rand(5, b, hkv, tk, e); var v = Rand(6, b, hkv, tk, e);
        var full = new SdpaOptions { Causal = SdpaCausal.BottomRight, AlibiSlopes = new[] { 0.3f, 0.1f, 0.2f, 0.05f } };
        var (fo, fl) = d.Sdpa(q, k, v, options: full);
        // random disjoint key chunks as key padding masks (bottom_right and ALiBi see the full key positions)
        var rng = new Random(7);
        int n = 4;
        var owner = Enumerable.Range(0, b * tk).Select(_ => rng.Next(n)).ToArray();
        var outs = new float[n * b * hq * tq * e]; var lses = new float[n * b * hq * tq];
        for (int c = 0; c < n; c++)
        {
            var kpm = HostTensor.From(owner.Select(o => o == c).ToArray(), b, tk);
            var (co, cl) = d.Sdpa(q, k, v, keyPaddingMask: kpm, options: full);
            co.AsSpan<float>().CopyTo(outs.AsSpan(c * b * hq * tq * e));
            cl.AsSpan<float>().CopyTo(lses.AsSpan(c * b * hq * tq));
        }
        var (mo, ml) = d.AttentionCombine(HostTensor.From(outs, n, b, hq, tq, e), HostTensor.From(lses, n, b, hq, tq));
        Near(mo, fo, 2e-5f, "out");
        Near(ml, fl, 2e-5f, "lse");
        // sinks after combining: lse' = log(e^lse + e^sink), out·e^{lse - lse'}
        var sinks = new[] { 0.5f, -1f, 2f, 0f };
        var (so, sl) = d.Sdpa(q, k, v, options: full with { Sinks = sinks });
        var mos = mo.AsSpan<float>(); var mls = ml.AsSpan<float>();
        for (int r = 0; r < b * hq * tq; r++)
        {
            float sink = sinks[r / tq % hq], l2 = MathF.Log(MathF.Exp(mls[r]) + MathF.Exp(sink));
            Assert.That(sl.AsSpan<float>()[r], Is.EqualTo(l2).Within(2e-5 + 2e-5 * Math.Abs(l2)), $"lse with sink [{r}]");
            for (int x = 0; x < e; x++)
                Assert.That(so.AsSpan<float>()[r * e + x], Is.EqualTo(mos[r * e + x] * MathF.Exp(mls[r] - l2)).Within(3e-5),
                    $"out with sink [{r}]");
        }
    }

    [Test]
    public void DecodeKernelMatchesTheTiledKernelAtEveryWidth()
    {
        var d = TestDevices.Get("simd");
        int[] lens = [700, 1, 1300, 0];
        var (table, seqLens, pages) = EngineAttentionFamily.PagedLayout(new Random(9), lens, 16, 0, false, false);
        var kc = Rand(7, pages, 16, 2, 40); var vc = Rand(8, pages, 16, 2, 24); var q = Rand(9, lens.Length, 8, 2, 40);
        var opts = new SdpaOptions { Causal = SdpaCausal.BottomRight, Softcap = 3, Sinks = new float[8], WindowLeft = 1000 };
        SdpaSimd.ForceTiled = true;
        (HostTensor Out, HostTensor Lse) tiled;
        try { tiled = d.SdpaPaged(q, kc, vc, table, seqLens, opts); }
        finally { SdpaSimd.ForceTiled = false; }
        var reference = TestDevices.Get("reference").SdpaPaged(q, kc, vc, table, seqLens, opts);
        Near(tiled.Out, reference.Out, 1e-4f, "tiled out");
        foreach (int lanes in new[] { 16, 8, 4 })
        {
            SdpaSimd.ForceVector256 = lanes == 8; SdpaSimd.ForceVector128 = lanes == 4;
            try
            {
                var (o, l) = d.SdpaPaged(q, kc, vc, table, seqLens, opts);
                Near(o, reference.Out, 1e-4f, $"decode out V{lanes * 32}");
                Near(l, reference.Lse, 1e-4f, $"decode lse V{lanes * 32}");
                var (o2, _) = d.SdpaPaged(q, kc, vc, table, seqLens, opts);
                Assert.That(o2.AsSpan<float>().SequenceEqual(o.AsSpan<float>()), Is.True, "same bits on a second run");
            }
            finally { SdpaSimd.ForceVector256 = false; SdpaSimd.ForceVector128 = false; }
        }
    }

    [Test]
    public void DecodeIsTheSameOnEveryThreadCount()
    {
        int[] lens = [3000, 17];
        var (table, seqLens, pages) = EngineAttentionFamily.PagedLayout(new Random(11), lens, 16, 0, true, true);
        var kc = Rand(10, pages, 16, 2, 32); var vc = Rand(11, pages, 16, 2, 32); var q = Rand(12, 2, 8, 1, 32);
        float[]? first = null;
        foreach (int workers in new[] { 1, 2, 3, 8 })
        {
            var pool = new WorkerPool(workers);
            var p = Attention.PlanPaged(q.Shape, q.DType, kc.Shape, kc.DType, vc.Shape, vc.DType, table.Data.Span, table.DType, table.Shape,
                seqLens.Data.Span, seqLens.DType, seqLens.Shape, Attention.PagedDefaults).P;
            var o = new float[2 * 8 * 32]; var l = new float[2 * 8];
            SdpaSimd.Run<float, byte, byte, long>(q.AsSpan<float>(), kc.AsSpan<float>(), vc.AsSpan<float>(), default, default,
                seqLens.AsSpan<long>(),
                table.AsSpan<long>(), [], o, l, p, pool);
            if (first is null) first = o;
            else Assert.That(o, Is.EqualTo(first), $"{workers} workers");
        }
    }

    [Test]
    public void EngineStepLoopWritesTheCacheAndDecodes()
    {
        // an engine's decode loop, device-resident on simd: write the new token's K/V, attend over the cache, advance
        var d = TestDevices.Get("simd");
        int b = 2, hq = 4, hkv = 2, e = 8, s = 4, steps = 9;
        var (table, _, pages) = EngineAttentionFamily.PagedLayout(new Random(5), [steps, steps], s, 0, false, false);
        using var kc = d.Allocate(DType.F32, pages, s, hkv, e);
        using var vc = d.Allocate(DType.F32, pages, s, hkv, e);
        using var bt = d.Upload(table);
        var keys = Rand(20, b, steps, hkv, e); var values = Rand(21, b, steps, hkv, e); var queries = Rand(22, b, hq, steps, e);
        for (int t = 0; t < steps; t++)
        {
            var lens = new int[] { t, t };
            using var sl = d.Upload<int>(lens, b);
            using var kn = d.Upload(Slice(keys, t)); using var vn = d.Upload(Slice(values, t));
            d.KvCacheWrite(kn, vn, kc, vc, bt, sl);
            using var sl1 = d.Upload<int>(new[] { t + 1, t + 1 }, b);
            using var q = d.Upload(SliceQ(queries, t));
            using var o = d.Allocate(DType.F32, b, hq, 1, e);
            using var l = d.Allocate(DType.F32, b, hq, 1);
            d.SdpaPaged(q, kc, vc, bt, sl1, o, l);
            // against sdpa over the first t + 1 keys
            var (so, _) = d.Sdpa(SliceQ(queries, t), Prefix(keys, t + 1), Prefix(values, t + 1),
                options: new SdpaOptions { Causal = SdpaCausal.BottomRight });
            Near(o.ToTensor(), so, 2e-5f, $"step {t}");
        }

        static HostTensor Slice(HostTensor x, int t) // [B, 1, H, E] of token t from [B, T, H, E]
        {
            int bb = x.Shape[0], tt = x.Shape[1], h = x.Shape[2], ee = x.Shape[3];
            var r = new float[bb * h * ee];
            for (int i = 0; i < bb; i++) x.AsSpan<float>().Slice((i * tt + t) * h * ee, h * ee).CopyTo(r.AsSpan(i * h * ee));
            return HostTensor.From(r, bb, 1, h, ee);
        }
        static HostTensor SliceQ(HostTensor x, int t) // [B, H, 1, E] of row t from [B, H, T, E]
        {
            int bb = x.Shape[0], h = x.Shape[1], tt = x.Shape[2], ee = x.Shape[3];
            var r = new float[bb * h * ee];
            for (int i = 0; i < bb * h; i++) x.AsSpan<float>().Slice((i * tt + t) * ee, ee).CopyTo(r.AsSpan(i * ee));
            return HostTensor.From(r, bb, h, 1, ee);
        }
        static HostTensor Prefix(HostTensor x, int n) // [B, H, n, E] (bhtd) from [B, T, H, E]
        {
            int bb = x.Shape[0], tt = x.Shape[1], h = x.Shape[2], ee = x.Shape[3];
            var r = new float[bb * h * n * ee];
            for (int i = 0; i < bb; i++)
                for (int j = 0; j < n; j++)
                    for (int hh = 0; hh < h; hh++) x.AsSpan<float>().Slice(((i * tt + j) * h + hh) * ee,
                        ee).CopyTo(r.AsSpan(((i * h + hh) * n + j) * ee));
            return HostTensor.From(r, bb, h, n, ee);
        }
    }

    [Test]
    public void SimdSteadyStateAllocatesNothing()
    {
        var d = TestDevices.Get("simd");
        var (table, seqLens, pages) = EngineAttentionFamily.PagedLayout(new Random(1), [600, 33], 16, 0, false, false);
        using var kc = d.Upload(Rand(1, pages, 16, 2, 32)); using var vc = d.Upload(Rand(2, pages, 16, 2, 32));
        using var q = d.Upload(Rand(3, 2, 8, 1, 32)); using var bt = d.Upload(table); using var sl = d.Upload(seqLens);
        using var o = d.Allocate(DType.F32, 2, 8, 1, 32); using var l = d.Allocate(DType.F32, 2, 8, 1);
        var opts = new SdpaOptions { Causal = SdpaCausal.BottomRight, Sinks = new float[8], Softcap = 5 };
        using var kn = d.Upload(Rand(4, 2, 1, 2, 32)); using var vn = d.Upload(Rand(5, 2, 1, 2, 32));
        using var before = d.Upload<int>(new[] { 599, 32 }, 2);
        var outs = new float[3 * 64 * 16]; var lses = new float[3 * 64]; var co = new float[64 * 16]; var cl = new float[64];
        for (int i = 0; i < 3; i++)
        {
            d.SdpaPaged(q, kc, vc, bt, sl, o, l, opts);
            d.KvCacheWrite(kn, vn, kc, vc, bt, before);
            d.AttentionCombine(outs, lses, co, cl, 3, 64, 16);
        }
        long start = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++)
        {
            d.SdpaPaged(q, kc, vc, bt, sl, o, l, opts);
            d.KvCacheWrite(kn, vn, kc, vc, bt, before);
            d.AttentionCombine(outs, lses, co, cl, 3, 64, 16);
        }
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - start, Is.Zero);
    }

    public static IEnumerable<string> Accelerators() => TestDevices.All().Where(id => id.StartsWith("ilgpu") || id.StartsWith("opencl")
        || id.StartsWith("cuda"));

    /// <summary>A decode step inside a batch on an accelerator, all device-resident: the kernels only enqueue (block_table and
    /// seq_lens are read on the device, the modifier buffer is uploaded once per options object), so the step synchronizes
    /// once, at the batch's end; its results equal the host-checked path's.</summary>
    [TestCaseSource(nameof(Accelerators))]
    public void DecodeStepSynchronizesOnceAndMatchesTheCheckedPath(string id)
    {
        var g = (IlgpuDevice)TestDevices.Get(id);
        var (table, _, pages) = EngineAttentionFamily.PagedLayout(new Random(2), [8, 8], 4, 0, false, true);
        var kHost = Rand(7, pages, 4, 2, 8); var vHost = Rand(8, pages, 4, 2, 8);
        using var kc = g.Upload(kHost); using var vc = g.Upload(vHost);
        using var bt = g.Upload(table); using var before = g.Upload<int>(new[] { 3, 5 }, 2); using var after = g.Upload<int>(new[] { 4, 6 },
            2);
        var knH = Rand(1, 2, 1, 2, 8); var vnH = Rand(2, 2, 1, 2, 8); var qH = Rand(3, 2, 4, 1, 8);
        using var kn = g.Upload(knH); using var vn = g.Upload(vnH); using var q = g.Upload(qH);
        using var o = g.Allocate(DType.F32, 2, 4, 1, 8); using var l = g.Allocate(DType.F32, 2, 4, 1);
        var opts = new SdpaOptions { Causal = SdpaCausal.BottomRight, Sinks = new[] { 0.5f, 0f, -1f, 2f }, Softcap = 4 };
        g.KvCacheWrite(kn, vn, kc, vc, bt, before); g.SdpaPaged(q, kc, vc, bt, after, o, l, opts); // kernels and constants loaded first
        long start = g.Synchronizations;
        using (g.BeginBatch())
        {
            g.KvCacheWrite(kn, vn, kc, vc, bt, before);
            g.SdpaPaged(q, kc, vc, bt, after, o, l, opts);
            Assert.That(g.Synchronizations - start, Is.Zero, "inside the batch the step only enqueues");
        }
        Assert.That(g.Synchronizations - start, Is.EqualTo(1), "one synchronization per decode step, at the batch's end");
        // the same step through host tensors (checked on the host) on the reference
        var r = TestDevices.Get("reference");
        var lensBefore = HostTensor.From(new[] { 3, 5 }, 2); var lensAfter = HostTensor.From(new[] { 4, 6 }, 2);
        r.KvCacheWrite(knH, vnH, kHost, vHost, table, lensBefore);
        var (ro, rl) = r.SdpaPaged(qH, kHost, vHost, table.To(DType.I32), lensAfter, opts);
        Near(kc.ToTensor(), kHost, 0, "k_cache");
        Near(vc.ToTensor(), vHost, 0, "v_cache");
        Near(o.ToTensor(), ro, 2e-5f, "out");
        Near(l.ToTensor(), rl, 2e-5f, "lse");
    }

    /// <summary>Device-resident tables are not read back: a bad entry can never make a kernel read or write outside its
    /// buffers. sdpa_paged skips a key whose page is not in the cache and clamps a length to the table; kv_cache_write skips
    /// a position outside the table's pages.</summary>
    [TestCaseSource(nameof(Accelerators))]
    public void BadDeviceResidentTablesStayInBounds(string id)
    {
        var g = TestDevices.Get(id);
        using var kc = g.Upload(Rand(1, 3, 4, 2, 8)); using var vc = g.Upload(Rand(2, 3, 4, 2, 8));
        var k0 = kc.ToTensor().AsSpan<float>().ToArray();
        using var bt = g.Upload(HostTensor.From(new[] { 0, 99, -5, 2 }, 2, 2));  // 99 and -5 are no pages
        using var lens = g.Upload(HostTensor.From(new[] { 1000, 7 }, 2));        // 1000 > maxPages·S = 8
        using var q = g.Upload(Rand(3, 2, 4, 1, 8));
        using var o = g.Allocate(DType.F32, 2, 4, 1, 8); using var l = g.Allocate(DType.F32, 2, 4, 1);
        g.SdpaPaged(q, kc, vc, bt, lens, o, l);
        Assert.That(o.ToTensor().AsSpan<float>().ToArray().All(float.IsFinite), Is.True);
        // sequence 0 sees keys 0..3 of page 0 only (page 99 skipped), sequence 1 keys 4..6 of page 2: against the reference
        // on the same keys gathered by hand
        using var kn = g.Upload(Rand(4, 2, 1, 2, 8)); using var vn = g.Upload(Rand(5, 2, 1, 2, 8));
        // positions 5 (page 99: skipped) and 2 (page -5: skipped)
        using var at = g.Upload(HostTensor.From(new[] { 5, 2 }, 2));
        g.KvCacheWrite(kn, vn, kc, vc, bt, at);
        Assert.That(kc.ToTensor().AsSpan<float>().ToArray(), Is.EqualTo(k0), "nothing written");
    }

    // ---------------------------------------------------------------- bad input

    private static HostTensor Z(DType t, params int[] s) => HostTensor.Zeros(t, s);
    private static HostTensor I32(int[] values, params int[] s) => HostTensor.From(values, s);

    public static IEnumerable<TestCaseData> BadInputs()
    {
        var q = Z(DType.F32, 2, 4, 1, 8); var kc = Z(DType.F32, 3, 4, 2, 8); var vc = Z(DType.F32, 3, 4, 2, 6);
        var bt = I32([0, 1, 2, -1], 2, 2); var sl = I32([5, 3], 2);
        yield return Bad("blockTable", "not a page of the cache", d => d.SdpaPaged(q, kc, vc, I32([0, 3, 2, -1], 2, 2), sl));
        yield return Bad("blockTable", "not a page of the cache", d => d.SdpaPaged(q, kc, vc, I32([0, -1, 2, -1], 2, 2), sl));
        yield return Bad("seqLens", "needs 3 pages", d => d.SdpaPaged(q, kc, vc, bt, I32([9, 3], 2)));
        yield return Bad("seqLens", "negative", d => d.SdpaPaged(q, kc, vc, bt, I32([-1, 3], 2)));
        yield return Bad("seqLens", "[B] = [2]", d => d.SdpaPaged(q, kc, vc, bt, I32([5], 1)));
        yield return Bad("blockTable", "[B, maxPages]", d => d.SdpaPaged(q, kc, vc, I32([0, 1], 2), sl));
        yield return Bad("kCache", "share one dtype", d => d.SdpaPaged(q, Z(DType.F16, 3, 4, 2, 8), vc, bt, sl));
        yield return Bad("vCache", "share one dtype", d => d.SdpaPaged(q, kc, Z(DType.BF16, 3, 4, 2, 6), bt, sl));
        yield return Bad("kCache", "head dim", d => d.SdpaPaged(q, Z(DType.F32, 3, 4, 2, 7), vc, bt, sl));
        yield return Bad("vCache", "must match k_cache", d => d.SdpaPaged(q, kc, Z(DType.F32, 3, 5, 2, 6), bt, sl));
        yield return Bad("k", "multiple of Hkv", d => d.SdpaPaged(Z(DType.F32, 2, 3, 1, 8), kc, vc, bt, sl));
        yield return Bad("Layout", "bhtd", d => d.SdpaPaged(q, kc, vc, bt, sl, new SdpaOptions { Layout = SdpaLayout.Bthd }));
        yield return Bad("AlibiSlopes", "Hq = 4", d => d.SdpaPaged(q, kc, vc, bt, sl, new SdpaOptions { AlibiSlopes = new float[3] }));
        yield return Bad("Softcap", "softcap", d => d.SdpaPaged(q, kc, vc, bt, sl, new SdpaOptions { Softcap = -2 }));
        yield return Bad("blockTable", "I32|I64", d => d.SdpaPaged(q, kc, vc, Z(DType.F32, 2, 2), sl));

        var kn = Z(DType.F32, 2, 1, 2, 8); var vn = Z(DType.F32, 2, 1, 2, 6);
        yield return Bad("blockTable", "needs page 2", d => d.KvCacheWrite(kn, vn, kc.To(DType.F32), vc.To(DType.F32), bt, I32([8, 0], 2)));
        yield return Bad("blockTable", "not a page of the cache", d => d.KvCacheWrite(kn, vn, kc.To(DType.F32), vc.To(DType.F32), bt,
            I32([5, 4], 2)));
        yield return Bad("blockTable", "two writes", d => d.KvCacheWrite(kn, vn, kc.To(DType.F32), vc.To(DType.F32), I32([0, 1, 0, 2], 2,
            2), I32([1, 1], 2)));
        yield return Bad("kNew", "must match", d => d.KvCacheWrite(Z(DType.F16, 2, 1, 2, 8), vn, kc.To(DType.F32), vc.To(DType.F32), bt,
            sl));
        yield return Bad("vNew", "[B,Tn,Hkv,Ev]", d => d.KvCacheWrite(kn, Z(DType.F32, 2, 1, 2, 5), kc.To(DType.F32), vc.To(DType.F32), bt,
            sl));
        yield return Bad("kNew", "Hkv and E", d => d.KvCacheWrite(Z(DType.F32, 2, 1, 1, 8), vn, kc.To(DType.F32), vc.To(DType.F32), bt,
            sl));

        yield return Bad("lses", "without Ev", d => d.AttentionCombine(Z(DType.F32, 2, 3, 4), Z(DType.F32, 2, 4)));
        yield return Bad("outs", "rank >= 2", d => d.AttentionCombine(Z(DType.F32, 2), Z(DType.F32, 2)));
        yield return Bad("outs", "F32", d => d.AttentionCombine(Z(DType.F16, 2, 3, 4), Z(DType.F32, 2, 3)));
        yield return Bad("outs", "[N,rows,Ev]", d => d.AttentionCombine(new float[5], new float[2], new float[4], new float[1], 2, 1, 4));
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
    public void KvCacheWriteChecksEverythingBeforeAnyWrite()
    {
        var d = TestDevices.Get("simd");
        var kc = Rand(1, 3, 4, 2, 8); var vc = Rand(2, 3, 4, 2, 8);
        var k0 = kc.AsSpan<float>().ToArray();
        // sequence 0 writes fine, sequence 1's position falls outside its pages: nothing may be written
        Assert.Throws<ArgumentException>(() => d.KvCacheWrite(Rand(3, 2, 1, 2, 8), Rand(4, 2, 1, 2, 8), kc, vc, I32([0, 1, 2, -1], 2, 2),
            I32([0, 4], 2)));
        Assert.That(kc.AsSpan<float>().ToArray(), Is.EqualTo(k0));
    }
}

/// <summary>Kernels that need temporaries take them from the call's scope instead of allocating and synchronizing in
/// their launch: inside a batch scale_gem, mask_pool, similarity_topk and rerank_refine only enqueue, and the batch's end synchronizes
/// once; the results equal the synchronous ones.</summary>
[NonParallelizable]
public class BatchedTemporariesTests
{
    public static IEnumerable<string> Accelerators() => TestDevices.All().Where(id => id.StartsWith("ilgpu") || id.StartsWith("opencl")
        || id.StartsWith("cuda"));

    [TestCaseSource(nameof(Accelerators))]
    public void OpsWithTemporariesDoNotSynchronizeInsideABatch(string id)
    {
        var g = (IlgpuDevice)TestDevices.Get(id);
        var r = new RandomTensors(3);
        using var x = g.Upload(r.Floats(DType.F32, 0, 1, 3, 2, 64));            // scale_gem [S, B, D]
        using var sg = g.Allocate(DType.F32, 2, 64);
        using var img = g.Upload(r.Floats(DType.F32, 0, 1, 2, 8, 6, 6));        // mask_pool x [B, C, H, W]
        using var masks = g.Upload(r.Floats(DType.F32, 0, 1, 2, 5, 6, 6));
        using var mp = g.Allocate(DType.F32, 2, 5, 8);
        using var q = g.Upload(r.Floats(DType.F32, -1, 1, 4, 16)); using var db = g.Upload(r.Floats(DType.F32, -1, 1, 50, 16));
        using var idx = g.Allocate(DType.I64, 4, 3); using var sc = g.Allocate(DType.F32, 4, 3);
        using var order = g.Allocate(DType.I64, 4, 20); using var rs = g.Allocate(DType.F32, 4, 20);
        void Calls()
        {
            g.ScaleGem(x, sg, 3f);
            g.MaskPool(img, masks, mp, MaskType.Soft);
            g.SimilarityTopk(q, db, idx, sc, 3, cosine: true);
            g.RerankRefine(q, db, order, rs, 20, 4);
        }
        Calls();
        var want = (sg.ToTensor(), mp.ToTensor(), sc.ToTensor(), rs.ToTensor());
        long start = g.Synchronizations;
        using (g.BeginBatch())
        {
            Calls();
            Assert.That(g.Synchronizations - start, Is.Zero, "inside the batch the calls only enqueue");
        }
        Assert.That(g.Synchronizations - start, Is.EqualTo(1));
        Assert.That(sg.ToTensor().AsSpan<float>().ToArray(), Is.EqualTo(want.Item1.AsSpan<float>().ToArray()));
        Assert.That(mp.ToTensor().AsSpan<float>().ToArray(), Is.EqualTo(want.Item2.AsSpan<float>().ToArray()));
        Assert.That(sc.ToTensor().AsSpan<float>().ToArray(), Is.EqualTo(want.Item3.AsSpan<float>().ToArray()));
        Assert.That(rs.ToTensor().AsSpan<float>().ToArray(), Is.EqualTo(want.Item4.AsSpan<float>().ToArray()));
    }
}
