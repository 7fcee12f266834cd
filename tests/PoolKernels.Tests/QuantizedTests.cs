using NUnit.Framework;
using PoolKernels.Kernels.Quantized;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>quantize, hamming_topk, binary_search and typed-db similarity_topk: hand-checked values, larger randomized cases
/// against the reference (several db tiles, both simd paths, more rows than a GPU group), bad input on every backend,
/// determinism and zero allocation per steady-state simd call. Their vectors and the spec's random cases run through
/// VectorTests / ConformanceTests.</summary>
public class QuantizedTests
{
    private static HostTensor X(float[] v, params int[] shape) => HostTensor.From(v, shape);
    private static HostTensor B(DType t, byte[] v, params int[] shape) => new(t, shape, v);
    private static long[] L(HostTensor t) => t.ToInt64s();

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void QuantizeFollowsTheFormula(string id)
    {
        var d = TestDevices.Get(id);
        var x = X([0f, 1f, 2f, 3.9f, -1f, 5f, 2.5f, float.NaN, -0f, 1e-45f], 1, 10);
        // ubinary: x > 0 strict, first dimension in bit 7, last byte zero-padded; binary = ubinary - 128
        Assert.That(L(d.Quantize(x, QuantizePrecision.Ubinary)), Is.EqualTo(new long[] { 0b0111_0110, 0b0100_0000 }));
        Assert.That(L(d.Quantize(x, QuantizePrecision.Binary)), Is.EqualTo(new long[] { 0b0111_0110 - 128, 0b0100_0000 - 128 }));
        // uint8 with ranges [0, 255]·: step 1 → trunc(x), clamped; NaN → 0; int8 = uint8 − 128
        var rg = new float[20];
        for (int i = 0; i < 10; i++) { rg[i] = 0; rg[10 + i] = 255; }
        rg[9] = 2; rg[19] = 2; // step 0 → 0
        var u = L(d.Quantize(X([0f, 1f, 2f, 3.9f, -1f, 300f, 2.5f, float.NaN, 254.99f, 7f], 1, 10), QuantizePrecision.Uint8, X(rg, 2, 10)));
        Assert.That(u, Is.EqualTo(new long[] { 0, 1, 2, 3, 0, 255, 2, 0, 254, 0 }));
        var s = L(d.Quantize(X([0f, 1f, 2f, 3.9f, -1f, 300f, 2.5f, float.NaN, 254.99f, 7f], 1, 10), QuantizePrecision.Int8, X(rg, 2, 10)));
        Assert.That(s, Is.EqualTo(u.Select(v => v - 128).ToArray()));
        // self ranges (dyadic, so x = end is exactly 255 in any precision): the max maps to 255, the min to 0
        var self = d.Quantize(X([0f, 0.5f, 255f, 128f], 2, 2), QuantizePrecision.Uint8);
        Assert.That(L(self), Is.EqualTo(new long[] { 0, 0, 255, 255 }));
        Assert.That(d.Quantize(HostTensor.Zeros(DType.F32, 0, 5), QuantizePrecision.Int8).Shape.ToArray(), Is.EqualTo(new[] { 0, 5 }));
        Assert.That(d.Quantize(HostTensor.Zeros(DType.F32, 3, 0), QuantizePrecision.Binary).Shape.ToArray(), Is.EqualTo(new[] { 3, 0 }));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void HammingTiesGoToTheLowerIndex(string id)
    {
        var d = TestDevices.Get(id);
        var db = B(DType.U8, [0b0000_0001, 0b0000_0011, 0b0000_0001, 0b1111_1111, 0b0000_0000], 5, 1);
        var q = B(DType.I8, [0b0000_0001], 1, 1);
        var (i, dist) = d.HammingTopk(q, db, 5);
        Assert.That(L(i), Is.EqualTo(new long[] { 0, 2, 1, 4, 3 }));
        Assert.That(L(dist), Is.EqualTo(new long[] { 0, 0, 1, 1, 7 }));
        Assert.That(d.HammingTopk(q, db, 0).Index.Shape.ToArray(), Is.EqualTo(new[] { 1, 0 }));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void BinarySearchRescoresWithSignedBits(string id)
    {
        var d = TestDevices.Get(id);
        // D = 3: rows (bits of dims 0,1,2 in bits 7,6,5): 110, 100, 011, 110 (dup of 0)
        var db = B(DType.U8, [0b1100_0000, 0b1000_0000, 0b0110_0000, 0b1100_0000], 4, 1);
        var q = X([2f, 1f, -0.5f], 1, 3); // bits 110
        var (i, s) = d.BinarySearch(q, db, 2, rescoreMultiplier: 4);
        Assert.That(L(i), Is.EqualTo(new long[] { 0, 3 }), "exact tie of duplicates: lower index first");
        Assert.That(s.AsSpan<float>().ToArray(), Is.EqualTo(new[] { 3.5f, 3.5f }));
        var (i2, s2) = d.BinarySearch(q, db, 3, rescore: false);
        Assert.That(L(i2), Is.EqualTo(new long[] { 0, 3, 1 }));
        Assert.That(s2.AsSpan<float>().ToArray(), Is.EqualTo(new[] { 3f, 3f, 1f }), "D − 2·distance");
        // the same corpus as binary (I8 = ubinary − 128) gives the same answer
        var signed = B(DType.I8, db.Data.ToArray().Select(b => (byte)(b ^ 0x80)).ToArray(), 4, 1);
        Assert.That(L(d.BinarySearch(q, signed, 2).Index), Is.EqualTo(new long[] { 0, 3 }));
    }

    private static IEnumerable<(string Label, OpCall Call, string Op)> LargerCases(bool small)
    {
        var r = new RandomTensors(77);
        int n = small ? 700 : 5000;
        // hamming: W not a multiple of 8, duplicates (every row repeats once), k = N and k > tile
        foreach (var (q, w, k) in new[] { (37, 13, 20), (5, 1, 9), (9, 128, 300), (3, 8, n) })
        {
            var db = QuantizedFamily.Bytes(r, DType.U8, n, w);
            var b = db.Data.Span;
            for (int i = n / 2; i < n; i++) b.Slice((i - n / 2) * w, w).CopyTo(b.Slice(i * w, w));
            var query = QuantizedFamily.Bytes(r, DType.I8, q, w);
            yield return ($"hamming Q{q} N{n} W{w} k{k}", new OpCall(new Dictionary<string, HostTensor> { ["query"] = query, ["db"] = db },
                new Dictionary<string, string> { ["k"] = k.ToString() }), "hamming_topk");
        }
        foreach (var (q, dim, k, m, signed) in new[] { (11, 77, 10, 4, false), (4, 20, 30, 40, true), (6, 256, 10, 1, false) })
        {
            var query = RetrievalFamily.Integers(r, -3, 3, q, dim);
            var db = QuantizedFamily.Packed(r, n, dim, signed, unique: n / 3);
            yield return ($"binary_search Q{q} D{dim} N{n} k{k} m{m}", new OpCall(new Dictionary<string,
                HostTensor>
            { ["query"] = query, ["db"] = db },
                new Dictionary<string, string> { ["k"] = k.ToString(), ["rescore_multiplier"] = m.ToString() }), "binary_search");
        }
    }

    private static void AssertSame(Device d, OpSpec spec, OpCall call, string label)
    {
        var want = spec.Run(TestDevices.Get("reference"), call);
        var got = spec.Run(d, call);
        foreach (var (name, e) in want)
        {
            var c = Compare.Tensors(got[name], e, spec.Rtol, spec.Atol, name);
            Assert.That(c.Pass, $"{d.Id} {label}: {c.Message}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.NonReference))]
    public void LargerRandomCasesMatchTheReference(string id)
    {
        var d = TestDevices.Get(id);
        foreach (var (label, call, op) in LargerCases(small: id != "simd"))
            AssertSame(d, OpRegistry.All[op], call, label);
    }

    [Test]
    public void SimdQueryBlockPathMatchesTheReference()
    {
        long saved = HammingTopkSimd.TileHeapLimit;
        try
        {
            HammingTopkSimd.TileHeapLimit = 0;
            foreach (var (label, call, op) in LargerCases(small: false))
                AssertSame(TestDevices.Get("simd"), OpRegistry.All[op], call, "query blocks: " + label);
        }
        finally { HammingTopkSimd.TileHeapLimit = saved; }
    }

    [Test]
    public void SimdIsDeterministic()
    {
        var simd = TestDevices.Get("simd");
        foreach (var (label, call, op) in LargerCases(small: false))
        {
            var spec = OpRegistry.All[op];
            var first = spec.Run(simd, call);
            for (int rep = 0; rep < 3; rep++)
                foreach (var (name, t) in spec.Run(simd, call))
                    Assert.That(t.Data.ToArray(), Is.EqualTo(first[name].Data.ToArray()), $"{label} {name} run {rep}");
        }
    }

    [Test]
    public void SimdSteadyStateAllocatesNothing()
    {
        var simd = TestDevices.Get("simd");
        var r = new RandomTensors(5);
        using var q = simd.Upload(QuantizedFamily.Bytes(r, DType.U8, 40, 32));
        using var db = simd.Upload(QuantizedFamily.Bytes(r, DType.I8, 3000, 32));
        using var fq = simd.Upload(r.Floats(DType.F32, -1, 1, 40, 256));
        using var i8 = simd.Upload(QuantizedFamily.Bytes(r, DType.I8, 3000, 256));
        using var x = simd.Upload(r.Floats(DType.F32, -1, 1, 100, 256));
        using var cal = simd.Upload(r.Floats(DType.F32, -1, 1, 20, 256));
        using var idx = simd.Allocate(DType.I64, 40, 10);
        using var dist = simd.Allocate(DType.I32, 40, 10);
        using var score = simd.Allocate(DType.F32, 40, 10);
        using var o8 = simd.Allocate(DType.I8, 100, 256);
        using var ob = simd.Allocate(DType.U8, 100, 32);
        void Calls()
        {
            simd.HammingTopk(q, db, idx, dist, 10);
            simd.BinarySearch(fq, db, idx, score, 10);
            simd.SimilarityTopk(fq, i8, idx, score, 10, cosine: true);
            simd.Quantize(x, o8, QuantizePrecision.Int8, calibration: cal);
            simd.Quantize(x, ob, QuantizePrecision.Ubinary);
        }
        for (int i = 0; i < 3; i++) Calls();
        long least = long.MaxValue;
        for (int i = 0; i < 5 && least != 0; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            Calls();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.That(least, Is.Zero);
    }

    public static IEnumerable<TestCaseData> BadInputs()
    {
        var x = HostTensor.Zeros(DType.F32, 3, 4);
        var rg = X([0, 0, 0, 0, 1, 1, 1, 1], 2, 4);
        yield return Bad("ranges", d => d.Quantize(x, QuantizePrecision.Int8, HostTensor.Zeros(DType.F32, 2, 3)));
        yield return Bad("ranges", d => d.Quantize(x, QuantizePrecision.Uint8, HostTensor.Zeros(DType.F32, 4, 2)));
        yield return Bad("ranges", d => d.Quantize(x, QuantizePrecision.Uint8, X([0, 0, 0, 0, 1, 1, 1, 1], 8)));
        yield return Bad("ranges", d => d.Quantize(x, QuantizePrecision.Int8, X([0, 0, float.NaN, 0, 1, 1, 1, 1], 2, 4)));
        yield return Bad("ranges", d => d.Quantize(x, QuantizePrecision.Int8, X([0, 0, 0, 0, 1, float.PositiveInfinity, 1, 1], 2, 4)));
        yield return Bad("ranges", d => d.Quantize(x, QuantizePrecision.Int8, X([0, 0, 0, 2, 1, 1, 1, 1], 2, 4)));   // end < start
        yield return Bad("ranges", d => d.Quantize(x, QuantizePrecision.Int8, HostTensor.Zeros(DType.F16, 2, 4)));
        yield return Bad("calibration", d => d.Quantize(x, QuantizePrecision.Int8, null, HostTensor.Zeros(DType.F32, 5, 3)));
        yield return Bad("calibration", d => d.Quantize(x, QuantizePrecision.Int8, null, HostTensor.Zeros(DType.F32, 0, 4)));
        yield return Bad("calibration", d => d.Quantize(x, QuantizePrecision.Uint8, null, X([0, 1, float.NaN, 3, 4, 5, 6, 7], 2, 4)));
        yield return Bad("embeddings", d => d.Quantize(X([0, 1, 2, float.NegativeInfinity], 1, 4), QuantizePrecision.Uint8));
        yield return Bad("embeddings", d => d.Quantize(HostTensor.Zeros(DType.F32, 12), QuantizePrecision.Binary));
        yield return Bad("embeddings", d => d.Quantize(HostTensor.Zeros(DType.F16, 3, 4), QuantizePrecision.Binary));
        yield return Bad("precision", d => d.Quantize(x, (QuantizePrecision)9, rg));
        yield return Bad("precision", _ => Quantization.ParsePrecision("int4"));
        var q = HostTensor.Zeros(DType.U8, 2, 4);
        var db = HostTensor.Zeros(DType.I8, 5, 4);
        yield return Bad("k", d => d.HammingTopk(q, db, 6));
        yield return Bad("k", d => d.HammingTopk(q, db, -1));
        yield return Bad("db", d => d.HammingTopk(q, HostTensor.Zeros(DType.U8, 5, 3), 2));           // W mismatch
        yield return Bad("db", d => d.HammingTopk(q, HostTensor.Zeros(DType.F32, 5, 4), 2));
        yield return Bad("query", d => d.HammingTopk(HostTensor.Zeros(DType.I32, 2, 4), db, 2));
        yield return Bad("query", d => d.HammingTopk(HostTensor.Zeros(DType.U8, 8), db, 2));
        var fq = HostTensor.Zeros(DType.F32, 2, 30);                                                  // W = 4
        yield return Bad("k", d => d.BinarySearch(fq, db, 6));
        yield return Bad("db", d => d.BinarySearch(fq, HostTensor.Zeros(DType.U8, 5, 3), 2));        // W mismatch with ceil(D/8)
        yield return Bad("db", d => d.BinarySearch(fq, HostTensor.Zeros(DType.I32, 5, 4), 2));
        yield return Bad("query", d => d.BinarySearch(HostTensor.Zeros(DType.U8, 2, 30), db, 2));
        yield return Bad("rescoreMultiplier", d => d.BinarySearch(fq, db, 2, 0));
        yield return Bad("db", d => d.SimilarityTopk(HostTensor.Zeros(DType.F32, 2, 4), HostTensor.Zeros(DType.I64, 5, 4), 2));
        yield return Bad("db", d => d.SimilarityTopk(HostTensor.Zeros(DType.F32, 2, 4), HostTensor.Zeros(DType.I8, 5, 3), 2));
    }

    private static TestCaseData Bad(string param, Action<Device> call) => BadInput.Case(param, call);

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputNamesTheArgument(string param, Action<Device> call) => BadInput.AssertRejectedEverywhere(param, call);
}
