using System.Text.Json;
using NUnit.Framework;
using PoolKernels.Cli;
using PoolKernels.Evaluation;

namespace PoolKernels.Tests;

/// <summary>
/// The WordNet gloss/example retrieval task (issues 17/18): the parser and the split on the committed subset
/// (tests/data/wordnet, 285 synset lines of WordNet 3.0 with its licence), the metrics on hand-made rankings, the quantized
/// search on synthetic embeddings, and <c>poolkernels wordnet</c> end to end on the subset with the built-in model.
/// </summary>
[NonParallelizable]
public class WordNetTests
{
    private static string Subset => Path.Combine(Paths.RepoRoot(), "tests", "data", "wordnet");

    private static WordNetSynset Find(WordNetTask task, string key) => task.Synsets.Single(s => s.Key == key);

    // ---------------------------------------------------------------- the parser

    [Test]
    public void TheSubsetHasTheExpectedCounts()
    {
        // 285 synset lines; 109 of them have no example (mostly the top of the noun hierarchy) and take no part.
        var all = WordNetTask.Load(Subset, WordNetSplit.All);
        var train = WordNetTask.Load(Subset, WordNetSplit.Train);
        var heldOut = WordNetTask.Load(Subset, WordNetSplit.HeldOut);
        Assert.That((all.Synsets.Count, all.Queries.Count), Is.EqualTo((176, 252)));
        Assert.That((train.Synsets.Count, train.Queries.Count), Is.EqualTo((142, 209)));
        Assert.That((heldOut.Synsets.Count, heldOut.Queries.Count), Is.EqualTo((34, 43)));
        Assert.That(all.Synsets.Select(s => s.Pos).Distinct(), Is.EquivalentTo(new[] { 'n', 'v', 'a', 'r' }));
        foreach (var t in new[] { all, train, heldOut })
        {
            Assert.That(t.Documents, Has.Count.EqualTo(t.Synsets.Count));
            Assert.That(t.QueryDocument, Has.Count.EqualTo(t.Queries.Count));
            for (int q = 0; q < t.Queries.Count; q++)
                Assert.That(t.Synsets[t.QueryDocument[q]].Examples, Does.Contain(t.Queries[q]));
            Assert.That(t.Relevance.Select(r => r.Single()), Is.EqualTo(t.QueryDocument));
        }
    }

    [Test]
    public void GlossesSplitIntoDefinitionAndExamples()
    {
        var all = WordNetTask.Load(Subset, WordNetSplit.All);
        // several examples, and the words with their hex count
        var breathe = Find(all, "v:00001740");
        Assert.That(breathe.Words, Is.EqualTo(new[] { "breathe", "take_a_breath", "respire", "suspire" }));
        Assert.That(breathe.Definition, Is.EqualTo("draw air into, and expel out of, the lungs"));
        Assert.That(breathe.Examples, Is.EqualTo(new[] { "I can breathe better when the air is clean", "The patient is respiring" }));
        var able = Find(all, "a:00001740");
        Assert.That(able.Definition,
            Is.EqualTo("(usually followed by `to') having the necessary means or skill or know-how or authority to do something"));
        Assert.That(able.Examples, Is.EqualTo(new[]
        {
            "able to swim", "she was able to program her computer", "we were at last able to buy a car",
            "able to get a grant for the project",
        }));
        // no quote is left in a definition except those WordNet writes inside it ("a workplace; as in the expression
        // "on the job"" has no example and takes no part)
        Assert.That(all.Documents.Where(d => d.Contains('"')), Is.EqualTo(new[]
        {
            "as the agent of or on someone's part (usually expressed as \"on behalf of\" rather than \"in behalf of\")",
        }));
        Assert.That(all.Queries.All(q => q.Length > 0 && q[0] != '"' && q[^1] != '"'), Is.True);
    }

