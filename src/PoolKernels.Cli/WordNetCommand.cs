using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using PoolKernels.Evaluation;
using PoolKernels.IO;
using PoolKernels.Onnx;

namespace PoolKernels.Cli;

/// <summary>
/// <c>wordnet</c>: the WordNet 3.0 gloss/example retrieval task (<see cref="WordNetTask"/>) as a quality check of the
/// quantized corpora: the examples of a split's synsets are embedded as queries and their definitions as the corpus
/// (the embeddings cached in a safetensors file), and the corpus is searched as float32, int8/uint8 (ranges calibrated
/// on the train split's definitions), binary/ubinary without and with rescoring (<see cref="QuantizedRetrieval"/>).
/// </summary>
internal static class WordNetCommand
{
    /// <summary>wordnet's options (built in <see cref="CliApp"/>).</summary>
    internal sealed class Options
    {
        public required Option<string?> Dir, Split, Precision, Cache, Device, Model, Vocab;
        public required Option<int?> Limit, CalibrationLimit;
        public required Option<int> RescoreMultiplier, Batch, MaxTokens;
        public required Option<bool> NoCache, Json;

        public IEnumerable<Option> All =>
            [Dir, Split, Limit, Precision, RescoreMultiplier, CalibrationLimit, Cache, NoCache, Device, Model, Vocab, Batch, MaxTokens,
                Json];
    }

    public const string PrecisionNames = "float32, int8, uint8, binary, ubinary, binary-int8";

    /// <summary>The methods of a --precision list: binary and ubinary give a row without and one with rescoring.</summary>
    public static List<RetrievalMethod> ParseMethods(string list)
    {
        var methods = new List<RetrievalMethod>();
        foreach (var raw in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            RetrievalMethod[] add = raw switch
            {
                "float32" => [RetrievalMethod.Float32],
                "int8" => [RetrievalMethod.Int8],
                "uint8" => [RetrievalMethod.Uint8],
                "binary" => [RetrievalMethod.Binary, RetrievalMethod.BinaryRescore],
                "ubinary" => [RetrievalMethod.Ubinary, RetrievalMethod.UbinaryRescore],
                "binary-int8" => [RetrievalMethod.BinaryInt8Rescore],
                _ => throw new ArgumentException($"--precision: unknown precision '{raw}'; expected a comma list of {PrecisionNames}."),
            };
            foreach (var m in add) if (!methods.Contains(m)) methods.Add(m);
        }
        if (methods.Count == 0) throw new ArgumentException($"--precision: no precision given; expected a comma list of {PrecisionNames}.");
        return methods;
    }

