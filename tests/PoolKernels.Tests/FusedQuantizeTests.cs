using NUnit.Framework;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>sequence_pool with quantize fused at its end (issue 18: pool → truncate → normalize → quantize in one call):
/// on every device it gives exactly the bytes of the two-step call (sequence_pool, then quantize with the same ranges) on
/// that device, for every precision, mask dtype, dims and normalize; bad input is rejected before any kernel; the simd form
/// allocates nothing in steady state; inside a batch the ILGPU form only enqueues.</summary>
[NonParallelizable]
public class FusedQuantizeTests
{
    private static readonly QuantizePrecision[] All =
        [QuantizePrecision.Int8, QuantizePrecision.Uint8, QuantizePrecision.Binary, QuantizePrecision.Ubinary];

    private static bool Packs(QuantizePrecision p) => p is QuantizePrecision.Binary or QuantizePrecision.Ubinary;

    /// <summary>Per-dimension min and max of a calibration set [M, dims] (the ranges quantize would derive).</summary>
    private static HostTensor Ranges(HostTensor calibration)
    {
        int m = calibration.Shape[0], d = calibration.Shape[1];
        var x = calibration.AsSpan<float>();
        var r = new float[2 * d];
        for (int j = 0; j < d; j++)
        {
            float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
            for (int i = 0; i < m; i++) { lo = MathF.Min(lo, x[i * d + j]); hi = MathF.Max(hi, x[i * d + j]); }
            r[j] = lo; r[d + j] = hi;
        }
        return HostTensor.From(r, 2, d);
    }

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var id in TestDevices.All())
            foreach (var p in All)
                yield return new TestCaseData(id, p).SetArgDisplayNames(id, Quantization.Name(p));
    }

    [TestCaseSource(nameof(Cases))]
    public void FusedEqualsTheTwoStepCallOnTheSameDevice(string id, QuantizePrecision precision)
    {
        var d = TestDevices.Get(id);
        var r = new RandomTensors(41);
        (int B, int T, int D, string Options, DType Hidden, DType Mask)[] shapes =
        [
            (3, 7, 20, "mean,normalize", DType.F32, DType.I64), (2, 5, 13, "max", DType.F16, DType.Bool),
            (4, 6, 24, "cls,mean,dims=16,normalize", DType.F32, DType.U8), (1, 1, 8, "gem", DType.BF16, DType.I32),
            (5, 9, 33, "mean_sqrt_len,dims=17", DType.F32, DType.I64), (0, 4, 8, "mean", DType.F32, DType.I64),
        ];
        foreach (var (b, t, dim, text, ht, mt) in shapes)
        {
            var options = Options(text);
            int dims = options.Validate(dim);
            var hidden = r.Floats(ht, text == "gem" ? 0.1f : -2, 2, b, t, dim);
            var mask = r.Mask(mt, b, t);
            using var pooled = d.SequencePool(hidden, mask, options);
            HostTensor? ranges = Packs(precision) ? null : Ranges(r.Floats(DType.F32, -1.5f, 1.5f, 16, dims));
            using var twoStep = d.Quantize(pooled, precision, ranges);
            using var fused = d.SequencePool(hidden, mask, options, precision, ranges);
            Assert.That(fused.DType, Is.EqualTo(twoStep.DType), $"{id} {text}");
            Assert.That(fused.Shape.ToArray(), Is.EqualTo(twoStep.Shape.ToArray()), $"{id} {text}");
            Assert.That(fused.Data.ToArray(), Is.EqualTo(twoStep.Data.ToArray()), $"{id} {text} {Quantization.Name(precision)}");
        }
    }

    /// <summary>"mode,mode[,dims=N][,normalize]" as options.</summary>
    private static SequencePoolOptions Options(string text)
    {
        var parts = text.Split(',');
        var modes = string.Join(',', parts.Where(x => !x.StartsWith("dims=") && x != "normalize"));
        int dims = parts.FirstOrDefault(x => x.StartsWith("dims=")) is { } s ? int.Parse(s[5..]) : -1;
        return SequencePoolOptions.Parse(modes) with { Dims = dims, Normalize = parts.Contains("normalize") };
    }

    [Test]
    public void SpanOverloadMatchesTheTensorOverload()
    {
        var d = TestDevices.Get("simd");
        var r = new RandomTensors(5);
        var hidden = r.Floats(DType.F32, -1, 1, 4, 6, 40); var mask = r.Mask(DType.I64, 4, 6);
        var options = Options("mean,normalize");
        var ranges = Ranges(r.Floats(DType.F32, -0.4f, 0.4f, 8, 40));
        foreach (var p in All)
        {
            var rg = Packs(p) ? null : ranges;
            using var want = d.SequencePool(hidden, mask, options, p, rg);
            var got = new byte[want.Data.Length];
            d.SequencePool<float, long>(hidden.AsSpan<float>(), mask.AsSpan<long>(), got, 4, 6, 40, options, p,
                rg is null ? default : rg.AsSpan<float>());
            Assert.That(got, Is.EqualTo(want.Data.ToArray()), Quantization.Name(p));
        }
    }

    public static IEnumerable<TestCaseData> BadInputs()
    {
        var h = HostTensor.Zeros(DType.F32, 2, 3, 8); var m = HostTensor.Zeros(DType.I64, 2, 3);
        var mean = SequencePoolOptions.Parse("mean");
        var ok = HostTensor.From(new float[] { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 }, 2, 8);
        var nan = HostTensor.From(new float[] { 0, 0, 0, float.NaN, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 }, 2, 8);
        var backwards = HostTensor.From(new float[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0 }, 2, 8);
        yield return Bad("ranges", "needs ranges", d => d.SequencePool(h, m, mean, QuantizePrecision.Int8));
        yield return Bad("ranges", "takes no ranges", d => d.SequencePool(h, m, mean, QuantizePrecision.Binary, ok));
        yield return Bad("ranges", "[2, dims]", d => d.SequencePool(h, m, mean, QuantizePrecision.Uint8, HostTensor.Zeros(DType.F32, 2,
            7)));
        yield return Bad("ranges", "finite", d => d.SequencePool(h, m, mean, QuantizePrecision.Uint8, nan));
        yield return Bad("ranges", "end >= start", d => d.SequencePool(h, m, mean, QuantizePrecision.Int8, backwards));
        yield return Bad("ranges", "[2, dims]", d => d.SequencePool(h, m, Options("mean,dims=4"), QuantizePrecision.Int8, ok));
        yield return Bad("precision", "precision", d => d.SequencePool(h, m, mean, (QuantizePrecision)9));
        yield return Bad("attentionMask", "attention_mask", d => d.SequencePool(h, HostTensor.Zeros(DType.I64, 2, 4), mean,
            QuantizePrecision.Binary));
        yield return Bad("output", "ceil(dims/8)", d =>
        {
            using var dh = d.Upload(h); using var dm = d.Upload(m); using var o = d.Allocate(DType.U8, 2, 8);
            d.SequencePool(dh, dm, o, mean, QuantizePrecision.Ubinary);
        });
        yield return Bad("output", "I8", d =>
        {
            using var dh = d.Upload(h); using var dm = d.Upload(m); using var o = d.Allocate(DType.U8, 2, 1);
            d.SequencePool(dh, dm, o, mean, QuantizePrecision.Binary);
        });
        yield return Bad("output", "[B, dims]", _ => TestDevices.Get("simd").SequencePool<float, long>(new float[48], new long[6],
            new byte[15], 2, 3, 8, mean, QuantizePrecision.Uint8, ok.AsSpan<float>()));
    }

    private static TestCaseData Bad(string param, string words, Action<Device> call) =>
        new TestCaseData(param, words, call).SetArgDisplayNames(param, words);

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputIsRejectedOnEveryDevice(string param, string words, Action<Device> call)
    {
        foreach (var id in TestDevices.All())
        {
            var e = Assert.Throws(Is.InstanceOf<ArgumentException>(), () => call(TestDevices.Get(id)), id);
            Assert.That(((ArgumentException)e!).ParamName, Is.EqualTo(param), $"{id}: {e.Message}");
            Assert.That(e.Message, Does.Contain(words), id);
        }
    }

    [Test]
    public void SimdSteadyStateAllocatesNothing()
    {
        var d = TestDevices.Get("simd");
        var r = new RandomTensors(8);
        using var h = d.Upload(r.Floats(DType.F32, -1, 1, 8, 32, 64)); using var m = d.Upload(r.Mask(DType.I64, 8, 32));
        using var ranges = d.Upload(Ranges(r.Floats(DType.F32, -1, 1, 8, 64)));
        using var o8 = d.Allocate(DType.I8, 8, 64); using var ob = d.Allocate(DType.U8, 8, 8);
        var options = Options("mean,normalize");
        void Calls()
        {
            d.SequencePool(h, m, o8, options, QuantizePrecision.Int8, ranges);
            d.SequencePool(h, m, ob, options, QuantizePrecision.Ubinary);
        }
        for (int i = 0; i < 50; i++) Calls();
        long least = long.MaxValue;
        for (int round = 0; round < 3; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 20; i++) Calls();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.That(least, Is.Zero);
    }

    public static IEnumerable<string> Accelerators() => TestDevices.All().Where(id => TestDevices.Get(id) is IlgpuDevice);

    [TestCaseSource(nameof(Accelerators))]
    public void BinaryFusedOnlyEnqueuesInsideABatch(string id)
    {
        var g = (IlgpuDevice)TestDevices.Get(id);
        var r = new RandomTensors(9);
        using var h = g.Upload(r.Floats(DType.F32, -1, 1, 3, 5, 24)); using var m = g.Upload(r.Mask(DType.Bool, 3, 5));
        using var o = g.Allocate(DType.I8, 3, 3);
        var options = Options("mean,normalize");
        g.SequencePool(h, m, o, options, QuantizePrecision.Binary);
        var want = o.ToTensor().Data.ToArray();
        long start = g.Synchronizations;
        using (g.BeginBatch())
        {
            g.SequencePool(h, m, o, options, QuantizePrecision.Binary);
            Assert.That(g.Synchronizations - start, Is.Zero);
        }
        Assert.That(g.Synchronizations - start, Is.EqualTo(1));
        Assert.That(o.ToTensor().Data.ToArray(), Is.EqualTo(want));
    }
}