    [Test]
    public void ASynsetWithoutExamplesIsExcluded()
    {
        var entity = WordNetTask.ParseLine(File.ReadLines(Path.Combine(Subset, "data.noun")).First(l => l.StartsWith("00001740 ")), 'n');
        Assert.That(entity.Words, Is.EqualTo(new[] { "entity" }));
        Assert.That(entity.Examples, Is.Empty);
        Assert.That(entity.Definition, Does.StartWith("that which is perceived or known or inferred"));
        Assert.That(WordNetTask.Load(Subset, WordNetSplit.All).Synsets.Any(s => s.Key == "n:00001740"), Is.False);
    }

    [TestCase("draw air into the lungs; \"I can breathe\"; \"The patient is respiring\"", "draw air into the lungs",
        new[] { "I can breathe", "The patient is respiring" })]
    [TestCase("the act of putting one thing in the place of another: \"he sent Smith in for Jones\"",
        "the act of putting one thing in the place of another", new[] { "he sent Smith in for Jones" })]
    [TestCase("a permutation; \"the permutations...taking place\"- Henry Miller", "a permutation",
        new[] { "the permutations...taking place" })]
    [TestCase("rights; \"every right implies a responsibility; every opportunity, an obligation\"--John D.Rockefeller Jr", "rights",
        new[] { "every right implies a responsibility; every opportunity, an obligation" })]
    [TestCase("as in the expression \"on the job\"", "as in the expression \"on the job\"", new string[0])]
    [TestCase("a definition; of two parts", "a definition; of two parts", new string[0])]
    [TestCase("", "", new string[0])]
    public void SplitGlossCases(string gloss, string definition, string[] examples)
    {
        var (d, e) = WordNetTask.SplitGloss(gloss);
        Assert.That(d, Is.EqualTo(definition));
        Assert.That(e, Is.EqualTo(examples));
    }

    [Test]
    public void EdgeCasesOfTheSubsetParse()
    {
        var all = WordNetTask.Load(Subset, WordNetSplit.All);
        var substitution = all.Synsets.Single(s => s.Definition == "the act of putting one thing or person in the place of another");
        Assert.That(substitution.Examples.Single(), Does.StartWith("he sent Smith in for Jones"));
        Assert.That(all.Queries, Does.Contain("the permutations...taking place in the physical world"));
        Assert.That(all.Queries.Any(q => q.Contains("Henry Miller")), Is.False);
    }

    [Test]
    public void BadLinesAndMissingFoldersAreReported()
    {
        Assert.That(() => WordNetTask.ParseLine("not a synset | gloss", 'n'), Throws.InstanceOf<FormatException>());
        Assert.That(() => WordNetTask.ParseLine("00001740 03 n zz entity 0 000 | gloss", 'n'), Throws.InstanceOf<FormatException>());
        var e = Assert.Throws<DirectoryNotFoundException>(() => WordNetTask.Load("/nonexistent/wordnet"));
        Assert.That(e!.Message, Does.Contain("apt-get install wordnet-base"));
        Assert.That(() => WordNetTask.ParseSplit("dev"), Throws.ArgumentException);
    }

    // ---------------------------------------------------------------- the split

    [Test]
    public void TheSplitIsDeterministicAndDisjoint()
    {
        // FNV-1a-64 of "n:00001740" (checked against the Python one-liner of WordNetTask's documentation)
        Assert.That(WordNetTask.Fnv1a64("n:00001740"), Is.EqualTo(6735889452028699721UL));
        Assert.That(WordNetTask.IsHeldOut("n:00001740"), Is.False); // 6735889452028699721 mod 100 = 21
        var all = WordNetTask.Load(Subset, WordNetSplit.All).Synsets.Select(s => s.Key).ToList();
        var train = WordNetTask.Load(Subset, WordNetSplit.Train).Synsets.Select(s => s.Key).ToList();
        var heldOut = WordNetTask.Load(Subset, WordNetSplit.HeldOut).Synsets.Select(s => s.Key).ToList();
        Assert.That(train.Intersect(heldOut), Is.Empty);
        Assert.That(train.Concat(heldOut), Is.EquivalentTo(all));
        Assert.That(WordNetTask.Load(Subset, WordNetSplit.HeldOut).Synsets.Select(s => s.Key), Is.EqualTo(heldOut));
        Assert.That(heldOut.All(WordNetTask.IsHeldOut) && !train.Any(WordNetTask.IsHeldOut), Is.True);
    }

