using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using PoolKernels.IO;
using PoolKernels.Onnx;

namespace PoolKernels.Cli;

/// <summary><c>embed</c>: sentence embeddings with the built-in all-MiniLM-L6-v2 or any BERT-style ONNX model.
/// Kept apart from the other commands so ONNX Runtime loads only when it is used.</summary>
internal static class EmbedCommand
{
    /// <summary>embed's options (built in <see cref="CliApp"/>).</summary>
    internal sealed class Options
    {
        public required Option<string?> File, Out, Device, Mode, Model, Vocab, PoolingConfig, Head, Layers, LayerMode, Calibration;
        public required Option<string> Precision;
        public required Option<int?> Dims, Heads;
        public required Option<bool> NoNormalize;
        public required Option<int> Batch, MaxTokens;

        public IEnumerable<Option> All =>
            [File, Out, Device, Mode, Dims, NoNormalize, Precision, Calibration, Model, Vocab, PoolingConfig, Batch, MaxTokens, Head, Heads,
                Layers,
                LayerMode];
    }

    public static int Run(Io io, ParseResult p, string[] args, Options o)
    {
        var texts = new List<string>(args);
        if (p.GetValue(o.File) is { } file)
        {
            if (!System.IO.File.Exists(file)) throw new FileNotFoundException($"--file: no such file: {file}", file);
            texts.AddRange(System.IO.File.ReadLines(file).Where(l => l.Length > 0));
        }
        if (texts.Count == 0) throw new ArgumentException("embed needs text arguments or --file lines.txt.");
        QuantizeFiles.TryParsePrecision(p.GetValue(o.Precision)!, out var precision); // checked by its parser
        string? calibrationPath = p.GetValue(o.Calibration);
        if (calibrationPath is not null && !QuantizeFiles.NeedsRanges(precision))
            throw new ArgumentException($"--calibration applies to --precision int8 and uint8 only, not {QuantizeFiles.Name(precision)}.");
        bool normalize = !p.GetValue(o.NoNormalize);
        var pooling = p.GetValue(o.Mode) is { } mode ? SequencePoolOptions.Parse(mode) with { Normalize = true } : PoolingConfig.MiniLM;
        if (!normalize) pooling = pooling with { Normalize = false };
        if (p.GetValue(o.Dims) is { } dims) pooling = pooling with { Dims = dims };
        var options = new SentenceEmbedderOptions
        {
            ModelPath = p.GetValue(o.Model),
            VocabPath = p.GetValue(o.Vocab),
            PoolingConfigPath = p.GetValue(o.PoolingConfig),
            // The built-in model by its type (not looked up by name at run time): the tool carries PoolKernels.Onnx.MiniLM.
            Model = p.GetValue(o.Model) is null && p.GetValue(o.Vocab) is null ? BuiltInModels.AllMiniLML6V2 : null,
            Pooling = pooling,
            Device = p.GetValue(o.Device) ?? "auto",
            BatchSize = p.GetValue(o.Batch),
            MaxTokens = p.GetValue(o.MaxTokens),
        };
        using var embedder = new SentenceEmbedder(options);
        // read before embedding, so a bad file fails at once: its D is the output width (the hidden size with --head)
        var (ranges, calibration) = calibrationPath is null ? (null, null)
            : QuantizeFiles.ReadCalibration("--calibration", calibrationPath, p.GetValue(o.Head) is null
                ? embedder.Dimensions : embedder.HiddenSize);
        var sw = Stopwatch.StartNew();
        var progress = new SyncProgress(done =>
        {
            double rate = done / Math.Max(sw.Elapsed.TotalSeconds, 1e-9);
            int width = 30, fill = (int)(width * (double)done / texts.Count);
            io.Progress($"[{new string('#', fill)}{new string('.', width - fill)}] {done}/{texts.Count}  {rate:0.0} sentences/s");
        });
        float[][] vectors;
        if (p.GetValue(o.Head) is { } headPath)
        {
            // Per-layer: every layer's hidden states -> layer_pool -> multi_layer_pool head from a state dict.
            var heads = p.GetValue(o.Heads) ?? throw new ArgumentException("--head needs --heads N.");
            using var head = PoolingHead.Load(embedder.Device, headPath, heads);
            var layerMode = SequencePoolOptions.ParseMode(p.GetValue(o.LayerMode) ?? "mean");
            vectors = embedder.EmbedWithHead(texts, head, layerMode, SequencePooling.ParseLayers(p.GetValue(o.Layers)), normalize);
            progress.Report(texts.Count);
        }
        else vectors = embedder.Embed(texts, progress);
        sw.Stop();
        int width = vectors.Length > 0 ? vectors[0].Length : embedder.Dimensions;
        io.ProgressDone();
        double seconds = sw.Elapsed.TotalSeconds;
        io.Err.WriteLine($"{texts.Count} sentences in {seconds:0.00} s ({texts.Count / seconds:0.0} sentences/s) on {embedder.Device.Id}; "
            + $"pooling {100 * embedder.PoolingSeconds / seconds:0.00}% of the time");
        var metadata = new Dictionary<string, string>
        {
            ["model"] = embedder.ModelId,
            ["mode"] = string.Join(",", embedder.Pooling.Modes.Select(SequencePoolOptions.Name)),
            ["normalize"] = embedder.Pooling.Normalize ? "true" : "false",
            ["device"] = embedder.Device.Id,
        };
        if (precision is { } q)
        {
            var quantized = QuantizedEmbeddings.Quantize(embedder.Device, vectors, width, q, ranges, calibration);
            metadata["precision"] = Quantization.Name(q);
            metadata["dims"] = QuantizeFiles.Count(width);
            if (calibrationPath is not null) metadata["calibration"] = Path.GetFileName(calibrationPath);
            WriteQuantized(io, p.GetValue(o.Out), texts, quantized, metadata);
            return 0;
        }
        if (p.GetValue(o.Out) is { } output)
        {
            var flat = vectors.SelectMany(v => v).ToArray();
            Safetensors.Write(output, new Dictionary<string, HostTensor> { ["embeddings"] = HostTensor.From(flat, vectors.Length, width) },
                metadata);
            io.Err.WriteLine($"wrote [{vectors.Length}, {width}] F32 'embeddings' to {output}");
        }
        else
        {
            for (int i = 0; i < texts.Count; i++)
                Output.Json(io.Out, new { text = texts[i], embedding = vectors[i] });
        }
        return 0;
    }

