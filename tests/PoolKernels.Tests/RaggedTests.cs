using NUnit.Framework;
using PoolKernels.Kernels.Ragged;

namespace PoolKernels.Tests;

/// <summary>segment_pool, gather_segment_pool, segment_topk and dual_hypergraph beyond the vectors: hand-computed values,
/// very uneven segments, duplicates, self-loops, isolated nodes, ties, bad input on every device.</summary>
public class RaggedTests
{
    // values [5,2]; segments {0,1}, {}, {2,3,4}
    private static readonly float[] V = [1, -2, 3, 4, /**/ -5, 6, 7, -8, 0, 1];
    private static readonly long[] Off = [0, 2, 2, 5];

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void HandComputedSegmentModes(string id)
    {
        var d = TestDevices.Get(id);
        var o = new float[6];
        d.SegmentPool<long>(V, Off, o, 2, SegmentPoolMode.Sum);
        Assert.That(o, Is.EqualTo(new float[] { 4, 2, 0, 0, 2, -1 }));
        d.SegmentPool<long>(V, Off, o, 2, SegmentPoolMode.Mean);
        Assert.That(o, Is.EqualTo(new float[] { 2, 1, 0, 0, 2 / 3f, -1 / 3f }).Within(1e-6f));
        d.SegmentPool<long>(V, Off, o, 2, SegmentPoolMode.Max);
        Assert.That(o, Is.EqualTo(new float[] { 3, 4, 0, 0, 7, 6 }));
        d.SegmentPool<int>(V, [0, 2, 2, 5], o, 2, SegmentPoolMode.Min);
        Assert.That(o, Is.EqualTo(new float[] { 1, -2, 0, 0, -5, -8 }));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void GatherWithDuplicateIndicesAndWeights(string id)
    {
        var d = TestDevices.Get(id);
        var o = new float[4];
        // segment 0 gathers row 1 twice and row 0; segment 1 gathers row 4 once with weight -1
        d.GatherSegmentPool<long, long>(V, [1, 1, 0, 4], [0, 3, 4], [1, 2, 0.5f, -1], o, 2, SegmentPoolMode.Sum);
        Assert.That(o, Is.EqualTo(new float[] { 3 * 3 + 0.5f, 3 * 4 - 1, 0, -1 }));
        d.GatherSegmentPool<int, int>(V, [1, 1, 0, 4], [0, 3, 4], [1, 2, 0.5f, -1], o, 2, SegmentPoolMode.Mean);
        Assert.That(o, Is.EqualTo(new float[] { 9.5f / 3, 11f / 3, 0, -1 }).Within(1e-6f),
            "mean divides by the entry count, not the weight sum");
        d.GatherSegmentPool<long, long>(V, [1, 1, 0, 4], [0, 3, 4], [], o, 2, SegmentPoolMode.Max);
        Assert.That(o, Is.EqualTo(new float[] { 3, 4, 0, 1 }));
    }

    /// <summary>One huge segment beside many empty ones (and the reverse): the row-split plan must give the reference's answer.</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void OneHugeSegmentAmongManyEmpty(string id)
    {
        var d = TestDevices.Get(id);
        int n = 20000, dim = 3, segs = 5001;
        var rng = new Random(4);
        var values = Enumerable.Range(0, n * dim).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var off = new long[segs + 1];
        for (int s = 2500; s <= segs; s++) off[s] = n; // segment 2499 holds every row
        off[2600] = n; off[segs] = n;
        for (int s = 2601; s < segs; s++) off[s] = n;
        foreach (var mode in new[] { SegmentPoolMode.Sum, SegmentPoolMode.Mean, SegmentPoolMode.Max, SegmentPoolMode.Min })
        {
            var want = new float[segs * dim];
            var got = new float[segs * dim];
            TestDevices.Get("reference").SegmentPool<long>(values, off, want, dim, mode);
            d.SegmentPool<long>(values, off, got, dim, mode);
            Assert.That(got, Is.EqualTo(want).Within(mode == SegmentPoolMode.Sum ? 2e-3f : 1e-5f), mode.ToString());
            Assert.That(got.Count(v => v != 0), Is.EqualTo(dim), "only the huge segment is non-zero");
        }
    }

    [Test]
    public void SimdSegmentTopkSelectionPutsTheSmallestKeysFirst()
    {
        // the quickselect before the sort: for every k the first k keys are exactly the k smallest (any order)
        var r = new Random(3);
        foreach (int n in new[] { 1, 2, 17, 18, 40, 257, 1000 })
            for (int t = 0; t < 20; t++)
            {
                var keys = Enumerable.Range(0, n).Select(i => (ulong)r.Next(0, 8) << 32 | (uint)i).ToArray(); // many equal scores
                int k = 1 + r.Next(n);
                var sorted = keys.Order().ToArray();
                SegmentTopkSimd.SelectSmallest(keys, k);
                Assert.That(keys.Take(k).Order(), Is.EqualTo(sorted.Take(k)), $"n = {n}, k = {k}");
                Assert.That(keys.Order(), Is.EqualTo(sorted), "a permutation");
            }
    }

    [Test]
    public void PlanSplitsLongSegmentsAndGroupsEmptyRuns()
    {
        var plan = new SegmentPlan();
        var off = new long[100_001];
        for (int s = 1; s <= 100_000; s++) off[s] = 1_000_000; // segment 0 holds 1M rows, 99999 empty ones follow
        plan.Build<long>(off, 1000, 64, 256);
        Assert.That(plan.LongCount, Is.EqualTo(1));
        Assert.That(plan.Longs[0].Pieces, Is.EqualTo(256), "a million rows in 256 pieces");
        Assert.That(plan.ItemCount, Is.EqualTo(256 + (99_999 + 63) / 64), "empty segments go 64 to an item");
        long covered = 0;
        for (int i = 0; i < plan.ItemCount; i++) covered += plan.Items[i].End - plan.Items[i].Start;
        Assert.That(covered, Is.EqualTo(1_000_000));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void TopkTiesNaNAndEmptySegments(string id)
    {
        var d = TestDevices.Get(id);
        float[] scores = [0.5f, 1, 0.5f, 1, float.NaN, /* seg 1 empty */ /* seg 2 */ -1, -1, -1];
        var (ix, oo) = d.SegmentTopk(HostTensor.From(scores, 8), HostTensor.From(new long[] { 0, 5, 5, 8 }, 4), k: 3);
        Assert.That(ix.ToInt64s(), Is.EqualTo(new long[] { 4, 1, 3, 5, 6, 7 }),
            "NaN first, then score descending, ties to the lower index");
        Assert.That(oo.ToInt64s(), Is.EqualTo(new long[] { 0, 3, 3, 6 }));
        (ix, oo) = d.SegmentTopk(HostTensor.From(scores, 8), HostTensor.From(new int[] { 0, 5, 5, 8 }, 4), ratio: 0.5);
        Assert.That(oo.ToInt64s(), Is.EqualTo(new long[] { 0, 3, 3, 5 }), "ceil(0.5·5) = 3, ceil(0.5·3) = 2");
        Assert.That(ix.ToInt64s(), Is.EqualTo(new long[] { 4, 1, 3, 5, 6 }));
    }

    /// <summary>One segment of thousands of entries (ties included) beside empty ones: the merge-sort path of the
    /// ILGPU kernel and the sort of simd must pick exactly the reference's entries in its order.</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void TopkOneHugeSegmentAmongEmpty(string id)
    {
        var d = TestDevices.Get(id);
        var rng = new Random(9);
        int n = 3000;
        var scores = Enumerable.Range(0, n).Select(_ => rng.Next(-200, 200) * 0.125f).ToArray(); // many ties
        scores[17] = float.NaN;
        var off = HostTensor.From(new long[] { 0, 0, 0, 7, n, n, n }, 7);
        foreach (var (ratio, k) in new (double?, int?)[] { (0.3, null), (null, 5), (1.0, null) })
        {
            var (wi, wo) = TestDevices.Get("reference").SegmentTopk(HostTensor.From(scores, n), off, ratio, k);
            var (gi, go) = d.SegmentTopk(HostTensor.From(scores, n), off, ratio, k);
            Assert.That(go.ToInt64s(), Is.EqualTo(wo.ToInt64s()));
            Assert.That(gi.ToInt64s(), Is.EqualTo(wi.ToInt64s()), $"ratio {ratio} k {k}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void DualHypergraphSelfLoopsAndIsolatedNodes(string id)
    {
        var d = TestDevices.Get(id);
        // edges: e0 = (0,1), e1 = (2,2) self-loop, e2 = (1,3); nodes 4 and 5 isolated
        var r = d.DualHypergraph(HostTensor.From(new long[] { 0, 2, 1, 1, 2, 3 }, 2, 3), 6, addLoops: true);
        // node 0: 1 incidence (none); node 1: e0, e2 -> hyperedge 0; node 2: e1 twice -> hyperedge 1; node 3: 1 incidence
        Assert.That(r["hyperedge_node"].ToInt64s(), Is.EqualTo(new long[] { 1, 2, -1, -1, -1 }));
        Assert.That(r["hyperedge_offsets"].ToInt64s(), Is.EqualTo(new long[] { 0, 2, 4, 5, 6, 7 }));
        Assert.That(r["hyperedge_members"].ToInt64s(), Is.EqualTo(new long[] { 0, 2, 1, 1, 0, 1, 2 }));
        Assert.That(r["member_offsets"].ToInt64s(), Is.EqualTo(new long[] { 0, 2, 5, 7 }));
        Assert.That(r["member_hyperedges"].ToInt64s(), Is.EqualTo(new long[] { 0, 2, 1, 1, 3, 0, 4 }));
        var none = d.DualHypergraph(HostTensor.Zeros(DType.I64, 2, 0), 3, addLoops: false);
        Assert.That(none["hyperedge_offsets"].ToInt64s(), Is.EqualTo(new long[] { 0 }));
        Assert.That(none["member_offsets"].ToInt64s(), Is.EqualTo(new long[] { 0 }));
    }

    private static readonly float[] Vals = new float[10];

    public static IEnumerable<TestCaseData> BadInputs()
    {
        yield return Bad("offsets", d => d.SegmentPool<long>(Vals, [0, 3, 2, 5], new float[6], 2, SegmentPoolMode.Sum));
        yield return Bad("offsets", d => d.SegmentPool<long>(Vals, [0, 2, 4], new float[4], 2, SegmentPoolMode.Sum));
        yield return Bad("offsets", d => d.SegmentPool<long>(Vals, [0, 2, 6], new float[4], 2, SegmentPoolMode.Sum));
        yield return Bad("offsets", d => d.SegmentPool<int>(Vals, [1, 2, 5], new float[4], 2, SegmentPoolMode.Sum));
        yield return Bad("offsets", d => d.SegmentPool<long>(Vals, [], new float[0], 2, SegmentPoolMode.Sum));
        yield return Bad("output", d => d.SegmentPool<long>(Vals, [0, 5], new float[3], 2, SegmentPoolMode.Sum));
        yield return Bad("values", d => d.SegmentPool<long>(Vals.AsSpan(1), [0, 4], new float[2], 2, SegmentPoolMode.Sum));
        yield return Bad("mode", d => d.SegmentPool<long>(Vals, [0, 5], new float[2], 2, (SegmentPoolMode)7));
        yield return Bad("mode", _ => RaggedPooling.ParseMode("median"));
        yield return Bad("offsets", d => d.SegmentPool<float>(Vals, [0f, 5f], new float[2], 2, SegmentPoolMode.Sum));
        yield return Bad("index", d => d.GatherSegmentPool<long, long>(Vals, [0, 5], [0, 2], [], new float[2], 2, SegmentPoolMode.Sum));
        yield return Bad("index", d => d.GatherSegmentPool<int, long>(Vals, [-1, 0], [0, 2], [], new float[2], 2, SegmentPoolMode.Sum));
        yield return Bad("offsets", d => d.GatherSegmentPool<long, long>(Vals, [0, 1], [0, 3], [], new float[2], 2, SegmentPoolMode.Sum));
        yield return Bad("weights", d => d.GatherSegmentPool<long, long>(Vals, [0, 1], [0, 2], [1f], new float[2], 2, SegmentPoolMode.Sum));
        yield return Bad("index", d => d.GatherSegmentPool(HostTensor.From(Vals, 5, 2), HostTensor.From(new long[] { 2, 9 }, 2),
            HostTensor.From(new long[] { 0, 2 }, 2), null, SegmentPoolMode.Max));
        yield return Bad("offsets", d => d.GatherSegmentPool(HostTensor.From(Vals, 5, 2), HostTensor.From(new long[] { 2, 3 }, 2),
            HostTensor.From(new long[] { 0, 2, 1, 2 }, 4), null, SegmentPoolMode.Max));
        yield return Bad("offsets", d => d.SegmentPool(HostTensor.From(Vals, 5, 2), HostTensor.From(new float[] { 0, 5 }, 2),
            SegmentPoolMode.Max));
        yield return Bad("values", d => d.SegmentPool(HostTensor.From(Vals, 10), HostTensor.From(new long[] { 0, 5 }, 2),
            SegmentPoolMode.Max));
        yield return Bad("k", d => d.SegmentTopk(HostTensor.From(new float[3], 3), HostTensor.From(new long[] { 0, 3 }, 2), k: 0));
        yield return Bad("ratio", d => d.SegmentTopk(HostTensor.From(new float[3], 3), HostTensor.From(new long[] { 0, 3 }, 2), ratio: 0));
        yield return Bad("ratio", d => d.SegmentTopk(HostTensor.From(new float[3], 3), HostTensor.From(new long[] { 0, 3 }, 2),
            ratio: 1.5));
        yield return Bad("ratio", d => d.SegmentTopk(HostTensor.From(new float[3], 3), HostTensor.From(new long[] { 0, 3 }, 2)));
        yield return Bad("offsets", d => d.SegmentTopk(HostTensor.From(new float[3], 3), HostTensor.From(new long[] { 0, 2 }, 2), k: 1));
        yield return Bad("offsets", d => d.SegmentTopk(HostTensor.From(new float[3], 3), HostTensor.From(new long[] { 0, 2, 1, 3 }, 4),
            k: 1));
        yield return Bad("edgeIndex", d => d.DualHypergraph(HostTensor.From(new long[] { 0, 1, 1, 3 }, 2, 2), 3));
        yield return Bad("edgeIndex", d => d.DualHypergraph(HostTensor.From(new long[] { 0, -1, 1, 2 }, 2, 2), 3));
        yield return Bad("edgeIndex", d => d.DualHypergraph(HostTensor.From(new long[] { 0, 1, 1 }, 3, 1), 3));
        yield return Bad("numNodes", d => d.DualHypergraph(HostTensor.From(new long[] { 0, 1 }, 2, 1), -1));
    }

    private static TestCaseData Bad(string param, Action<Device> call) => BadInput.Case(param, call);

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputNamesTheArgument(string param, Action<Device> call)
        => BadInput.AssertRejectedEverywhere(param, call);

    [Test]
    public void SimdSegmentPoolSteadyStateAllocatesNothing()
    {
        var d = TestDevices.Get("simd");
        var rng = new Random(2);
        int n = 5000, dim = 64;
        var values = Enumerable.Range(0, n * dim).Select(_ => (float)rng.NextDouble()).ToArray();
        var off = new long[] { 0, 10, 10, 4000, 4001, 5000 };
        var o = new float[5 * dim];
        for (int i = 0; i < 5; i++) d.SegmentPool<long>(values, off, o, dim, SegmentPoolMode.Mean);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) d.SegmentPool<long>(values, off, o, dim, SegmentPoolMode.Mean);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }
}