    [Test]
    public void LimitKeepsTheSynsetsWithTheSmallestHashInFileOrder()
    {
        var all = WordNetTask.Load(Subset, WordNetSplit.All);
        var ten = WordNetTask.Load(Subset, WordNetSplit.All, limit: 10);
        var expected = all.Synsets.OrderBy(s => WordNetTask.Fnv1a64(s.Key)).Take(10).Select(s => s.Key).ToHashSet();
        Assert.That(ten.Synsets.Select(s => s.Key), Is.EquivalentTo(expected));
        var order = ten.Synsets.Select(s => all.Synsets.ToList().FindIndex(x => x.Key == s.Key)).ToList();
        Assert.That(order, Is.Ordered);
        Assert.That(WordNetTask.Load(Subset, WordNetSplit.All, limit: 10).Queries, Is.EqualTo(ten.Queries));
    }

    [Test]
    public void OnTheFullWordNetAboutAFifthIsHeldOut()
    {
        if (!File.Exists(Path.Combine(WordNetTask.DefaultDirectory, "data.noun")))
            Assert.Ignore("WordNet 3.0 is not installed (apt-get install wordnet-base); the committed subset covers the parser.");
        var all = WordNetTask.Load(WordNetTask.DefaultDirectory, WordNetSplit.All);
        var heldOut = WordNetTask.Load(WordNetTask.DefaultDirectory, WordNetSplit.HeldOut);
        // 117659 synsets, 32898 with an example (6654 held out, 9738 queries; also counted by a Python reading of the files)
        Assert.That(all.Synsets.Count, Is.EqualTo(32898));
        Assert.That((heldOut.Synsets.Count, heldOut.Queries.Count), Is.EqualTo((6654, 9738)));
        Assert.That((double)heldOut.Synsets.Count / all.Synsets.Count, Is.EqualTo(0.2).Within(0.01));
    }

    // ---------------------------------------------------------------- the metrics

    [Test]
    public void MetricsOnAHandMadeScoreMatrix()
    {
        // 4 queries x 12 documents; the ranking comes from similarity_topk of the score rows against the identity
        // (so score[q, n] = query_q · e_n), top 10.
        float[,] s = new float[4, 12];
        for (int q = 0; q < 4; q++)
            for (int n = 0; n < 12; n++)
                s[q, n] = 12 - n; // documents 0, 1, 2, ... in this order unless changed below
        s[1, 5] = 100;            // query 1: document 5 first
        s[3, 11] = -1;            // query 3: document 11 last (outside the top 10)
        int[][] relevant = [[0], [0], [3], [11]];
        // ranks of the relevant document: q0 1, q1 2 (5 then 0), q2 4, q3 12 (not in the top 10)
        var flat = new float[4 * 12];
        for (int q = 0; q < 4; q++) for (int n = 0; n < 12; n++) flat[q * 12 + n] = s[q, n];
        var identity = new float[12 * 12];
        for (int n = 0; n < 12; n++) identity[n * 12 + n] = 1;
        var device = TestDevices.Get("reference");
        var (index, _) = device.SimilarityTopk(HostTensor.From(flat, 4, 12), HostTensor.From(identity, 12, 12), 10);
        var m = RetrievalMetrics.Evaluate(index.AsSpan<long>(), 10, relevant);
        Assert.That(m.Queries, Is.EqualTo(4));
        Assert.That(m.RecallAt1, Is.EqualTo(1 / 4.0).Within(1e-12));
        Assert.That(m.RecallAt10, Is.EqualTo(3 / 4.0).Within(1e-12));
        Assert.That(m.MrrAt10, Is.EqualTo((1 + 1 / 2.0 + 1 / 4.0 + 0) / 4).Within(1e-12));
    }