    /// <summary>Quantized output: the I8|U8 'embeddings' tensor (packed bits for binary precisions) and, for int8/uint8, the
    /// F32 [2,D] 'ranges' used, into a safetensors file; else JSON lines of the integer (or packed byte) values.</summary>
    private static void WriteQuantized(Io io, string? output, List<string> texts, QuantizedEmbeddings quantized,
        Dictionary<string, string> metadata)
    {
        var values = quantized.Values;
        if (output is not null)
        {
            var tensors = new Dictionary<string, HostTensor> { ["embeddings"] = values };
            if (quantized.Ranges is { } ranges) tensors["ranges"] = ranges;
            Safetensors.Write(output, tensors, metadata);
            io.Err.WriteLine($"wrote [{values.Shape[0]}, {values.Shape[1]}] {values.DType.Name()} 'embeddings' ({metadata["precision"]}, "
                + $"D = {quantized.Dimensions}){(quantized.Ranges is null ? "" : $" and [2, {quantized.Dimensions}] F32 'ranges'")} to "
                    + $"{output}");
            return;
        }
        for (int i = 0; i < texts.Count; i++)
        {
            var row = quantized.Row(i);
            int[] ints = values.DType == DType.I8 ? row.ToArray().Select(b => (int)(sbyte)b).ToArray() : row.ToArray().Select(b
                => (int)b).ToArray();
            Output.Json(io.Out, new { text = texts[i], embedding = ints });
        }
    }
}

/// <summary>Reports on the calling thread, in order (<see cref="Progress{T}"/> posts to the thread pool).</summary>
internal sealed class SyncProgress(Action<int> report) : IProgress<int>
{
    public void Report(int value) => report(value);
}