    public static int Run(Io io, ParseResult p, Options o)
    {
        // ------------------------------------------------ what was asked, checked before anything loads
        string dir = p.GetValue(o.Dir) ?? WordNetTask.DefaultDirectory;
        var split = WordNetTask.ParseSplit(p.GetValue(o.Split) ?? "heldout");
        var methods = ParseMethods(p.GetValue(o.Precision) ?? "float32,int8,binary,binary-int8");
        int multiplier = p.GetValue(o.RescoreMultiplier);
        bool needsCalibration = methods.Any(m => m is RetrievalMethod.Int8 or RetrievalMethod.Uint8 or RetrievalMethod.BinaryInt8Rescore);
        var task = WordNetTask.Load(dir, split, p.GetValue(o.Limit));
        if (task.Synsets.Count == 0) throw new ArgumentException($"the {Name(split)} split of {dir} has no synset with an example.");
        // The int8 ranges come from the train split's definitions (the corpus side), so the held-out split is not seen.
        var calibrationTask = needsCalibration ? WordNetTask.Load(dir, WordNetSplit.Train, p.GetValue(o.CalibrationLimit)) : null;
        var calibrationTexts = calibrationTask?.Documents ?? [];
        if (needsCalibration && calibrationTexts.Count == 0)
            throw new ArgumentException($"int8/uint8 need calibration data, but the train split of {dir} has no synset with an example.");

        // ------------------------------------------------ the model
        var options = new SentenceEmbedderOptions
        {
            ModelPath = p.GetValue(o.Model),
            VocabPath = p.GetValue(o.Vocab),
            Model = p.GetValue(o.Model) is null && p.GetValue(o.Vocab) is null ? BuiltInModels.AllMiniLML6V2 : null,
            Pooling = PoolingConfig.MiniLM,
            Device = p.GetValue(o.Device) ?? "auto",
            BatchSize = p.GetValue(o.Batch),
            MaxTokens = p.GetValue(o.MaxTokens),
        };
        using var embedder = new SentenceEmbedder(options);
        var device = embedder.Device;
        io.Err.WriteLine($"wordnet: {Name(split)} split of {dir}: {task.Documents.Count} synsets (documents), {task.Queries.Count} "
            + $"queries{(needsCalibration ? $"; int8 ranges from {calibrationTexts.Count} train definitions" : "")}");

        // ------------------------------------------------ the embeddings (cached)
        var (queries, documents, calibration) = Embeddings(io, p, o, embedder, task, calibrationTexts);

        // ------------------------------------------------ search and score
        var results = QuantizedRetrieval.Run(device, queries, documents, task.Relevance, methods, calibration, multiplier);
        var reference = results.FirstOrDefault(r => r.Method == RetrievalMethod.Float32)?.Scores;
        static string Pct(double v, double? of) => of is > 0 ? (v / of.Value).ToString("0.0%", CultureInfo.InvariantCulture) : "-";
        static string F(double v) => v.ToString("0.0000", CultureInfo.InvariantCulture);
        if (p.GetValue(o.Json))
        {
            foreach (var r in results)
                Output.Json(io.Out, new
                {
                    method = r.Name,
                    precision = r.Method switch
                    {
                        RetrievalMethod.Float32 => "float32",
                        RetrievalMethod.Int8 => "int8",
                        RetrievalMethod.Uint8 => "uint8",
                        RetrievalMethod.Binary or RetrievalMethod.BinaryRescore => "binary",
                        RetrievalMethod.BinaryInt8Rescore => "binary+int8",
                        _ => "ubinary",
                    },
                    rescore_multiplier =
                        r.Method is RetrievalMethod.BinaryRescore or RetrievalMethod.UbinaryRescore or RetrievalMethod.BinaryInt8Rescore
                            ? multiplier : (int?)null,
                    split = Name(split),
                    documents = task.Documents.Count,
                    queries = task.Queries.Count,
                    bytes_per_vector = r.BytesPerVector,
                    recall_at_1 = r.Scores.RecallAt1,
                    recall_at_10 = r.Scores.RecallAt10,
                    mrr_at_10 = r.Scores.MrrAt10,
                    mrr_at_10_vs_float32 = reference is { MrrAt10: > 0 } ? r.Scores.MrrAt10 / reference.MrrAt10 : (double?)null,
                    recall_at_10_vs_float32 = reference is { RecallAt10: > 0 } ? r.Scores.RecallAt10 / reference.RecallAt10 : (double?)null,
                    model = embedder.ModelId,
                    device = device.Id,
                });
            return CliApp.ExitPass;
        }
        io.Out.WriteLine($"WordNet 3.0 gloss/example retrieval, {Name(split)} split: {task.Documents.Count} documents, "
            + $"{task.Queries.Count} queries; {embedder.ModelId}, top 10 on {device.Id}");
        Output.Table(io.Out, ["method", "bytes/vector", "recall@1", "recall@10", "MRR@10", "R@1 vs f32", "R@10 vs f32", "MRR@10 vs f32"],
            results.Select(r => (IReadOnlyList<string>)
            [
                r.Name, r.BytesPerVector.ToString(CultureInfo.InvariantCulture), F(r.Scores.RecallAt1), F(r.Scores.RecallAt10),
                F(r.Scores.MrrAt10), Pct(r.Scores.RecallAt1, reference?.RecallAt1), Pct(r.Scores.RecallAt10, reference?.RecallAt10),
                Pct(r.Scores.MrrAt10, reference?.MrrAt10),
            ]));
        return CliApp.ExitPass;
    }

    private static string Name(WordNetSplit s) => s switch { WordNetSplit.HeldOut => "heldout", WordNetSplit.Train => "train", _ => "all" };