    [Test]
    public void MetricsWithSeveralRelevantDocumentsAndShortRankings()
    {
        // width 3: ranks beyond 3 are misses; two relevant documents: recall is the share found, MRR the first hit
        long[] ranked = [7, 2, 9, /**/ 1, 1, 4];
        var m = RetrievalMetrics.Evaluate(ranked, 3, [[2, 9], [4]]);
        Assert.That(m.RecallAt1, Is.EqualTo(0));
        Assert.That(m.RecallAt10, Is.EqualTo((1.0 + 1.0) / 2));
        Assert.That(m.MrrAt10, Is.EqualTo((1 / 2.0 + 1 / 3.0) / 2).Within(1e-12));
        Assert.That(() => RetrievalMetrics.Evaluate(ranked, 4, [[2], [4]]), Throws.ArgumentException);
        Assert.That(() => RetrievalMetrics.Evaluate(ranked, 3, [[2], []]), Throws.ArgumentException);
    }

    // ---------------------------------------------------------------- the quantized search (synthetic embeddings)

    [Test]
    public void QuantizedSearchOnSyntheticEmbeddings()
    {
        // 200 normalized documents in 64 dimensions; each query is its document plus a little noise, so float32 finds
        // every one first and the quantized corpora nearly every one.
        const int n = 200, d = 64;
        var rng = new Random(7);
        float[] Normalized(IEnumerable<float> v)
        {
            var a = v.ToArray();
            float s = MathF.Sqrt(a.Sum(x => x * x));
            return a.Select(x => x / s).ToArray();
        }
        float[] RandomUnit() => Normalized(Enumerable.Range(0, d).Select(_ => (float)(rng.NextDouble() * 2 - 1)));
        var docs = Enumerable.Range(0, n).Select(_ => RandomUnit()).ToArray();
        var queries = docs.Select(x => Normalized(x.Select(v => v + (float)(rng.NextDouble() - 0.5) * 0.05f))).ToArray();
        var calibration = Enumerable.Range(0, 50).Select(_ => RandomUnit()).ToArray();
        HostTensor T(float[][] rows) => HostTensor.From(rows.SelectMany(r => r).ToArray(), rows.Length, d);
        var relevant = Enumerable.Range(0, n).Select(i => new[] { i }).ToArray();
        var methods = Enum.GetValues<RetrievalMethod>();
        var results = QuantizedRetrieval.Run(TestDevices.Get("simd"), T(queries), T(docs), relevant, methods, T(calibration));
        var by = results.ToDictionary(r => r.Method);
        Assert.That(by[RetrievalMethod.Float32].Scores.RecallAt1, Is.EqualTo(1));
        Assert.That(by[RetrievalMethod.Int8].Scores.RecallAt1, Is.GreaterThan(0.95));
        Assert.That(by[RetrievalMethod.Int8].Scores, Is.EqualTo(by[RetrievalMethod.Uint8].Scores));
        Assert.That(by[RetrievalMethod.Binary].Scores, Is.EqualTo(by[RetrievalMethod.Ubinary].Scores));
        Assert.That(by[RetrievalMethod.BinaryRescore].Scores, Is.EqualTo(by[RetrievalMethod.UbinaryRescore].Scores));
        Assert.That(by[RetrievalMethod.BinaryRescore].Scores.RecallAt10,
            Is.GreaterThanOrEqualTo(by[RetrievalMethod.Binary].Scores.RecallAt10));
        Assert.That(by[RetrievalMethod.BinaryRescore].Scores.RecallAt1, Is.GreaterThan(0.9));
        Assert.That(by[RetrievalMethod.BinaryInt8Rescore].Scores.RecallAt1, Is.GreaterThan(0.95));
        Assert.That(results.Select(r => r.BytesPerVector), Is.EqualTo(new[] { 256, 64, 64, 8, 8, 8, 8, 72 }));
        Assert.That(results.Select(r => r.Name), Does.Contain("binary+rescore x4"));
        // every method agrees across reference and simd
        var reference = QuantizedRetrieval.Run(TestDevices.Get("reference"), T(queries), T(docs), relevant, methods, T(calibration));
        Assert.That(reference.Select(r => r.Scores), Is.EqualTo(results.Select(r => r.Scores)));
    }

