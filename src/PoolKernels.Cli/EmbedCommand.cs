using System.Diagnostics;
using System.Globalization;
using PoolKernels.IO;
using PoolKernels.Onnx;

namespace PoolKernels.Cli;

/// <summary><c>embed</c>: sentence embeddings with the built-in all-MiniLM-L6-v2 or any BERT-style ONNX model.
/// Kept apart from the other commands so ONNX Runtime loads only when it is used.</summary>
internal static class EmbedCommand
{
    public static int Run(Args a)
    {
        a.RejectUnknown("file", "out", "device", "mode", "dims", "no-normalize", "model", "vocab", "pooling-config", "batch", "max-tokens",
            "head", "heads", "layers", "layer-mode");
        var texts = new List<string>(a.Positional);
        if (a.Get("file") is { } file)
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"No such file: {file}", file);
            texts.AddRange(File.ReadLines(file).Where(l => l.Length > 0));
        }
        if (texts.Count == 0) throw new ArgumentException("embed needs text arguments or --file lines.txt.");
        var pooling = a.Get("mode") is { } mode ? SequencePoolOptions.Parse(mode) with { Normalize = true } : PoolingConfig.MiniLM;
        if (a.Flag("no-normalize")) pooling = pooling with { Normalize = false };
        if (a.Get("dims") is { } dims) pooling = pooling with { Dims = int.Parse(dims, CultureInfo.InvariantCulture) };
        var options = new SentenceEmbedderOptions
        {
            ModelPath = a.Get("model"), VocabPath = a.Get("vocab"), PoolingConfigPath = a.Get("pooling-config"), Pooling = pooling,
            Device = a.Get("device") ?? "auto", BatchSize = a.Int("batch", 32), MaxTokens = a.Int("max-tokens", 256),
        };
        using var embedder = new SentenceEmbedder(options);
        var sw = Stopwatch.StartNew();
        var progress = new SyncProgress(done =>
        {
            double rate = done / Math.Max(sw.Elapsed.TotalSeconds, 1e-9);
            int width = 30, fill = (int)(width * (double)done / texts.Count);
            Console.Error.Write($"\r[{new string('#', fill)}{new string('.', width - fill)}] {done}/{texts.Count}  {rate:0.0} sentences/s ");
        });
        float[][] vectors;
        if (a.Get("head") is { } headPath)
        {
            // Per-layer: every layer's hidden states -> layer_pool -> multi_layer_pool head from a state dict.
            var heads = a.Get("heads") is { } hs ? int.Parse(hs, CultureInfo.InvariantCulture) : throw new ArgumentException("--head needs --heads N.");
            using var head = PoolingHead.Load(embedder.Device, headPath, heads);
            var layerMode = SequencePoolOptions.ParseMode(a.Get("layer-mode") ?? "mean");
            vectors = embedder.EmbedWithHead(texts, head, layerMode, SequencePooling.ParseLayers(a.Get("layers")), !a.Flag("no-normalize"));
            progress.Report(texts.Count);
        }
        else vectors = embedder.Embed(texts, progress);
        sw.Stop();
        int width = vectors.Length > 0 ? vectors[0].Length : embedder.Dimensions;
        Console.Error.WriteLine($"\r{texts.Count} sentences in {sw.Elapsed.TotalSeconds:0.00} s ({texts.Count / sw.Elapsed.TotalSeconds:0.0} sentences/s) on {embedder.Device.Id}; pooling {100 * embedder.PoolingSeconds / sw.Elapsed.TotalSeconds:0.00}% of the time".PadRight(90));
        if (a.Get("out") is { } output)
        {
            var flat = vectors.SelectMany(v => v).ToArray();
            Safetensors.Write(output, new Dictionary<string, HostTensor> { ["embeddings"] = HostTensor.From(flat, vectors.Length, width) },
                new Dictionary<string, string> { ["model"] = embedder.ModelId, ["mode"] = string.Join(",", embedder.Pooling.Modes.Select(SequencePoolOptions.Name)), ["normalize"] = embedder.Pooling.Normalize ? "true" : "false", ["device"] = embedder.Device.Id });
            Console.Error.WriteLine($"wrote [{vectors.Length}, {width}] F32 'embeddings' to {output}");
        }
        else
        {
            for (int i = 0; i < texts.Count; i++)
                Output.Json(new { text = texts[i], embedding = vectors[i] });
        }
        return 0;
    }
}

/// <summary>Reports on the calling thread, in order (<see cref="Progress{T}"/> posts to the thread pool).</summary>
internal sealed class SyncProgress(Action<int> report) : IProgress<int>
{
    public void Report(int value) => report(value);
}
