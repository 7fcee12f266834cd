using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using PoolKernels.IO;
using PoolKernels.Onnx;

namespace PoolKernels.Cli;

/// <summary>
/// <c>search</c>: semantic search over a binary (and optionally int8) index, as sentence-transformers'
/// <c>semantic_search_faiss</c> with rescoring. The corpus is embedded (<c>--corpus</c>) or loaded (<c>--embeddings</c>),
/// indexed and saved (<c>--index</c>), or a saved index is loaded (<c>--index</c> alone); the queries are embedded with
/// the same model and answered with <c>binary_search</c>, or Hamming candidates rescored by <c>similarity_topk</c> over
/// the int8 corpus (<c>--int8</c>).
/// </summary>
internal static class SearchCommand
{
    /// <summary>search's options (built in <see cref="CliApp"/>).</summary>
    internal sealed class Options
    {
        public required Option<string?> Queries, Corpus, Embeddings, Index, Calibration, Device, Model, Vocab;
        public required Option<int> K, RescoreMultiplier, Batch, MaxTokens;
        public required Option<int?> Dims;
        public required Option<bool> Int8, NoRescore, Json;

        public IEnumerable<Option> All =>
            [Queries, Corpus, Embeddings, Index, Int8, Calibration, K, RescoreMultiplier, NoRescore, Device, Model, Vocab, Dims, Batch,
                MaxTokens,
                Json];
    }