    /// <summary>
    /// The queries', documents' and calibration definitions' embeddings: read from the cache file when it holds exactly these
    /// texts embedded by this model and pooling (a SHA-256 key over them), else embedded and written there. The file is
    /// safetensors: 'queries' [Q,D], 'documents' [N,D], 'calibration' [M,D] F32, metadata key, model, counts.
    /// </summary>
    private static (HostTensor Queries, HostTensor Documents, HostTensor? Calibration) Embeddings(Io io, ParseResult p, Options o,
        SentenceEmbedder embedder, WordNetTask task, IReadOnlyList<string> calibrationTexts)
    {
        string key = Key(embedder, ModelIdentity(p.GetValue(o.Model)), task.Queries, task.Documents, calibrationTexts);
        string? path = p.GetValue(o.NoCache) ? null
            : Path.Combine(p.GetValue(o.Cache) ?? DefaultCacheDirectory(), $"wordnet-{key[..16]}.safetensors");
        if (path is not null && File.Exists(path))
        {
            try
            {
                using var f = Safetensors.Read(path);
                if (f.Metadata.TryGetValue("key", out var k) && k == key)
                {
                    io.Err.WriteLine($"wordnet: embeddings read from the cache {path}");
                    HostTensor Copy(string name)
                    {
                        var t = f.Tensors[name];
                        return new HostTensor(t.DType, t.Shape.ToArray(), t.Data.ToArray());
                    }
                    return (Copy("queries"), Copy("documents"), calibrationTexts.Count > 0 ? Copy("calibration") : null);
                }
            }
            catch (Exception e) when (e is FormatException or KeyNotFoundException or IOException)
            {
                io.Err.WriteLine($"poolkernels: note: the cache {path} is unreadable ({e.Message}); embedding again.");
            }
        }
        var sw = Stopwatch.StartNew();
        int total = task.Queries.Count + task.Documents.Count + calibrationTexts.Count, before = 0;
        HostTensor Embed(IReadOnlyList<string> texts)
        {
            int start = before;
            var rows = embedder.Embed(texts, new SyncProgress(done => io.Progress($"embedding: {start + done}/{total}")));
            before += texts.Count;
            return HostTensor.From(rows.SelectMany(v => v).ToArray(), rows.Length, embedder.Dimensions);
        }
        var queries = Embed(task.Queries);
        var documents = Embed(task.Documents);
        var calibration = calibrationTexts.Count > 0 ? Embed(calibrationTexts) : null;
        io.ProgressDone();
        io.Err.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wordnet: embedded {total} texts in {sw.Elapsed.TotalSeconds:0.0} s on {embedder.Device.Id}"));
        if (path is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var tensors = new Dictionary<string, HostTensor> { ["queries"] = queries, ["documents"] = documents };
            if (calibration is not null) tensors["calibration"] = calibration;
            var meta = new Dictionary<string, string>
            {
                ["format"] = "poolkernels.wordnet_embeddings",
                ["key"] = key,
                ["model"] = embedder.ModelId,
                ["split"] = Name(task.Split),
                ["queries"] = QuantizeFiles.Count(task.Queries.Count),
                ["documents"] = QuantizeFiles.Count(task.Documents.Count),
                ["calibration"] = QuantizeFiles.Count(calibrationTexts.Count),
            };
            string temp = path + ".tmp";
            Safetensors.Write(temp, tensors, meta);
            File.Move(temp, path, overwrite: true);
            io.Err.WriteLine($"wordnet: embeddings cached in {path}");
        }
        return (queries, documents, calibration);
    }

    private static string DefaultCacheDirectory()
    {
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string root = !string.IsNullOrEmpty(xdg) ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "poolkernels", "wordnet");
    }

    /// <summary>A --model file by its full path, size and write time (two models of the same name differ), or "built-in".</summary>
    private static string ModelIdentity(string? modelPath)
    {
        if (modelPath is null) return "built-in";
        var f = new FileInfo(modelPath);
        return f.Exists ? string.Create(CultureInfo.InvariantCulture, $"{f.FullName}|{f.Length}|{f.LastWriteTimeUtc.Ticks}") : f.FullName;
    }

    private static string Key(SentenceEmbedder embedder, string modelIdentity, params IReadOnlyList<string>[] lists)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string s) { h.AppendData(Encoding.UTF8.GetBytes(s)); h.AppendData([0]); }
        Add(embedder.ModelId);
        Add(modelIdentity);
        Add(string.Join(",", embedder.Pooling.Modes.Select(SequencePoolOptions.Name)));
        Add(embedder.Pooling.Normalize ? "normalize" : "raw");
        Add(QuantizeFiles.Count(embedder.Dimensions));
        Add(QuantizeFiles.Count(embedder.MaxTokens));
        foreach (var list in lists)
        {
            Add(QuantizeFiles.Count(list.Count));
            foreach (var s in list) Add(s);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }
}
