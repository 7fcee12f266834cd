using System.Text.Json;
using NUnit.Framework;
using PoolKernels.Cli;
using PoolKernels.IO;

namespace PoolKernels.Tests;

/// <summary><c>poolkernels embed --precision</c> and <c>poolkernels search</c>, run in-process: the quantized tensors against
/// the float embeddings, search end to end, the index file, and the usage errors.</summary>
[NonParallelizable]
public class SearchCliTests
{
    private string _dir = "";

    private static readonly string[] Corpus =
    [
        "The cat sits on the mat.", "A dog runs in the park.", "Stock markets fell sharply on Monday.",
        "The recipe needs two cups of flour.", "Quantum computers use qubits.", "Rain is expected tomorrow afternoon.",
    ];

    [SetUp]
    public void MakeFolder() =>
        Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "pk-search-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void RemoveFolder() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private string PathOf(string name) => Path.Combine(_dir, name);

    private string WriteCorpus(string name = "corpus.txt", string[]? lines = null)
    {
        File.WriteAllLines(PathOf(name), lines ?? Corpus);
        return PathOf(name);
    }

    /// <summary>The float embeddings of the corpus through embed --out.</summary>
    private float[][] FloatEmbeddings(string corpus)
    {
        var (code, _, err) = Run("embed", "--file", corpus, "--device", "simd", "--out", PathOf("f32.safetensors"));
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
        using var f = Safetensors.Read(PathOf("f32.safetensors"));
        var t = f.Tensors["embeddings"];
        var flat = t.AsSpan<float>().ToArray();
        return Enumerable.Range(0, t.Shape[0]).Select(i => flat[(i * t.Shape[1])..((i + 1) * t.Shape[1])]).ToArray();
    }

    // ---------------------------------------------------------------- embed --precision

    [TestCase("float32", "F32", 384)]
    [TestCase("int8", "I8", 384)]
    [TestCase("uint8", "U8", 384)]
    [TestCase("binary", "I8", 48)]
    [TestCase("ubinary", "U8", 48)]
    public void EmbedPrecisionWritesTheQuantizedTensor(string precision, string dtype, int width)
    {
        var corpus = WriteCorpus();
        var floats = FloatEmbeddings(corpus);
        string output = PathOf($"{precision}.safetensors");
        var (code, _, err) = Run("embed", "--file", corpus, "--device", "simd", "--precision", precision, "--out", output);
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
        using var f = Safetensors.Read(output);
        var e = f.Tensors["embeddings"];
        Assert.That(e.DType.Name(), Is.EqualTo(dtype));
        Assert.That(e.Shape.ToArray(), Is.EqualTo(new[] { Corpus.Length, width }));
        Assert.That(f.Tensors.ContainsKey("ranges"), Is.EqualTo(precision is "int8" or "uint8"));
        var bytes = e.Data.ToArray();
        if (precision == "float32")
        {
            Assert.That(e.AsSpan<float>().ToArray(), Is.EqualTo(floats.SelectMany(v => v).ToArray()));
            return;
        }
        Assert.That(f.Metadata["precision"], Is.EqualTo(precision));
        Assert.That(f.Metadata["dims"], Is.EqualTo("384"));
        byte flip = dtype == "I8" ? (byte)0x80 : (byte)0; // I8 = U8 − 128: the byte with its top bit flipped
        for (int i = 0; i < Corpus.Length; i++)
        {
            var row = bytes[(i * width)..((i + 1) * width)].Select(b => (byte)(b ^ flip)).ToArray();
            if (width == 48) Assert.That(row, Is.EqualTo(QuantizedEmbeddingTests.PackBits(floats[i])), $"packbits(x > 0): {Corpus[i]}");
            else
            {
                var r = f.Tensors["ranges"].AsSpan<float>();
                for (int j = 0; j < 384; j++)
                {
                    Assert.That(r[j], Is.EqualTo(floats.Min(v => v[j])), "self ranges: min");
                    Assert.That(row[j], Is.EqualTo(QuantizedEmbeddingTests.Level(floats[i][j], r[j], r[384 + j])), $"{Corpus[i]} [{j}]");
                }
            }
        }
    }

