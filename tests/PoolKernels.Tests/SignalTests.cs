using NUnit.Framework;
using PoolKernels.Kernels.Signal;

namespace PoolKernels.Tests;

/// <summary>pool1d and its streaming form (StreamiNNC): hand-computed windows, chunked streams equal to the one-shot
/// result for chunk sizes 1, odd multiples and the whole stream, and the rejections.</summary>
public class SignalTests
{
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void HandComputedWindows(string id)
    {
        var d = TestDevices.Get(id);
        float[] x = [1, 2, 3, 4, 5, 6, 7];
        var o = new float[4];
        // k3 s2 p1: windows [-1,2), [1,4), [3,6), [5,8)
        d.Pool1d(x, o, 1, 7, Pool1dMode.Avg, 3, 2, 1);
        Assert.That(o, Is.EqualTo(new[] { 3 / 3f, 9 / 3f, 15 / 3f, 13 / 3f }).Within(1e-6f), "avg counts the padded zeros");
        d.Pool1d(x, o, 1, 7, Pool1dMode.Max, 3, 2, 1);
        Assert.That(o, Is.EqualTo(new float[] { 2, 4, 6, 7 }));
        var neg = x.Select(v => -v).ToArray();
        d.Pool1d(neg, o, 1, 7, Pool1dMode.Max, 3, 2, 1);
        Assert.That(o, Is.EqualTo(new float[] { -1, -2, -4, -6 }), "padding never wins a max");
    }

    public static IEnumerable<TestCaseData> StreamCases()
    {
        foreach (var id in TestDevices.All())
        {
            yield return new TestCaseData(id, "avg", 3, 1, 1, new[] { 1 }).SetName($"stride 1, chunks of 1 ({id})");
            yield return new TestCaseData(id, "max", 4, 2, 1, new[] { 2, 4, 6, 2, 10 }).SetName($"k4 s2 p1 uneven chunks ({id})");
            yield return new TestCaseData(id, "avg", 5, 3, 2, new[] { 24 }).SetName($"k5 s3 p2 whole stream ({id})");
            yield return new TestCaseData(id, "max", 2, 2, 0, new[] { 2, 0, 8, 14 }).SetName($"k2 s2 with an empty chunk ({id})");
            yield return new TestCaseData(id, "avg", 7, 1, 3, new[] { 1, 1, 30, 1 }).SetName($"window longer than chunks ({id})");
        }
    }

    [TestCaseSource(nameof(StreamCases))]
    public void StreamedEqualsWholeStream(string id, string mode, int kernel, int stride, int padding, int[] chunkPattern)
    {
        var d = TestDevices.Get(id);
        var m = SignalPooling.ParseMode(mode);
        int b = 2, c = 3, total = 24;
        var rng = new Random(kernel * 31 + stride);
        var x = Enumerable.Range(0, b * c * total).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var whole = d.Pool1d(HostTensor.From(x, b, c, total), m, kernel, stride, padding).AsSpan<float>().ToArray();
        int lo = whole.Length / (b * c);

        var s = new StreamingPool1d(d, b, c, m, kernel, stride, padding);
        var got = Enumerable.Range(0, b * c).Select(_ => new List<float>()).ToArray();
        void Take(HostTensor t)
        {
            int n = t.Shape[2];
            var v = t.AsSpan<float>();
            for (int r = 0; r < b * c; r++) got[r].AddRange(v.Slice(r * n, n).ToArray());
        }
        int pos = 0, k = 0;
        while (pos < total)
        {
            int len = Math.Min(chunkPattern[k++ % chunkPattern.Length] * stride, total - pos);
            if (len % stride != 0) len -= len % stride;
            var chunk = new float[b * c * len];
            for (int r = 0; r < b * c; r++) Array.Copy(x, r * total + pos, chunk, r * len, len);
            Take(s.Push(HostTensor.From(chunk, b, c, len)));
            pos += len;
            if (len == 0 && chunkPattern.All(p => p == 0)) break;
        }
        Take(s.Complete());
        Assert.That(s.OutputsEmitted, Is.EqualTo(lo));
        for (int r = 0; r < b * c; r++)
            Assert.That(got[r], Is.EqualTo(whole.AsSpan(r * lo, lo).ToArray()).Within(1e-6f), $"row {r}");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void StreamRejectsMisalignedChunksAndUseAfterComplete(string id)
    {
        var s = new StreamingPool1d(TestDevices.Get(id), 1, 1, Pool1dMode.Avg, 4, 2);
        var e = Assert.Throws<ArgumentException>(() => s.Push(HostTensor.Zeros(DType.F32, 1, 1, 3)));
        Assert.That(e!.ParamName, Is.EqualTo("chunk"));
        Assert.That(e.Message, Does.Contain("multiple of stride 2"));
        Assert.That(() => s.Push(HostTensor.Zeros(DType.F32, 1, 2, 2)),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("chunk"));
        s.Push(HostTensor.Zeros(DType.F32, 1, 1, 4));
        s.Complete();
        Assert.That(() => s.Push(HostTensor.Zeros(DType.F32, 1, 1, 2)), Throws.InvalidOperationException);
    }

    public static IEnumerable<TestCaseData> BadInputs()
    {
        var x = new float[12];
        yield return Bad("kernel", d => d.Pool1d(x, new float[12], 1, 12, Pool1dMode.Avg, 0));
        yield return Bad("stride", d => d.Pool1d(x, new float[12], 1, 12, Pool1dMode.Avg, 2, 0));
        yield return Bad("padding", d => d.Pool1d(x, new float[12], 1, 12, Pool1dMode.Avg, 2, 1, 2));
        yield return Bad("padding", d => d.Pool1d(x, new float[12], 1, 12, Pool1dMode.Avg, 2, 1, -1));
        yield return Bad("x", d => d.Pool1d(x, new float[6], 2, 7, Pool1dMode.Avg, 2));
        yield return Bad("output", d => d.Pool1d(x, new float[5], 1, 12, Pool1dMode.Avg, 2));
        yield return Bad("mode", d => d.Pool1d(x, new float[6], 1, 12, (Pool1dMode)9, 2));
        yield return Bad("mode", _ => SignalPooling.ParseMode("lp"));
        yield return Bad("x", d => d.Pool1d(HostTensor.Zeros(DType.F32, 2, 6), Pool1dMode.Max, 2));
        yield return Bad("stride", d => _ = new StreamingPool1d(d, 1, 1, Pool1dMode.Max, 2, -3));
    }

    private static TestCaseData Bad(string param, Action<Device> call) => BadInput.Case(param, call);

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputNamesTheArgument(string param, Action<Device> call)
        => BadInput.AssertRejectedEverywhere(param, call);
}
