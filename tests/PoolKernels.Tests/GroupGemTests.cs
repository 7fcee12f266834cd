using NUnit.Framework;
using PoolKernels.Kernels;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>Group GeM (p_groups [G]) of sequence_pool and spatial_pool beyond the vectors and the randomized conformance:
/// hand-computed values, agreement with plain GeM per group, bad input on every device, determinism across runs and
/// thread counts, and no allocation per simd call.</summary>
public class GroupGemTests
{
    private static float[] F(HostTensor t) => t.AsSpan<float>().ToArray();

    // hidden [1,3,4]: t = 0 and 2 kept; features 0,1 in group 0 (p = 1: the mean of max(x, eps)), 2,3 in group 1 (p = 2)
    private static readonly float[] Hidden = [1, -2, 3, 0, /* t1 */ 100, 100, 100, 100, /* t2 */ 3, 4, 4, 2];
    private static readonly long[] Mask = [1, 0, 1];

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SequencePoolHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        var o = new float[8];
        var opts = SequencePoolOptions.Parse("mean,gem") with { PGroups = new[] { 1f, 2f } };
        d.SequencePool<float, long>(Hidden, Mask, o, 1, 3, 4, opts);
        float eps = 1e-6f;
        float[] want = [2, 1, 3.5f, 1, (1 + 3) / 2f, (eps + 4) / 2f, MathF.Sqrt((9 + 16) / 2f), MathF.Sqrt((eps * eps + 4) / 2f)];
        Assert.That(o, Is.EqualTo(want).Within(1e-5f), "mean is untouched; gem feature d uses p_groups[d / 2]");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SpatialPoolHandComputed(string id)
    {
        var d = TestDevices.Get(id);
        // x [1,4,1,2] NCHW: channels 0,1 use p = 1, channels 2,3 p = 2
        var x = HostTensor.From(new float[] { 1, 3, -1, 5, 3, 4, 0, 2 }, 1, 4, 1, 2);
        var got = F(d.SpatialPool(x, new() { Mode = SpatialPoolMode.Gem, PGroups = new[] { 1f, 2f } }));
        float eps = 1e-6f;
        Assert.That(got, Is.EqualTo(new[] { 2f, (eps + 5) / 2, MathF.Sqrt(25 / 2f), MathF.Sqrt((eps * eps + 4) / 2) }).Within(1e-5f));
        var nhwc = HostTensor.From(new float[] { 1, -1, 3, 0, 3, 5, 4, 2 }, 1, 1, 2, 4);
        Assert.That(F(d.SpatialPool(nhwc, new() { Mode = SpatialPoolMode.Gem, Nhwc = true, PGroups = new[] { 1f, 2f } })),
            Is.EqualTo(got).Within(1e-5f), "nhwc = nchw");
    }