    [Test]
    public void EmbedInt8IsUint8Minus128AndItsRangesFileCalibratesAnotherRun()
    {
        var corpus = WriteCorpus();
        Assert.That(Run("embed", "--file", corpus, "--device", "simd", "--precision", "int8", "--out", PathOf("i8.safetensors")).Code,
            Is.EqualTo(CliApp.ExitPass));
        Assert.That(Run("embed", "--file", corpus, "--device", "simd", "--precision", "uint8", "--out", PathOf("u8.safetensors")).Code,
            Is.EqualTo(CliApp.ExitPass));
        using var i8 = Safetensors.Read(PathOf("i8.safetensors"));
        using var u8 = Safetensors.Read(PathOf("u8.safetensors"));
        var signed = i8.Tensors["embeddings"].AsSpan<sbyte>().ToArray();
        var unsigned = u8.Tensors["embeddings"].Data.ToArray();
        Assert.That(signed.Select(v => (int)v), Is.EqualTo(unsigned.Select(v => v - 128)));
        Assert.That(i8.Tensors["ranges"].AsSpan<float>().ToArray(), Is.EqualTo(u8.Tensors["ranges"].AsSpan<float>().ToArray()));

        // one text, quantized with the corpus's ranges (the int8 file) = its row in the corpus run; with calibration
        // embeddings (the float32 file) the same ranges again
        FloatEmbeddings(corpus);
        foreach (var calibration in new[] { PathOf("i8.safetensors"), PathOf("f32.safetensors") })
        {
            var (code, output, err) = Run("embed", Corpus[2], "--device", "simd", "--precision", "int8", "--calibration", calibration);
            Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
            var line = JsonDocument.Parse(output).RootElement.GetProperty("embedding").EnumerateArray().Select(v => v.GetInt32());
            Assert.That(line, Is.EqualTo(signed[(2 * 384)..(3 * 384)].Select(v => (int)v)), calibration);
        }
    }

