using System.Numerics.Tensors;
using NUnit.Framework;
using PoolKernels.Kernels.Sequence;

namespace PoolKernels.Tests;

/// <summary>sequence_pool and layer_pool beyond the vectors and the randomized conformance: hand-computed values,
/// every API form agreeing, bad input, many threads.</summary>
public class SequencePoolTests
{
    // hidden [2,3,2]: row 0 keeps t = 0, 2 (a hole); row 1 keeps nothing.
    private static readonly float[] Hidden = [1, 2, /* t1 */ 100, 100, /* t2 */ 3, -6, /* row 1 */ 5, 5, 5, 5, 5, 5];
    private static readonly long[] Mask = [1, 0, 7, 0, 0, 0];

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void HandComputedModes(string id)
    {
        var d = TestDevices.Get(id);
        var o = new float[2 * 14];
        d.SequencePool<float, long>(Hidden, Mask, o, 2, 3, 2,
            SequencePoolOptions.Parse("cls,last_token,mean,mean_sqrt_len,weighted_mean,max,gem") with { P = 2 });
        float s2 = MathF.Sqrt(2);
        float[] row0 =
        [
            1, 2, 3, -6, 2, -2, 4 / s2, -4 / s2,
            (1 * 1 + 3 * 3) / 4f, (1 * 2 + 3 * -6) / 4f, // weights t+1 = 1 and 3
            3, 2,
            MathF.Sqrt((1 + 9) / 2f), MathF.Sqrt((4 + 1e-12f) / 2f),
        ];
        Assert.That(o[..14], Is.EqualTo(row0).Within(1e-5f));
        Assert.That(o[14..], Is.All.EqualTo(0f), "a row with no kept token pools to zeros");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void PrefixDimsAndNormalize(string id)
    {
        var d = TestDevices.Get(id);
        var o = new float[2 * 3];
        // skip the first kept token of row 0 -> V = {2}; row 1 empty stays zero
        d.SequencePool<float, long>(Hidden, Mask, o, 2, 3, 2, SequencePoolOptions.Parse("mean,max") with { Dims = 3, Normalize = true }, [1,
            0]);
        float n = MathF.Sqrt(9 + 36 + 9);
        Assert.That(o, Is.EqualTo(new[] { 3 / n, -6 / n, 3 / n, 0, 0, 0 }).Within(1e-6f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void LeftRightAndRaggedPaddingAgreeOnLastToken(string id)
    {
        var d = TestDevices.Get(id);
        // Same tokens a, b placed right-padded, left-padded and with a hole.
        float[] h = [1, 2, 0, 0, /**/ 0, 0, 1, 2, /**/ 1, 9, 2, 0];
        h = [.. h.Select((v, i) => v)];
        var hidden = new float[3 * 4 * 1];
        Array.Copy(h, hidden, 12);
        int[] mask = [1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0];
        var o = new float[3 * 2];
        d.SequencePool<float, int>(hidden, mask, o, 3, 4, 1, SequencePoolOptions.Parse("cls,last_token"));
        Assert.That(o, Is.EqualTo(new float[] { 1, 2, 1, 2, 1, 2 }));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void HalfAndBFloat16MatchFloatOfTheSameValues(string id)
    {
        var d = TestDevices.Get(id);
        var r = new Random(5);
        int b = 3, t = 6, dim = 33;
        var f = new float[b * t * dim];
        for (int i = 0; i < f.Length; i++) f[i] = (float)(Half)(float)(r.NextDouble() * 4 - 2); // exactly representable in half
        var bf = f.Select(v => BFloat16.FromSingle(v)).ToArray();
        var fbf = bf.Select(v => v.ToSingle()).ToArray();
        var mask = Enumerable.Range(0, b * t).Select(i => (byte)(i % 4 == 3 ? 0 : 1)).ToArray();
        var opts = SequencePoolOptions.Parse("mean,max,gem");
        float[] o32 = new float[b * 3 * dim], o16 = new float[b * 3 * dim], obf = new float[b * 3 * dim], obf32 = new float[b * 3 * dim];
        d.SequencePool<float, byte>(f, mask, o32, b, t, dim, opts);
        d.SequencePool<Half, byte>(f.Select(v => (Half)v).ToArray(), mask, o16, b, t, dim, opts);
        d.SequencePool<BFloat16, byte>(bf, mask, obf, b, t, dim, opts);
        d.SequencePool<float, byte>(fbf, mask, obf32, b, t, dim, opts);
        Assert.That(o16, Is.EqualTo(o32).Within(1e-6f));
        Assert.That(obf, Is.EqualTo(obf32).Within(1e-6f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void TensorSpanAndDeviceTensorFormsAgreeWithSpans(string id)
    {
        var d = TestDevices.Get(id);
        var opts = SequencePoolOptions.Parse("mean") with { Normalize = true };
        var expected = new float[4];
        d.SequencePool<float, long>(Hidden, Mask, expected, 2, 3, 2, opts);

        var viaTensorSpan = new float[4];
        d.SequencePool(new ReadOnlyTensorSpan<float>(Hidden, [2, 3, 2]), new ReadOnlyTensorSpan<long>(Mask, [2, 3]),
            new TensorSpan<float>(viaTensorSpan, [2, 2]), opts);
        Assert.That(viaTensorSpan, Is.EqualTo(expected));

        using var h = d.Upload<float>(Hidden, 2, 3, 2);
        using var m = d.Upload<long>(Mask, 2, 3);
        using var o = d.Allocate(DType.F32, 2, 2);
        d.SequencePool(h, m, o, opts);
        var viaDevice = new float[4];
        o.CopyTo<float>(viaDevice);
        Assert.That(viaDevice, Is.EqualTo(expected));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void ChainsOnDeviceLayerPoolThenSequencePool(string id)
    {
        // layer_pool output [B, L', D] fed, still on the device, to a second pooling over the layer axis.
        var d = TestDevices.Get(id);
        var r = new RandomSource(3);
        int l = 3, b = 2, t = 4, dim = 5;
        var hs = r.Floats(l * b * t * dim);
        var mask = new long[] { 1, 1, 1, 0, 0, 1, 1, 1 };
        using var h = d.Upload<float>(hs, l, b, t, dim);
        using var m = d.Upload<long>(mask, b, t);
        using var layers = d.Allocate(DType.F32, b, l, dim);
        d.LayerPool(h, m, layers, SequencePoolMode.Mean);
        using var ones = d.Upload<byte>(Enumerable.Repeat((byte)1, b * l).ToArray(), b, l);
        using var o = d.Allocate(DType.F32, b, dim);
        d.SequencePool(layers, ones, o, SequencePoolOptions.Parse("max"));

        var want = new float[b * dim];
        var refLayers = TestDevices.Get("reference").LayerPool(HostTensor.From(hs, l, b, t, dim), HostTensor.From(mask, b, t),
            SequencePoolMode.Mean);
        TestDevices.Get("reference").SequencePool<float, byte>(refLayers.AsSpan<float>(), Enumerable.Repeat((byte)1, b * l).ToArray(), want,
            b, l, dim, SequencePoolOptions.Parse("max"));
        Assert.That(o.ToTensor().AsSpan<float>().ToArray(), Is.EqualTo(want).Within(1e-5f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void ManyThreadsOnOneDevice(string id)
    {
        var d = TestDevices.Get(id);
        int b = 4, t = 9, dim = 37;
        var opts = SequencePoolOptions.Parse("mean,max");
        var inputs = Enumerable.Range(0, 8).Select(i => new RandomSource(i).Floats(b * t * dim)).ToArray();
        var mask = Enumerable.Range(0, b * t).Select(i => (i * 7 % 5) != 0).ToArray();
        var expected = inputs.Select(x =>
        {
            var o = new float[b * 2 * dim]; TestDevices.Get("reference").SequencePool<float, bool>(x, mask,
            o, b, t, dim, opts); return o;
        }).ToArray();
        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.For(0, 32, new ParallelOptions { MaxDegreeOfParallelism = 8 }, k =>
        {
            int i = k % inputs.Length;
            var o = new float[b * 2 * dim];
            d.SequencePool<float, bool>(inputs[i], mask, o, b, t, dim, opts);
            for (int j = 0; j < o.Length; j++)
                if (Math.Abs(o[j] - expected[i][j]) > 1e-4f
                    + 1e-4f * Math.Abs(expected[i][j])) { errors.Add($"call {k}: [{j}] {o[j]} vs {expected[i][j]}"); break; }
        });
        Assert.That(errors, Is.Empty);
    }

    private static readonly float[] H = new float[2 * 3 * 2];
    private static readonly long[] M = new long[2 * 3];

    public static IEnumerable<TestCaseData> BadInputs()
    {
        var mean = SequencePoolOptions.Parse("mean");
        yield return Bad("hidden", d => d.SequencePool<float, long>(H.AsSpan(1), M, new float[4], 2, 3, 2, mean));
        yield return Bad("attentionMask", d => d.SequencePool<float, long>(H, M.AsSpan(1), new float[4], 2, 3, 2, mean));
        yield return Bad("output", d => d.SequencePool<float, long>(H, M, new float[5], 2, 3, 2, mean));
        yield return Bad("prefixLen", d => d.SequencePool<float, long>(H, M, new float[4], 2, 3, 2, mean, [1]));
        yield return Bad("prefixLen", d => d.SequencePool<float, long>(H, M, new float[4], 2, 3, 2, mean, [0, -1]));
        yield return Bad("batch", d => d.SequencePool<float, long>(H, M, new float[4], -2, 3, 2, mean));
        yield return Bad("mode", d => d.SequencePool<float, long>(H, M, new float[4], 2, 3, 2, new SequencePoolOptions()));
        yield return Bad("mode", d => d.SequencePool<float, long>(H, M, new float[4], 2, 3, 2, SequencePoolOptions.Parse("median")));
        yield return Bad("p", d => d.SequencePool<float, long>(H, M, new float[4], 2, 3, 2,
            SequencePoolOptions.Parse("gem") with { P = 0 }));
        yield return Bad("p", d => d.SequencePool<float, long>(H, M, new float[4], 2, 3, 2,
            SequencePoolOptions.Parse("gem") with { P = -1 }));
        yield return Bad("dims", d => d.SequencePool<float, long>(H, M, new float[4], 2, 3, 2, mean with { Dims = 3 }));
        yield return Bad("dims", d => d.SequencePool<float, long>(H, M, new float[0], 2, 3, 2, mean with { Dims = 0 }));
        yield return Bad("hidden", d => d.SequencePool<double, long>(new double[12], M, new float[4], 2, 3, 2, mean));
        yield return Bad("attentionMask", d => d.SequencePool<float, float>(H, new float[6], new float[4], 2, 3, 2, mean));
        yield return Bad("hidden", d => d.SequencePool(HostTensor.Zeros(DType.F32, 2, 3), HostTensor.Zeros(DType.I64, 2, 3), mean));
        yield return Bad("hidden", d => d.SequencePool(HostTensor.Zeros(DType.I32, 2, 3, 2), HostTensor.Zeros(DType.I64, 2, 3), mean));
        yield return Bad("attentionMask", d => d.SequencePool(HostTensor.Zeros(DType.F32, 2, 3, 2), HostTensor.Zeros(DType.I64, 3, 2),
            mean));
        yield return Bad("attentionMask", d => d.SequencePool(HostTensor.Zeros(DType.F32, 2, 3, 2), HostTensor.Zeros(DType.F32, 2, 3),
            mean));
        yield return Bad("prefixLen", d => d.SequencePool(HostTensor.Zeros(DType.F32, 2, 3, 2), HostTensor.Zeros(DType.I64, 2, 3), mean,
            HostTensor.Zeros(DType.F32, 2)));
        yield return Bad("mode", d => d.LayerPool(HostTensor.Zeros(DType.F32, 2, 2, 3, 2), HostTensor.Zeros(DType.I64, 2, 3),
            SequencePoolMode.Max));
        yield return Bad("layers", d => d.LayerPool(HostTensor.Zeros(DType.F32, 2, 2, 3, 2), HostTensor.Zeros(DType.I64, 2, 3),
            SequencePoolMode.Mean, [2]));
        yield return Bad("layers", d => d.LayerPool(HostTensor.Zeros(DType.F32, 2, 2, 3, 2), HostTensor.Zeros(DType.I64, 2, 3),
            SequencePoolMode.Mean, [-3]));
        yield return Bad("hiddenStates", d => d.LayerPool(HostTensor.Zeros(DType.F32, 2, 3, 2), HostTensor.Zeros(DType.I64, 2, 3),
            SequencePoolMode.Mean));
        yield return Bad("attentionMask", d => d.LayerPool(HostTensor.Zeros(DType.F32, 2, 2, 3, 2), HostTensor.Zeros(DType.I64, 2, 4),
            SequencePoolMode.Mean));
        yield return Bad("layers", _ => SequencePooling.ParseLayers("3..1"));
        yield return Bad("layers", _ => SequencePooling.ParseLayers("a"));
    }

    private static TestCaseData Bad(string param, Action<Device> call) => BadInput.Case(param, call);

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputNamesTheArgument(string param, Action<Device> call)
        => BadInput.AssertRejectedEverywhere(param, call);

    [Test]
    public void DeviceTensorFromAnotherDeviceIsRejected()
    {
        using var h = TestDevices.Get("reference").Upload<float>(H, 2, 3, 2);
        using var m = TestDevices.Get("simd").Upload<long>(M, 2, 3);
        using var o = TestDevices.Get("simd").Allocate(DType.F32, 2, 2);
        var e = Assert.Throws<ArgumentException>(() => TestDevices.Get("simd").SequencePool(h, m, o, SequencePoolOptions.Parse("mean")));
        Assert.That(e!.ParamName, Is.EqualTo("hidden"));
    }

    [Test]
    public void LayersParse()
    {
        Assert.That(SequencePooling.ParseLayers("all"), Is.Null);
        Assert.That(SequencePooling.ParseLayers("0,2..4,-1"), Is.EqualTo(new[] { 0, 2, 3, 4, -1 }));
    }

    [Test]
    public void SimdSteadyStateAllocatesNothing()
    {
        var d = TestDevices.Get("simd");
        int b = 8, t = 64, dim = 300;
        var h = new RandomSource(1).Floats(b * t * dim);
        var m = Enumerable.Range(0, b * t).Select(i => (long)(i % 5 == 0 ? 0 : 1)).ToArray();
        var o = new float[b * 2 * dim];
        var opts = SequencePoolOptions.Parse("mean,max") with { Normalize = true };
        for (int i = 0; i < 5; i++) d.SequencePool<float, long>(h, m, o, b, t, dim, opts);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) d.SequencePool<float, long>(h, m, o, b, t, dim, opts);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }
}

/// <summary>Deterministic test data.</summary>
public sealed class RandomSource(int seed)
{
    private readonly Random _r = new(seed);
    public float[] Floats(int n, float lo = -2, float hi = 2) => Enumerable.Range(0, n).Select(_
        => lo + (float)_r.NextDouble() * (hi - lo)).ToArray();
}
