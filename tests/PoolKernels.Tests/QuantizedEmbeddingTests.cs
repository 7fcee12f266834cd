using System.Collections;
using Microsoft.Extensions.AI;
using NUnit.Framework;
using PoolKernels.Onnx;

namespace PoolKernels.Tests;

/// <summary>Quantized output of the embedding pipeline (SentenceEmbedder.EmbedQuantized, QuantizedEmbeddings) and the
/// generator's BinaryEmbedding, against the float embeddings and numpy-style packbits / sentence-transformers levels.</summary>
[NonParallelizable]
public class QuantizedEmbeddingTests
{
    private static readonly string[] Texts =
    [
        "The cat sits on the mat.", "A dog runs in the park.", "Stock markets fell sharply on Monday.", "short",
    ];

    private static SentenceEmbedder? s_embedder;
    private static SentenceEmbedder Embedder => s_embedder ??= new SentenceEmbedder(new SentenceEmbedderOptions(), TestDevices.Get("simd"));

    [OneTimeTearDown]
    public void Close()
    {
        s_embedder?.Dispose();
        s_embedder = null;
    }

    /// <summary>numpy.packbits(x &gt; 0, axis=1) of one row: dimension d in bit 7 − d % 8 of byte d / 8.</summary>
    internal static byte[] PackBits(float[] x)
    {
        var r = new byte[(x.Length + 7) / 8];
        for (int d = 0; d < x.Length; d++) if (x[d] > 0) r[d / 8] |= (byte)(0x80 >> (d % 8));
        return r;
    }

    /// <summary>uint8 level of x in [start, end] as the quantize contract computes it (double arithmetic, clamped).</summary>
    internal static byte Level(float x, float start, float end)
    {
        double step = ((double)end - start) / 255;
        if (step == 0) return 0;
        double t = (x - (double)start) / step;
        return t >= 255 ? (byte)255 : t > 0 ? (byte)Math.Truncate(t) : (byte)0;
    }

    [TestCase(QuantizePrecision.Int8)]
    [TestCase(QuantizePrecision.Uint8)]
    [TestCase(QuantizePrecision.Binary)]
    [TestCase(QuantizePrecision.Ubinary)]
    public void EmbedQuantizedQuantizesTheFloatEmbeddings(QuantizePrecision precision)
    {
        var floats = Embedder.Embed(Texts);
        var q = Embedder.EmbedQuantized(Texts, precision);
        int d = Embedder.Dimensions;
        bool binary = precision is QuantizePrecision.Binary or QuantizePrecision.Ubinary;
        Assert.That(q.Precision, Is.EqualTo(precision));
        Assert.That(q.Dimensions, Is.EqualTo(d));
        Assert.That(q.Values.Shape.ToArray(), Is.EqualTo(new[] { Texts.Length, binary ? (d + 7) / 8 : d }));
        Assert.That(q.Values.DType, Is.EqualTo(precision is QuantizePrecision.Int8 or QuantizePrecision.Binary ? DType.I8 : DType.U8));
        byte offset = precision is QuantizePrecision.Int8 or QuantizePrecision.Binary ? (byte)0x80 : (byte)0; // − 128 on the byte
        if (binary)
        {
            Assert.That(q.Ranges, Is.Null);
            for (int i = 0; i < Texts.Length; i++)
                Assert.That(q.Row(i).ToArray().Select(b => (byte)(b ^ offset)), Is.EqualTo(PackBits(floats[i])), Texts[i]);
            return;
        }
        // self ranges: the per-dimension min and max of these texts' embeddings
        var ranges = q.Ranges!.AsSpan<float>().ToArray();
        for (int j = 0; j < d; j++)
        {
            Assert.That(ranges[j], Is.EqualTo(floats.Min(v => v[j])));
            Assert.That(ranges[d + j], Is.EqualTo(floats.Max(v => v[j])));
        }
        for (int i = 0; i < Texts.Length; i++)
        {
            var want = Enumerable.Range(0, d).Select(j => (byte)(Level(floats[i][j], ranges[j], ranges[d + j]) ^ offset));
            Assert.That(q.Row(i).ToArray(), Is.EqualTo(want), Texts[i]);
        }
    }

    [Test]
    public void QueriesTakeTheCorpusRangesFromTheOptions()
    {
        var corpus = Embedder.EmbedQuantized(Texts, QuantizePrecision.Int8);
        using var queries = new SentenceEmbedder(new SentenceEmbedderOptions { Precision = QuantizePrecision.Int8, Ranges = corpus.Ranges },
            TestDevices.Get("simd"));
        Assert.That(queries.Precision, Is.EqualTo(QuantizePrecision.Int8));
        var q = queries.EmbedQuantized(["a cat on a mat", Texts[2]]);
        Assert.That(q.Ranges!.AsSpan<float>().ToArray(), Is.EqualTo(corpus.Ranges!.AsSpan<float>().ToArray()));
        Assert.That(q.Row(1).ToArray(), Is.EqualTo(corpus.Row(2).ToArray()), "same text, same ranges, same levels");
        // calibration data: its min/max are the ranges
        var floats = Embedder.Embed(Texts);
        var calibration = HostTensor.From(floats.SelectMany(v => v).ToArray(), Texts.Length, Embedder.Dimensions);
        using var calibrated = new SentenceEmbedder(new SentenceEmbedderOptions { Calibration = calibration }, TestDevices.Get("simd"));
        Assert.That(calibrated.EmbedQuantized(["short"], QuantizePrecision.Uint8).Ranges!.AsSpan<float>().ToArray(),
            Is.EqualTo(corpus.Ranges!.AsSpan<float>().ToArray()));
    }