    /// <summary>GGeM equals plain GeM with each group's p on that group's features: D = 600, G = 3 (simd blocks of 256
    /// straddle the groups of 200), G = 1 (plain GeM with p_groups[0]) and D = 1024, G = 2 (blocks inside a group).</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SequencePoolIsPlainGemPerGroup(string id)
    {
        var d = TestDevices.Get(id);
        foreach (var (dim, pg) in new[] { (600, new[] { 1.5f, 3f, 4.6f }), (600, new[] { 2.5f }), (1024, new[] { 3f, 2f }) })
        {
            int b = 3, t = 5, g = pg.Length, gs = dim / g;
            var h = new RandomSource(dim + g).Floats(b * t * dim, -1, 2);
            var m = Enumerable.Range(0, b * t).Select(i => (byte)(i % 4 == 1 ? 0 : 1)).ToArray();
            var o = new float[b * dim];
            d.SequencePool<float, byte>(h, m, o, b, t, dim, SequencePoolOptions.Parse("gem") with { PGroups = pg });
            for (int k = 0; k < g; k++)
            {
                var slice = new float[b * t * gs];
                for (int r = 0; r < b * t; r++) Array.Copy(h, r * dim + k * gs, slice, r * gs, gs);
                var want = new float[b * gs];
                d.SequencePool<float, byte>(slice, m, want, b, t, gs, SequencePoolOptions.Parse("gem") with { P = pg[k] });
                for (int r = 0; r < b; r++)
                    Assert.That(o.AsSpan(r * dim + k * gs, gs).ToArray(), Is.EqualTo(want.AsSpan(r * gs, gs).ToArray()).Within(2e-5f),
                        $"D = {dim}, G = {g}, group {k}, row {r}");
            }
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SpatialPoolIsPlainGemPerGroup(string id)
    {
        var d = TestDevices.Get(id);
        foreach (bool nhwc in new[] { false, true })
            foreach (var (c, pg) in new[] { (300, new[] { 1.5f, 3f, 4.6f }), (6, new[] { 2.5f }), (512, new[] { 3f, 2f }) })
            {
                int b = 2, hw = 6, g = pg.Length, gs = c / g;
                var x = new RandomSource(c + g).Floats(b * c * hw, -1, 2);
                int[] shape = nhwc ? [b, 2, 3, c] : [b, c, 2, 3];
                var got = F(d.SpatialPool(HostTensor.From(x, shape), new() { Mode = SpatialPoolMode.Gem, Nhwc = nhwc, PGroups = pg }));
                for (int k = 0; k < g; k++)
                {
                    var slice = new float[b * gs * hw];
                    for (int bi = 0; bi < b; bi++)
                        for (int ci = 0; ci < gs; ci++)
                            for (int i = 0; i < hw; i++)
                                slice[(bi * gs + ci) * hw + i] = nhwc ? x[(bi * hw + i) * c + k * gs + ci]
                                    : x[(bi * c + k * gs + ci) * hw + i];
                    var want = F(d.SpatialPool(HostTensor.From(slice, b, gs, 2, 3), new() { Mode = SpatialPoolMode.Gem, P = pg[k] }));
                    for (int bi = 0; bi < b; bi++)
                        Assert.That(got.AsSpan(bi * c + k * gs, gs).ToArray(), Is.EqualTo(want.AsSpan(bi * gs, gs).ToArray()).Within(2e-5f),
                            $"{(nhwc ? "nhwc" : "nchw")} C = {c}, G = {g}, group {k}, row {bi}");
                }
            }
    }

    [Test]
    public void OptionsCopyTheirPowersAndPrintThem()
    {
        var p = new[] { 2f, 3f };
        var s = SequencePoolOptions.Parse("gem") with { PGroups = p };
        var sp = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, PGroups = p };
        p[0] = 9;
        Assert.That(s.PGroups.ToArray(), Is.EqualTo(new[] { 2f, 3f }), "copied on init");
        Assert.That(sp.PGroups.ToArray(), Is.EqualTo(new[] { 2f, 3f }), "copied on init");
        Assert.That(s.ToString(), Does.Contain("PGroups = [2, 3]"));
        Assert.That(sp.ToString(), Does.Contain("PGroups = [2, 3]").And.Contain("Mode = Gem"));
        Assert.That(SequencePoolOptions.Parse("gem").ToString(), Does.Not.Contain("PGroups"));
    }

    private static readonly float[] H = new float[2 * 3 * 4];
    private static readonly long[] M = new long[2 * 3];

    public static IEnumerable<TestCaseData> BadInputs()
    {
        var gem = SequencePoolOptions.Parse("mean,gem");
        foreach (var (why, pg) in new (string, float[])[]
        {
            ("G = 3 does not divide D = 4", [1, 2, 3]), ("G = 8 > D", [1, 1, 1, 1, 1, 1, 1, 1]), ("p = 0", [2, 0]),
            ("p < 0", [-1, 2]), ("NaN", [float.NaN, 2]), ("inf", [2, float.PositiveInfinity]),
        })
        {
            var seq = gem with { PGroups = pg };
            yield return Bad("PGroups", d => d.SequencePool<float, long>(H, M, new float[16], 2, 3, 4, seq), "sequence " + why);
            yield return Bad("PGroups", d => d.SequencePool(HostTensor.From(H, 2, 3, 4), HostTensor.From(M, 2, 3), seq),
                "sequence host " + why);
            var sp = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, PGroups = pg };
            yield return Bad("PGroups", d => d.SpatialPool(HostTensor.Zeros(DType.F32, 1, 4, 2, 2), sp), "spatial " + why);
            yield return Bad("PGroups", d => d.SpatialPool(HostTensor.Zeros(DType.F32, 1, 2, 2, 4), sp with { Nhwc = true }),
                "spatial nhwc " + why);
            yield return Bad("PGroups", d => d.SpatialPool(new float[16], new float[4], 1, 4, 2, 2, sp), "spatial span " + why);
        }
        // p_groups is checked whenever given, also where no gem reads it
        yield return Bad("PGroups", d => d.SequencePool<float, long>(H, M, new float[8], 2, 3, 4,
            SequencePoolOptions.Parse("mean") with { PGroups = new[] { 1f, 2f, 3f } }), "sequence without gem");
        yield return Bad("PGroups", d => d.SpatialPool(HostTensor.Zeros(DType.F32, 1, 4, 2, 2),
            new SpatialPoolOptions { PGroups = new[] { 0f } }), "spatial avg");
        // the vectors' p_groups input (the spec runners): [G] F32 only
        var seqCall = (HostTensor pg) => new OpCall(new Dictionary<string, HostTensor>
        {
            ["hidden"] = HostTensor.From(H, 2, 3, 4),
            ["attention_mask"] = HostTensor.From(M, 2, 3),
            ["p_groups"] = pg,
        }, new Dictionary<string, string> { ["mode"] = "gem" });
        var spCall = (HostTensor pg) => new OpCall(
            new Dictionary<string, HostTensor> { ["x"] = HostTensor.Zeros(DType.F32, 1, 4, 2, 2), ["p_groups"] = pg },
            new Dictionary<string, string> { ["mode"] = "gem" });
        var rank2 = HostTensor.From(new[] { 2f, 3f }, 1, 2);
        var f16 = HostTensor.From(new[] { 2f, 3f }, 2).To(DType.F16);
        yield return Bad("p_groups", d => OpRegistry.All["sequence_pool"].Run(d, seqCall(rank2)), "sequence rank 2");
        yield return Bad("p_groups", d => OpRegistry.All["sequence_pool"].Run(d, seqCall(f16)), "sequence F16");
        yield return Bad("p_groups", d => OpRegistry.All["spatial_pool"].Run(d, spCall(rank2)), "spatial rank 2");
        yield return Bad("p_groups", d => OpRegistry.All["spatial_pool"].Run(d, spCall(f16)), "spatial F16");
        var g3 = HostTensor.From(new[] { 1f, 2f, 3f }, 3);
        yield return Bad("PGroups", d => OpRegistry.All["spatial_pool"].Run(d, spCall(g3)), "spatial runner G = 3, C = 4");
    }