    // ---------------------------------------------------------------- poolkernels wordnet

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Test]
    public void WordNetCommandOnTheSubset()
    {
        string cache = Path.Combine(Path.GetTempPath(), "pk-wordnet-" + Guid.NewGuid().ToString("N"));
        try
        {
            string[] args =
                ["wordnet", "--dir", Subset, "--device", "simd", "--cache", cache, "--precision", "float32,int8,binary", "--json"];
            var (code, stdout, stderr) = Run(args);
            Assert.That(code, Is.EqualTo(CliApp.ExitPass), stderr);
            Assert.That(stderr, Does.Contain("34 synsets (documents), 43 queries").And.Contain("142 train definitions"));
            Assert.That(Directory.GetFiles(cache, "wordnet-*.safetensors"), Has.Length.EqualTo(1));
            var rows = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            Assert.That(rows.Select(r => r.GetProperty("method").GetString()),
                Is.EqualTo(new[] { "float32", "int8", "binary", "binary+rescore x4" }));
            Assert.That(rows.Select(r => r.GetProperty("bytes_per_vector").GetInt32()), Is.EqualTo(new[] { 1536, 384, 48, 48 }));
            Assert.That(rows.Select(r => r.GetProperty("precision").GetString()),
                Is.EqualTo(new[] { "float32", "int8", "binary", "binary" }));
            Assert.That(rows[3].GetProperty("rescore_multiplier").GetInt32(), Is.EqualTo(4));
            Assert.That(rows[2].GetProperty("rescore_multiplier").ValueKind, Is.EqualTo(JsonValueKind.Null));
            var f32 = rows[0];
            Assert.That(f32.GetProperty("queries").GetInt32(), Is.EqualTo(43));
            // 34 documents: the model does far better than chance
            Assert.That(f32.GetProperty("recall_at_10").GetDouble(), Is.GreaterThan(0.6));
            Assert.That(f32.GetProperty("mrr_at_10_vs_float32").GetDouble(), Is.EqualTo(1));
            foreach (var r in rows)
                Assert.That(r.GetProperty("mrr_at_10").GetDouble(), Is.InRange(0.0, 1.0));

            // the second run reads the embeddings from the cache and prints the same numbers (as a table here)
            var (code2, table, stderr2) = Run(args[..^1]);
            Assert.That(code2, Is.EqualTo(CliApp.ExitPass), stderr2);
            Assert.That(stderr2, Does.Contain("read from the cache"));
            Assert.That(table, Does.Contain("heldout split: 34 documents, 43 queries").And.Contain("binary+rescore x4"));
            string mrr = f32.GetProperty("mrr_at_10").GetDouble().ToString("0.0000", System.Globalization.CultureInfo.InvariantCulture);
            Assert.That(table, Does.Contain(mrr));
        }
        finally
        {
            if (Directory.Exists(cache)) Directory.Delete(cache, recursive: true);
        }
    }

    [Test]
    public void WordNetCommandUsageErrors()
    {
        var (code, _, err) = Run("wordnet", "--dir", "/nonexistent/wordnet", "--no-cache");
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("wordnet-base"));
        (code, _, err) = Run("wordnet", "--dir", Subset, "--precision", "float16", "--no-cache");
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("unknown precision 'float16'"));
        (code, _, err) = Run("wordnet", "--dir", Subset, "--split", "dev", "--no-cache");
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("unknown split 'dev'"));
        (code, _, err) = Run("wordnet", "--limit", "0");
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("--limit"));
    }
}