    [Test]
    public void EmbedPrecisionUsageErrorsNameTheFlagAndValue()
    {
        var (code, output, err) = Run("embed", "text", "--precision", "int4");
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("--precision: unknown precision 'int4'").And.Contain("ubinary"));
        Assert.That(output, Is.Empty);
        string missing = PathOf("missing.safetensors");
        (code, _, err) = Run("embed", "text", "--device", "simd", "--precision", "int8", "--calibration", missing);
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("--calibration").And.Contain(missing));
        (code, _, err) = Run("embed", "text", "--precision", "ubinary", "--calibration", missing);
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("--calibration applies to --precision int8 and uint8 only"));
        Safetensors.Write(PathOf("narrow.safetensors"), new Dictionary<string, HostTensor>
        {
            ["ranges"] = HostTensor.Zeros(DType.F32, 2,
            8)
        });
        (code, _, err) = Run("embed", "text", "--device", "simd", "--precision", "uint8", "--calibration", PathOf("narrow.safetensors"));
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("'ranges' must be F32 [2, 384]"));
    }

    // ---------------------------------------------------------------- search

    private static List<JsonElement> JsonLines(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => JsonDocument.Parse(l).RootElement).ToList();

    [TestCase]
    [TestCase("--no-rescore")]
    [TestCase("--int8")]
    [TestCase("--rescore-multiplier", "1")]
    public void SearchFindsEachCorpusLineForItselfFirst(params string[] mode)
    {
        var corpus = WriteCorpus("corpus.txt", [Corpus[0], "", .. Corpus[1..]]); // an empty line is no document
        var queries = WriteCorpus("queries.txt");
        string[] build = mode.Contains("--int8") ? ["--int8"] : [];
        var (code, output, err) = Run(["search", "--corpus", corpus, "--queries", queries, "--k", "3", "--device", "simd", "--json",
            .. build, .. mode.Except(build)]);
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
        var lines = JsonLines(output);
        Assert.That(lines, Has.Count.EqualTo(Corpus.Length));
        for (int i = 0; i < Corpus.Length; i++)
        {
            Assert.That(lines[i].GetProperty("query").GetString(), Is.EqualTo(Corpus[i]));
            var results = lines[i].GetProperty("results").EnumerateArray().ToList();
            Assert.That(results, Has.Count.EqualTo(3));
            Assert.That(results[0].GetProperty("index").GetInt64(), Is.EqualTo(i), Corpus[i]);
            Assert.That(results[0].GetProperty("text").GetString(), Is.EqualTo(Corpus[i]));
            var scores = results.Select(r => r.GetProperty("score").GetSingle()).ToList();
            Assert.That(scores, Is.Ordered.Descending);
            if (mode.Contains("--no-rescore")) Assert.That(scores[0], Is.EqualTo(384), "distance 0: D − 2·0");
            if (mode.Contains("--int8")) Assert.That(scores[0], Is.EqualTo(1).Within(0.02), "q · dequantized x ≈ cosine 1");
        }
        Assert.That(err, Does.Contain($"{Corpus.Length} queries in").And.Contain("queries/s"));
    }

    [Test]
    public void SearchPrintsTheTopDocumentsWithScoresThenQueriesPerSecond()
    {
        var corpus = WriteCorpus();
        var (code, output, err) = Run("search", "--corpus", corpus, "what is the weather tomorrow", "--k", "2", "--device", "simd");
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd()).ToList();
        Assert.That(lines[0], Is.EqualTo("what is the weather tomorrow"));
        Assert.That(lines[1], Does.Match(@"^\s+1\. \[5\] [-0-9.e+]+  Rain is expected tomorrow afternoon\.$"));
        Assert.That(lines[2], Does.Match(@"^\s+2\. \[\d\] "));
        Assert.That(lines[3], Does.StartWith("1 queries in").And.Contain("queries/s").And.Contain("binary, rescored x4"));
    }

    [Test]
    public void TheIndexFileIsSafetensorsAndLoadsBackToTheSameAnswers()
    {
        var corpus = WriteCorpus();
        var floats = FloatEmbeddings(corpus);
        string index = PathOf("index.safetensors");
        string[] query = ["--device", "simd", "--json", "--k", "4", "a cat on a mat", "baking bread"];
        foreach (var int8 in new[] { false, true })
        {
            string[] flag = int8 ? ["--int8"] : [];
            var (code, built, err) = Run(["search", "--corpus", corpus, "--index", index, .. flag, .. query]);
            Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
            Assert.That(err, Does.Contain($"wrote the index to {index}"));

            using (var f = Safetensors.Read(index))
            {
                var bits = f.Tensors["bits"];
                Assert.That(bits.DType, Is.EqualTo(DType.U8));
                Assert.That(bits.Shape.ToArray(), Is.EqualTo(new[] { Corpus.Length, 48 }));
                Assert.That(bits.Data.ToArray(), Is.EqualTo(floats.SelectMany(QuantizedEmbeddingTests.PackBits).ToArray()),
                    "packbits(x > 0)");
                Assert.That(f.Metadata["format"], Is.EqualTo("poolkernels.search_index"));
                Assert.That(f.Metadata["dims"], Is.EqualTo("384"));
                Assert.That(f.Metadata["count"], Is.EqualTo("6"));
                Assert.That(f.Metadata["model"], Is.EqualTo("all-MiniLM-L6-v2"));
                Assert.That(f.Tensors.ContainsKey("int8"), Is.EqualTo(int8));
                if (int8)
                {
                    Assert.That(f.Tensors["int8"].DType, Is.EqualTo(DType.I8));
                    Assert.That(f.Tensors["int8"].Shape.ToArray(), Is.EqualTo(new[] { 6, 384 }));
                    Assert.That(f.Tensors["ranges"].Shape.ToArray(), Is.EqualTo(new[] { 2, 384 }));
                }
            }

            var (code2, loaded, err2) = Run(["search", "--index", index, .. flag, .. query]);
            Assert.That(code2, Is.EqualTo(CliApp.ExitPass), err2);
            Assert.That(err2, Does.Not.Contain("wrote the index"));
            Assert.That(loaded, Is.EqualTo(built), "same answers, texts included, from the loaded index");
        }

        // the corpus changed after the index was built: numbers only, with a note
        File.AppendAllLines(corpus, ["one more line"]);
        var (c3, changed, e3) = Run(["search", "--index", index, .. query]);
        Assert.That(c3, Is.EqualTo(CliApp.ExitPass), e3);
        Assert.That(e3, Does.Contain("missing or changed"));
        Assert.That(JsonLines(changed)[0].GetProperty("results")[0].GetProperty("text").ValueKind, Is.EqualTo(JsonValueKind.Null));
    }

    [Test]
    public void SearchOverPrecomputedEmbeddingsEqualsSearchOverTheCorpus()
    {
        var corpus = WriteCorpus();
        FloatEmbeddings(corpus);
        string[] query = ["--device", "simd", "--json", "--k", "3", "stocks", "dogs"];
        var (c1, fromCorpus, e1) = Run(["search", "--corpus", corpus, .. query]);
        var (c2, fromFile, e2) = Run(["search", "--embeddings", PathOf("f32.safetensors"), "--corpus", corpus, .. query]);
        Assert.That(c1, Is.EqualTo(CliApp.ExitPass), e1);
        Assert.That(c2, Is.EqualTo(CliApp.ExitPass), e2);
        Assert.That(fromFile, Is.EqualTo(fromCorpus));
        WriteCorpus("short.txt", Corpus[..3]);
        var (c3, _, e3) = Run(["search", "--embeddings", PathOf("f32.safetensors"), "--corpus", PathOf("short.txt"), .. query]);
        Assert.That(c3, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(e3, Does.Contain("has 3 documents but --embeddings"));
    }

    [TestCase("--k", "0")]
    [TestCase("--k", "-1")]
    [TestCase("--rescore-multiplier", "0")]
    [TestCase("--k", "ten")]
    public void SearchNumbersOutOfRangeAreUsageErrorsNamingTheFlag(string flag, string value)
    {
        var (code, output, err) = Run("search", "--corpus", WriteCorpus(), "query", flag, value);
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain($"{flag}:").And.Contain(value));
        Assert.That(output, Is.Empty);
    }

    [Test]
    public void SearchMisuseIsAUsageErrorSayingWhat()
    {
        var corpus = WriteCorpus();
        string missing = PathOf("missing.txt");
        var cases = new (string[] Args, string Message)[]
        {
            (["search", "--corpus", missing, "q"], $"--corpus: no such file: {missing}"),
            (["search", "--corpus", corpus, "--queries", missing], $"--queries: no such file: {missing}"),
            (["search", "--index", missing, "q"], $"--index: no such file: {missing}"),
            (["search", "--embeddings", missing, "q"], $"--embeddings: no such file: {missing}"),
            (["search", "q"], "search needs a corpus"),
            (["search", "--corpus", corpus], "search needs QUERY arguments or --queries"),
            (["search", "--corpus", corpus, "--int8", "--no-rescore", "q"], "--no-rescore"),
            (["search", "--corpus", corpus, "--calibration", corpus, "q"], "--calibration sets the int8 ranges"),
            (["search", "--corpus", corpus, "--frobnicate", "q"], "'--frobnicate'"),
            (["search", "--index", corpus, "q"], "--index"),
        };
        foreach (var (args, message) in cases)
        {
            var (code, output, err) = Run(args);
            Assert.That(code, Is.EqualTo(CliApp.ExitUsage), string.Join(" ", args) + "\n" + err);
            Assert.That(err, Does.Contain(message), string.Join(" ", args));
            Assert.That(output, Is.Empty, string.Join(" ", args));
        }
        // an index without int8, asked to rescore with int8
        string index = PathOf("index.safetensors");
        Assert.That(Run("search", "--corpus", corpus, "--index", index, "--device", "simd", "q").Code, Is.EqualTo(CliApp.ExitPass));
        var (c, _, e) = Run("search", "--index", index, "--int8", "--device", "simd", "q");
        Assert.That(c, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(e, Does.Contain("--int8: the index").And.Contain("has no 'int8' tensor"));
        // a query model of another width than the index
        var (c2, _, e2) = Run("search", "--index", index, "--dims", "64", "--device", "simd", "q");
        Assert.That(c2, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(e2, Does.Contain("--dims: 64 differs from the corpus's D = 384"));
    }

    [Test]
    public void KBeyondTheCorpusReturnsEveryDocumentWithANote()
    {
        var (code, output, err) = Run("search", "--corpus", WriteCorpus(), "cats", "--k", "50", "--device", "simd", "--json");
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
        Assert.That(err, Does.Contain("--k 50 is more than the 6 documents"));
        var results = JsonLines(output).Single().GetProperty("results").EnumerateArray().Select(r => r.GetProperty("index").GetInt64());
        Assert.That(results, Is.EquivalentTo(Enumerable.Range(0, 6).Select(i => (long)i)));
    }
}