    private static TestCaseData Bad(string param, Action<Device> call, string name) =>
        BadInput.Case(param, call).SetName($"Bad p_groups: {name}");

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputNamesTheArgument(string param, Action<Device> call) => BadInput.AssertRejectedEverywhere(param, call);

    [Test]
    public void BadPowersNameShapesInTheMessage()
    {
        var e = Assert.Throws<ArgumentException>(() => TestDevices.Get("simd").SequencePool<float, long>(H, M, new float[16], 2, 3, 4,
            SequencePoolOptions.Parse("mean,gem") with { PGroups = new[] { 1f, 2f, 3f } }));
        Assert.That(e!.Message, Does.Contain("p_groups [G] = [3]").And.Contain("D = 4"));
        e = Assert.Throws<ArgumentException>(() => TestDevices.Get("simd").SpatialPool(HostTensor.Zeros(DType.F32, 1, 4, 2, 2),
            new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, PGroups = new[] { 1f, float.NaN } }));
        Assert.That(e!.Message, Does.Contain("p_groups[1] = NaN"));
    }

    /// <summary>The same bits on every run, on every device, and on simd at 1, 2 and 3 threads.</summary>
    [Test]
    public void DeterministicAcrossRunsAndThreadCounts()
    {
        int b = 4, t = 9, dim = 600, c = 300, hw = 5;
        var h = new RandomSource(11).Floats(b * t * dim, -1, 2);
        var m = Enumerable.Range(0, b * t).Select(i => (long)(i % 6 == 2 ? 0 : 1)).ToArray();
        var seq = SequencePoolOptions.Parse("max,gem") with { PGroups = new[] { 1.5f, 3f, 4.6f }, Normalize = true };
        var x = HostTensor.From(new RandomSource(12).Floats(b * c * hw, -1, 2), b, 1, hw, c);
        var sp = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, Nhwc = true, PGroups = new[] { 1.5f, 3f, 4.6f } };
        var spNchw = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, PGroups = new[] { 2f, 3f, 4.6f } };
        float[] Seq(Device d) { var o = new float[b * 2 * dim]; d.SequencePool<float, long>(h, m, o, b, t, dim, seq); return o; }
        var xNchw = HostTensor.From(x.AsSpan<float>().ToArray(), b, c, 1, hw);
        float[] Sp(Device d) => [.. F(d.SpatialPool(x, sp)), .. F(d.SpatialPool(xNchw, spNchw))];

        foreach (var id in TestDevices.All())
        {
            var d = TestDevices.Get(id);
            var (s0, p0) = (Seq(d), Sp(d));
            for (int rep = 0; rep < 3; rep++)
            {
                Assert.That(Seq(d), Is.EqualTo(s0), $"sequence_pool on {id}, run {rep}");
                Assert.That(Sp(d), Is.EqualTo(p0), $"spatial_pool on {id}, run {rep}");
            }
        }
        var (sWant, pWant) = (Seq(TestDevices.Get("simd")), Sp(TestDevices.Get("simd")));
        foreach (int threads in new[] { 1, 2, 3 })
        {
            var pool = new WorkerPool(threads);
            using var d = new CpuDevice(BackendKind.Simd, pool);
            Assert.That(Seq(d), Is.EqualTo(sWant), $"sequence_pool simd at {threads} threads");
            Assert.That(Sp(d), Is.EqualTo(pWant), $"spatial_pool simd at {threads} threads");
        }
    }

    [Test]
    public void SimdSteadyStateAllocatesNothing()
    {
        var d = TestDevices.Get("simd");
        int b = 4, t = 16, dim = 600, c = 300, hw = 6;
        var h = new RandomSource(1).Floats(b * t * dim);
        var m = Enumerable.Range(0, b * t).Select(i => (long)(i % 5 == 0 ? 0 : 1)).ToArray();
        var o = new float[b * 3 * dim];
        var seq = SequencePoolOptions.Parse("mean,gem,max") with { PGroups = new[] { 1.5f, 3f, 4.6f }, Normalize = true };
        var x = new RandomSource(2).Floats(b * c * hw);
        var so = new float[b * c];
        var nhwc = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, Nhwc = true, PGroups = new[] { 1.5f, 3f, 4.6f } };
        var nchw = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, PGroups = new[] { 2f, 3f, 4.6f }, Normalize = true };
        void Calls()
        {
            d.SequencePool<float, long>(h, m, o, b, t, dim, seq);
            d.SpatialPool(x, so, b, c, 2, 3, nhwc);
            d.SpatialPool(x, so, b, c, 2, 3, nchw);
        }
        for (int i = 0; i < 5; i++) Calls();
        long least = long.MaxValue;
        for (int round = 0; round < 3 && least != 0; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10; i++) Calls();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.That(least, Is.Zero);
    }
}