    [Test]
    public void BadQuantizeOptionsAreArgumentExceptions()
    {
        Assert.Throws<ArgumentException>(() => Embedder.EmbedQuantized(Texts), "no precision anywhere");
        var device = TestDevices.Get("simd");
        Assert.Throws<ArgumentException>(() => new SentenceEmbedder(new SentenceEmbedderOptions
        {
            Ranges = HostTensor.Zeros(DType.F32, 2,
            10)
        },
            device), "ranges of the wrong width");
        Assert.Throws<ArgumentException>(() => new SentenceEmbedder(new SentenceEmbedderOptions
        {
            Calibration = HostTensor.Zeros(DType.F32, 0, 384),
        }, device), "calibration without rows");
        Assert.Throws<ArgumentException>(() => new SentenceEmbedder(new SentenceEmbedderOptions { Precision = (QuantizePrecision)7 },
            device));
        var nan = new float[2 * 384];
        nan[5] = float.NaN;
        using var e = new SentenceEmbedder(new SentenceEmbedderOptions { Calibration = HostTensor.From(nan, 2, 384) }, device);
        Assert.Throws<ArgumentException>(() => e.EmbedQuantized(Texts, QuantizePrecision.Int8), "a NaN in the calibration data");
    }

    [Test]
    public void BitArrayNumbersDimensionsFromTheFirstOneAsPackbitsMostSignificantBitFirst()
    {
        // D = 10 (not a multiple of 8): dimensions 0, 3 and 9 positive → packbits bytes 0b1001_0000, 0b0100_0000
        var x = new float[10];
        x[0] = 0.5f; x[3] = 1e-30f; x[9] = 2; x[4] = -1; x[5] = -0f;
        foreach (var precision in new[] { QuantizePrecision.Ubinary, QuantizePrecision.Binary })
        {
            var q = QuantizedEmbeddings.Quantize(TestDevices.Get("simd"), HostTensor.From(x, 1, 10), precision);
            byte flip = precision == QuantizePrecision.Binary ? (byte)0x80 : (byte)0;
            Assert.That(q.Row(0).ToArray(), Is.EqualTo(new[] { (byte)(0x90 ^ flip), (byte)(0x40 ^ flip) }), precision.ToString());
            var bits = q.ToBitArray(0);
            Assert.That(bits.Length, Is.EqualTo(10));
            Assert.That(Enumerable.Range(0, 10).Where(d => bits[d]), Is.EqualTo(new[] { 0, 3, 9 }), precision.ToString());
        }
        Assert.Throws<InvalidOperationException>(() =>
            QuantizedEmbeddings.Quantize(TestDevices.Get("simd"), HostTensor.From(x, 1, 10), QuantizePrecision.Int8).ToBitArray(0));
    }

    [Test]
    public async Task TheGeneratorIsAlsoABinaryEmbeddingGenerator()
    {
        using var generator = new PoolKernelsEmbeddingGenerator(new SentenceEmbedderOptions { Device = "simd" });
        IEmbeddingGenerator<string, BinaryEmbedding> binary = generator;
        IEmbeddingGenerator<string, Embedding<float>> floats = generator;
        var b = await binary.GenerateAsync(Texts);
        var f = await floats.GenerateAsync(Texts);
        Assert.That(b, Has.Count.EqualTo(Texts.Length));
        for (int i = 0; i < Texts.Length; i++)
        {
            BitArray v = b[i].Vector;
            var x = f[i].Vector.ToArray();
            Assert.That(v.Length, Is.EqualTo(384));
            Assert.That(b[i].Dimensions, Is.EqualTo(384));
            Assert.That(Enumerable.Range(0, 384).Select(d => v[d]), Is.EqualTo(x.Select(e => e > 0)), $"bit d = x[d] > 0: {Texts[i]}");
            Assert.That(b[i].ModelId, Is.EqualTo("all-MiniLM-L6-v2"));
        }
        // BitArray's own byte layout is least-significant-bit first: packbits' bytes are its bytes bit-reversed
        var raw = new byte[48];
        b[0].Vector.CopyTo(raw, 0);
        var packed = PackBits(f[0].Vector.ToArray());
        Assert.That(raw, Is.EqualTo(packed.Select(Reverse)));
        // Matryoshka width
        var small = await binary.GenerateAsync(["hello"], new EmbeddingGenerationOptions { Dimensions = 20 });
        Assert.That(small[0].Vector.Length, Is.EqualTo(20));
        Assert.That(generator.GetService<IEmbeddingGenerator<string, BinaryEmbedding>>(), Is.SameAs(generator));
        // on the class itself (where the extension methods cannot infer which interface), the one-text calls still work
        Assert.That((await generator.GenerateVectorAsync(Texts[0])).ToArray(), Is.EqualTo(f[0].Vector.ToArray()));
        Assert.That((await generator.GenerateAsync(Texts[1])).Vector.ToArray(), Is.EqualTo(f[1].Vector.ToArray()));
    }

    private static byte Reverse(byte b)
    {
        int r = 0;
        for (int i = 0; i < 8; i++) if ((b & (1 << i)) != 0) r |= 0x80 >> i;
        return (byte)r;
    }
}