    public static int Run(Io io, ParseResult p, string[] queryArgs, Options o)
    {
        // ------------------------------------------------ what was asked, checked before anything loads
        var queries = new List<string>(queryArgs);
        if (p.GetValue(o.Queries) is { } queryFile) queries.AddRange(Lines("--queries", queryFile));
        if (queries.Count == 0) throw new ArgumentException("search needs QUERY arguments or --queries queries.txt.");
        string? corpusPath = p.GetValue(o.Corpus), embeddingsPath = p.GetValue(o.Embeddings), indexPath = p.GetValue(o.Index);
        string? calibrationPath = p.GetValue(o.Calibration);
        bool build = corpusPath is not null || embeddingsPath is not null, int8 = p.GetValue(o.Int8), rescore = !p.GetValue(o.NoRescore);
        int k = p.GetValue(o.K), multiplier = p.GetValue(o.RescoreMultiplier);
        if (!build && indexPath is null)
            throw new ArgumentException("search needs a corpus: --corpus lines.txt, --embeddings FILE.safetensors or --index "
                + "FILE.safetensors.");
        if (int8 && !rescore)
            throw new ArgumentException("--int8 rescores the binary candidates; it cannot be combined with --no-rescore.");
        if (calibrationPath is not null && !(build && int8))
            throw new ArgumentException("--calibration sets the int8 ranges of a new index: it needs --int8 and --corpus or --embeddings.");
        foreach (var (flag, path) in new[] { ("--corpus", corpusPath), ("--embeddings", embeddingsPath), ("--calibration", calibrationPath),
                     ("--index", build ? null : indexPath) })
            if (path is not null && !File.Exists(path)) throw new FileNotFoundException($"{flag}: no such file: {path}", path);

        // ------------------------------------------------ the corpus: texts, float vectors or a saved index
        List<string>? docs = corpusPath is null ? null : Lines("--corpus", corpusPath).ToList();
        if (docs is { Count: 0 }) throw new ArgumentException($"--corpus: {corpusPath} has no documents (non-empty lines).");
        HostTensor? vectors = null;
        IReadOnlyDictionary<string, string> sourceMeta = new Dictionary<string, string>();
        if (embeddingsPath is not null)
        {
            (vectors, sourceMeta) = QuantizeFiles.ReadEmbeddings("--embeddings", embeddingsPath);
            if (vectors.Shape[0] == 0) throw new ArgumentException($"--embeddings: {embeddingsPath} has no rows.");
            if (docs is not null && docs.Count != vectors.Shape[0])
                throw new ArgumentException($"--corpus: {corpusPath} has {docs.Count} documents but --embeddings {embeddingsPath} has "
                    + $"{vectors.Shape[0]} rows; with --embeddings, --corpus gives the documents' texts, one per row.");
        }
        var index = build ? null : SearchIndex.Load(indexPath!);
        if (index is not null)
        {
            sourceMeta = index.Metadata;
            if (int8 && index.Int8 is null)
                throw new ArgumentException($"--int8: the index {indexPath} has no 'int8' tensor; build it with --int8.");
            docs = index.ReadCorpus(io);
        }
        int? knownDims = vectors?.Shape[1] ?? index?.Dimensions;
        if (knownDims is { } kd && p.GetValue(o.Dims) is { } asked && asked != kd)
            throw new ArgumentException($"--dims: {asked} differs from the corpus's D = {kd} ({embeddingsPath ?? indexPath}).");

        // ------------------------------------------------ the model (the corpus's pooling when its file names one)
        var pooling = PoolingConfig.MiniLM;
        if (sourceMeta.TryGetValue("mode", out var mode)) pooling = SequencePoolOptions.Parse(mode) with { Normalize = true };
        if (sourceMeta.TryGetValue("normalize", out var norm) && norm == "false") pooling = pooling with { Normalize = false };
        if ((p.GetValue(o.Dims) ?? knownDims) is { } dims) pooling = pooling with { Dims = dims };
        var options = new SentenceEmbedderOptions
        {
            ModelPath = p.GetValue(o.Model),
            VocabPath = p.GetValue(o.Vocab),
            Model = p.GetValue(o.Model) is null && p.GetValue(o.Vocab) is null ? BuiltInModels.AllMiniLML6V2 : null,
            Pooling = pooling,
            Device = p.GetValue(o.Device) ?? "auto",
            BatchSize = p.GetValue(o.Batch),
            MaxTokens = p.GetValue(o.MaxTokens),
        };
        SentenceEmbedder embedder;
        try { embedder = new SentenceEmbedder(options); }
        catch (ArgumentException e) when (knownDims is not null && e.ParamName == "dims")
        {
            throw new ArgumentException($"the corpus ({embeddingsPath ?? indexPath}) has D = {knownDims}, which the model cannot give: "
                + $"{e.Message}", e);
        }
        using var _ = embedder;
        var device = embedder.Device;
        if (sourceMeta.TryGetValue("model", out var model) && model != embedder.ModelId)
            io.Err.WriteLine($"poolkernels: note: the corpus was embedded with '{model}', the queries are embedded with "
                + $"'{embedder.ModelId}'.");

        // ------------------------------------------------ build (and save) the index
        if (index is null)
        {
            var sw = Stopwatch.StartNew();
            if (vectors is null)
            {
                var rows = embedder.Embed(docs!, new SyncProgress(done => io.Progress($"embedding the corpus: {done}/{docs!.Count}")));
                vectors = HostTensor.From(rows.SelectMany(v => v).ToArray(), rows.Length, embedder.Dimensions);
                io.ProgressDone();
                io.Err.WriteLine($"embedded {rows.Length} documents in {sw.Elapsed.TotalSeconds:0.00} s on {device.Id}");
            }
            index = SearchIndex.Build(device, vectors, int8, calibrationPath, corpusPath, sourceMeta, embedder);
            if (indexPath is not null)
            {
                index.Save(indexPath);
                io.Err.WriteLine($"wrote the index to {indexPath}: {index.Describe()}");
            }
        }
        int n = index.Count, d = index.Dimensions;
        if (embedder.Dimensions != d)
            throw new ArgumentException($"the index has D = {d} but the model '{embedder.ModelId}' gives {embedder.Dimensions}-dimensional "
                + "queries; pass the model the corpus was embedded with (--model, --dims).");
        if (k > n)
        {
            io.Err.WriteLine($"poolkernels: note: --k {k} is more than the {n} documents; returning {n}.");
            k = n;
        }

        // ------------------------------------------------ the queries
        var swq = Stopwatch.StartNew();
        var q = embedder.Embed(queries);
        var query = HostTensor.From(q.SelectMany(v => v).ToArray(), q.Length, d);
        double embedSeconds = swq.Elapsed.TotalSeconds;
        (long[], float[]) Search(HostTensor x) =>
            int8 ? Int8Search(device, x, index, k, multiplier) : BinarySearch(device, x, index, k, multiplier, rescore);
        Search(HostTensor.From(query.AsSpan<float>()[..d], 1, d)); // untimed: the first call compiles the kernels
        var sws = Stopwatch.StartNew();
        var (found, scores) = Search(query);
        double searchSeconds = sws.Elapsed.TotalSeconds;

        bool json = p.GetValue(o.Json);
        for (int i = 0; i < queries.Count; i++)
        {
            var results = Enumerable.Range(0, k).Select(r => (Rank: r + 1, Index: found[i * k + r], Score: scores[i * k + r])).ToList();
            if (json)
            {
                Output.Json(io.Out, new
                {
                    query = queries[i],
                    results = results.Select(x => new { rank = x.Rank, index = x.Index, score = x.Score, text = docs?[(int)x.Index] }),
                });
                continue;
            }
            io.Out.WriteLine(queries[i]);
            foreach (var x in results)
                io.Out.WriteLine($"  {x.Rank,3}. [{x.Index}] {Output.Num(x.Score)}{(docs is null ? "" : "  " + docs[(int)x.Index])}");
        }
        string how = int8 ? $"binary candidates x{multiplier}, rescored with int8" : rescore
            ? $"binary, rescored x{multiplier}" : "binary, no rescoring";
        (json ? io.Err : io.Out).WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{queries.Count} queries in {searchSeconds:0.0000} s: {queries.Count / Math.Max(searchSeconds, 1e-9):0.0} queries/s ({how}; "
                + $"{n} "
            + $"documents, {index.BytesPerVector(int8)} bytes per vector; top {k}) on {device.Id}; embedding the queries took "
                + $"{embedSeconds:0.00} s"));
        return CliApp.ExitPass;
    }

    private static IEnumerable<string> Lines(string flag, string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{flag}: no such file: {path}", path);
        return File.ReadLines(path).Where(l => l.Length > 0);
    }

    /// <summary>binary_search: Hamming candidates (k·multiplier), rescored by the float query against the ±1 bits (or not).</summary>
    private static (long[] Index, float[] Score) BinarySearch(Device device, HostTensor query, SearchIndex index, int k, int multiplier,
        bool rescore)
    {
        var (idx, score) = device.BinarySearch(query, index.Bits, k, multiplier, rescore);
        return (idx.AsSpan<long>().ToArray(), score.AsSpan<float>().ToArray());
    }

    /// <summary>
    /// Hamming candidates (hamming_topk of the queries' ubinary bits, k·multiplier of them), rescored by similarity_topk
    /// of the float query over the candidates' int8 rows. The query is scaled by each dimension's step first and the
    /// constant Σ q_d·(start_d + 128.5·step_d) added, so the score is q · x̂ with x̂ the middle of each int8 level's
    /// interval (about the cosine for normalized vectors): plain q · int8 would weigh dimensions by their ranges.
    /// </summary>
    private static (long[] Index, float[] Score) Int8Search(Device device, HostTensor query, SearchIndex index, int k, int multiplier)
    {
        int qn = query.Shape[0], d = index.Dimensions, n = index.Count, c = (int)Math.Min(n, (long)k * multiplier);
        var bits = device.Quantize(query, QuantizePrecision.Ubinary);
        var (cand, _) = device.HammingTopk(bits, index.Bits, c);
        var candidates = cand.AsSpan<long>().ToArray();
        var ranges = index.Ranges!.AsSpan<float>();
        var int8 = index.Int8!.Data.Span;
        var qs = query.AsSpan<float>();
        var found = new long[qn * k];
        var scores = new float[qn * k];
        var rows = new byte[(long)c * d];
        var scaled = new float[d];
        for (int i = 0; i < qn; i++)
        {
            double offset = 0;
            for (int j = 0; j < d; j++)
            {
                double step = ((double)ranges[d + j] - ranges[j]) / 255;
                scaled[j] = (float)(qs[i * d + j] * step);
                offset += qs[i * d + j] * (ranges[j] + 128.5 * step);
            }
            for (int r = 0; r < c; r++) int8.Slice((int)candidates[i * c + r] * d, d).CopyTo(rows.AsSpan(r * d, d));
            var (idx, sc) = device.SimilarityTopk(HostTensor.From(scaled, 1, d), new HostTensor(DType.I8, [c, d], rows), k);
            var local = idx.AsSpan<long>();
            var s = sc.AsSpan<float>();
            for (int r = 0; r < k; r++)
            {
                found[i * k + r] = candidates[i * c + (int)local[r]];
                scores[i * k + r] = (float)(s[r] + offset);
            }
        }
        return (found, scores);
    }

    /// <summary>
    /// A search index as saved by <c>search --index</c>: <c>bits</c> U8 [N, ceil(D/8)] (ubinary: numpy
    /// <c>packbits(x &gt; 0, axis=1)</c>), optionally <c>int8</c> I8 [N,D] and <c>ranges</c> F32 [2,D]; metadata format,
    /// dims, count, model, mode, normalize, and the corpus file with its SHA-256 (to print the documents of a loaded index).
    /// </summary>
    internal sealed class SearchIndex
    {
        public const string FormatName = "poolkernels.search_index";

        public required HostTensor Bits { get; init; }
        public HostTensor? Int8 { get; init; }
        public HostTensor? Ranges { get; init; }
        public required int Dimensions { get; init; }
        public required Dictionary<string, string> Metadata { get; init; }
        public int Count => Bits.Shape[0];

        public int BytesPerVector(bool int8) => int8 ? Bits.Shape[1] + Dimensions : Bits.Shape[1];

        public string Describe() =>
            $"'bits' U8 [{Count}, {Bits.Shape[1]}]" + (Int8 is null ? ""
                : $", 'int8' I8 [{Count}, {Dimensions}], 'ranges' F32 [2, {Dimensions}]");

        public static SearchIndex Build(Device device, HostTensor vectors, bool int8, string? calibrationPath, string? corpusPath,
            IReadOnlyDictionary<string, string> sourceMeta, SentenceEmbedder embedder)
        {
            int n = vectors.Shape[0], d = vectors.Shape[1];
            var meta = new Dictionary<string, string>
            {
                ["format"] = FormatName,
                ["version"] = "1",
                ["dims"] = QuantizeFiles.Count(d),
                ["count"] = QuantizeFiles.Count(n),
                ["model"] = sourceMeta.TryGetValue("model", out var m) ? m : embedder.ModelId,
                ["mode"] = sourceMeta.TryGetValue("mode", out var mode) ? mode : string.Join(",",
                    embedder.Pooling.Modes.Select(SequencePoolOptions.Name)),
                ["normalize"] = sourceMeta.TryGetValue("normalize", out var norm) ? norm : embedder.Pooling.Normalize ? "true" : "false",
            };
            if (corpusPath is not null)
            {
                meta["corpus"] = Path.GetFullPath(corpusPath);
                meta["corpus_sha256"] = Sha256(corpusPath);
            }
            var bits = device.Quantize(vectors, QuantizePrecision.Ubinary);
            if (!int8) return new SearchIndex { Bits = bits, Dimensions = d, Metadata = meta };
            var (ranges, calibration) = calibrationPath is null ? (null, null) : QuantizeFiles.ReadCalibration("--calibration",
                calibrationPath, d);
            var q = QuantizedEmbeddings.Quantize(device, vectors, QuantizePrecision.Int8, ranges, calibration);
            return new SearchIndex { Bits = bits, Int8 = q.Values, Ranges = q.Ranges, Dimensions = d, Metadata = meta };
        }

        public void Save(string path)
        {
            var tensors = new Dictionary<string, HostTensor> { ["bits"] = Bits };
            if (Int8 is not null) { tensors["int8"] = Int8; tensors["ranges"] = Ranges!; }
            Safetensors.Write(path, tensors, Metadata);
        }

        public static SearchIndex Load(string path)
        {
            using var file = QuantizeFiles.Open("--index", path);
            var meta = file.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value);
            if (!file.Tensors.TryGetValue("bits", out var bits) || bits.DType != DType.U8 || bits.Rank != 2 || bits.Shape[0] == 0)
                throw new ArgumentException($"--index: {path} is not a search index: it needs a 'bits' U8 [N, ceil(D/8)] tensor with N >= 1"
                    + $"{(bits is null ? "" : $", got {bits}")}.");
            int w = bits.Shape[1], n = bits.Shape[0], d = 8 * w;
            if (meta.TryGetValue("dims", out var dims) && !(int.TryParse(dims, NumberStyles.None, CultureInfo.InvariantCulture, out d)
                    && d > 0 && (d + 7) / 8 == w))
                throw new ArgumentException($"--index: {path}: metadata dims '{dims}' does not match 'bits' {bits} (ceil(dims/8) bytes "
                    + $"per row).");
            HostTensor? int8 = null, ranges = null;
            if (file.Tensors.TryGetValue("int8", out var i8))
            {
                if (i8.DType != DType.I8 || i8.Rank != 2 || i8.Shape[0] != n || i8.Shape[1] != d)
                    throw new ArgumentException($"--index: {path}: 'int8' must be I8 [{n}, {d}], got {i8}.");
                if (!file.Tensors.TryGetValue("ranges", out var r) || r.DType != DType.F32 || r.Rank != 2 || r.Shape[0] != 2
                    || r.Shape[1] != d)
                    throw new ArgumentException($"--index: {path}: an 'int8' tensor needs 'ranges' F32 [2, {d}]"
                        + $"{(r is null ? "" : $", got {r}")}.");
                int8 = Copy(i8);
                ranges = Copy(r);
            }
            return new SearchIndex { Bits = Copy(bits), Int8 = int8, Ranges = ranges, Dimensions = d, Metadata = meta };
        }

        /// <summary>The documents' texts: the corpus file the index was built from, when it is still there unchanged.</summary>
        public List<string>? ReadCorpus(Io io)
        {
            if (!Metadata.TryGetValue("corpus", out var path)) return null;
            if (!File.Exists(path) || !Metadata.TryGetValue("corpus_sha256", out var sha) || Sha256(path) != sha)
            {
                io.Err.WriteLine($"poolkernels: note: the corpus {path} the index was built from is missing or changed; printing document "
                    + "numbers only.");
                return null;
            }
            var docs = File.ReadLines(path).Where(l => l.Length > 0).ToList();
            return docs.Count == Count ? docs : null;
        }

        private static HostTensor Copy(HostTensor t) => new(t.DType, t.Shape.ToArray(), t.Data.ToArray());

        private static string Sha256(string path)
        {
            using var s = File.OpenRead(path);
            return Convert.ToHexStringLower(SHA256.HashData(s));
        }
    }
}
