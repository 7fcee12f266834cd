using NUnit.Framework;
using PoolKernels.Kernels.Ragged;

namespace PoolKernels.Tests;

/// <summary>
/// The worked example: one HyperDrop layer (Jo et al. 2021) end to end on a small random graph batch, on every
/// backend, equal to the same layer composed from <c>reference</c>. dual_hypergraph turns edges into nodes; a hypergraph
/// convolution is two gather_segment_pool calls with degree normalization (hyperedge = mean of its member edges, then
/// each edge = Σ over its hyperedges of weight 1/deg); edge scores tanh(x·p/‖p‖); segment_topk keeps half the edges of
/// each graph; max/mean/sum readouts per graph with segment_pool over the kept, score-gated edges.
/// </summary>
public class HyperDropTests
{
    private sealed record Layer(long[] KeptIndex, long[] KeptOffsets, float[] Conv, float[] Max, float[] Mean, float[] Sum);

    private const int F = 6;

    // graphs: 5 nodes, 1 isolated node, 7 nodes, 3 nodes with no edges, 4 nodes
    private static readonly int[] GraphNodes = [5, 1, 7, 3, 4];

    private static (long[] EdgeIndex, long[] EdgeOffsets, float[] EdgeFeatures, float[] P, int V) Batch()
    {
        var rng = new Random(11);
        var src = new List<long>(); var dst = new List<long>(); var offsets = new List<long> { 0 };
        int nodeBase = 0;
        foreach (int n in GraphNodes)
        {
            int edges = n switch { 1 or 3 => 0, _ => 2 * n + 1 };
            for (int e = 0; e < edges; e++)
            {
                long u = nodeBase + rng.Next(n), v = nodeBase + rng.Next(n);
                if (e == 0) v = u;                                        // a self-loop per graph
                if (e == 1 && src.Count > 0 && offsets[^1] < src.Count) { u = src[^1]; v = dst[^1]; } // a duplicate edge
                src.Add(u); dst.Add(v);
            }
            offsets.Add(src.Count);
            nodeBase += n;
        }
        int m = src.Count;
        var feats = new float[m * F];
        for (int i = 0; i < feats.Length; i++) feats[i] = (float)(rng.NextDouble() * 2 - 1);
        var p = Enumerable.Range(0, F).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        return ([.. src, .. dst], offsets.ToArray(), feats, p, nodeBase);
    }

    private static Layer Run(Device d)
    {
        var (edgeIndex, edgeOffsets, feats, p, v) = Batch();
        int e = edgeIndex.Length / 2;
        var dht = d.DualHypergraph(HostTensor.From(edgeIndex, 2, e), v, addLoops: true);
        var hOff = dht["hyperedge_offsets"]; var hMem = dht["hyperedge_members"];
        var mOff = dht["member_offsets"]; var mHyp = dht["member_hyperedges"];
        int h = hOff.Shape[0] - 1;

        // device-resident chain: hyperedge means, then degree-weighted sums back onto the edges
        using var x = d.Upload<float>(feats, e, F);
        using var hm = d.Upload(hMem); using var ho = d.Upload(hOff);
        using var mh = d.Upload(mHyp); using var mo = d.Upload(mOff);
        var deg = mOff.ToInt64s();
        var w = new float[mHyp.Shape[0]];
        for (int i = 0; i < e; i++)
            for (long k = deg[i]; k < deg[i + 1]; k++) w[k] = 1f / (deg[i + 1] - deg[i]);
        using var wd = d.Upload<float>(w, w.Length);
        using var hyper = d.Allocate(DType.F32, h, F);
        d.GatherSegmentPool(x, hm, ho, null, hyper, SegmentPoolMode.Mean);
        using var conv = d.Allocate(DType.F32, e, F);
        d.GatherSegmentPool(hyper, mh, mo, wd, conv, SegmentPoolMode.Sum);

        var c = conv.ToTensor().AsSpan<float>().ToArray();
        float pn = MathF.Sqrt(p.Sum(a => a * a));
        var scores = new float[e];
        for (int i = 0; i < e; i++)
        {
            float s = 0;
            for (int f = 0; f < F; f++) s += c[i * F + f] * p[f];
            scores[i] = MathF.Tanh(s / pn);
        }
        using var sc = d.Upload<float>(scores, e);
        using var eo = d.Upload<long>(edgeOffsets, edgeOffsets.Length);
        var (kept, keptOff) = d.SegmentTopk(sc, eo, ratio: 0.5);
        using (kept) using (keptOff)
        {
            var ki = kept.ToTensor().ToInt64s();
            var gated = new float[ki.Length * F];
            for (int r = 0; r < ki.Length; r++)
                for (int f = 0; f < F; f++) gated[r * F + f] = c[ki[r] * F + f] * scores[ki[r]];
            using var g = d.Upload<float>(gated, ki.Length, F);
            float[] Readout(SegmentPoolMode mode)
            {
                using var o = d.Allocate(DType.F32, GraphNodes.Length, F);
                d.SegmentPool(g, keptOff, o, mode);
                return o.ToTensor().AsSpan<float>().ToArray();
            }
            return new Layer(ki, keptOff.ToTensor().ToInt64s(), c, Readout(SegmentPoolMode.Max), Readout(SegmentPoolMode.Mean),
                Readout(SegmentPoolMode.Sum));
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void OneLayerEqualsTheReferenceComposition(string id)
    {
        var want = Run(TestDevices.Get("reference"));
        var got = Run(TestDevices.Get(id));
        Assert.That(want.KeptOffsets, Is.EqualTo(new long[] { 0, 6, 6, 14, 14, 19 }),
            "ceil(0.5·n_s) edges per graph; graphs 2 and 4 have none");
        Assert.That(got.Conv, Is.EqualTo(want.Conv).Within(1e-5f));
        Assert.That(got.KeptIndex, Is.EqualTo(want.KeptIndex));
        Assert.That(got.KeptOffsets, Is.EqualTo(want.KeptOffsets));
        Assert.That(got.Max, Is.EqualTo(want.Max).Within(1e-5f));
        Assert.That(got.Mean, Is.EqualTo(want.Mean).Within(1e-5f));
        Assert.That(got.Sum, Is.EqualTo(want.Sum).Within(1e-5f));
        Assert.That(want.Sum.AsSpan(F, F).ToArray(), Is.All.EqualTo(0f), "a graph without edges reads out zeros");
    }
}
