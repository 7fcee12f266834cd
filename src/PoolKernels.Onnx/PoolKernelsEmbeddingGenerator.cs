using System.Collections.Concurrent;
using Microsoft.Extensions.AI;

namespace PoolKernels.Onnx;

/// <summary>
/// A Microsoft.Extensions.AI <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over <see cref="SentenceEmbedder"/>,
/// so PoolKernels embeddings plug into Semantic Kernel and the rest of the .NET AI stack.
/// <see cref="EmbeddingGenerationOptions.Dimensions"/> truncates the pooled vector (Matryoshka) before the pooling's
/// normalization.
/// </summary>
public sealed class PoolKernelsEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly SentenceEmbedder _embedder;
    private readonly SentenceEmbedderOptions _options;
    private readonly ConcurrentDictionary<int, SentenceEmbedder> _truncated = new();
    private readonly EmbeddingGeneratorMetadata _metadata;

    /// <summary>Creates the generator (default: the built-in all-MiniLM-L6-v2 of the package PoolKernels.Onnx.MiniLM,
    /// pooled on the best device present).</summary>
    public PoolKernelsEmbeddingGenerator(SentenceEmbedderOptions? options = null)
    {
        _options = options ?? new SentenceEmbedderOptions();
        _embedder = new SentenceEmbedder(_options);
        _metadata = new EmbeddingGeneratorMetadata("PoolKernels", null, _embedder.ModelId, _embedder.Dimensions);
    }

    /// <inheritdoc/>
    public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        var texts = values.ToList();
        var embedder = _embedder;
        if (options?.Dimensions is int dims && dims != _embedder.Dimensions)
        {
            if (dims < 1 || dims > _embedder.Dimensions)
                throw new ArgumentException($"Dimensions must be in [1, {_embedder.Dimensions}], got {dims}.", nameof(options));
            embedder = _truncated.GetOrAdd(dims, d => new SentenceEmbedder(_options with { Pooling = _embedder.Pooling with { Dims = d } }, _embedder.Device));
        }
        return Task.Run(() =>
        {
            var vectors = embedder.Embed(texts, null, cancellationToken);
            var now = DateTimeOffset.UtcNow;
            return new GeneratedEmbeddings<Embedding<float>>(vectors.Select(v => new Embedding<float>(v) { ModelId = _embedder.ModelId, CreatedAt = now }));
        }, cancellationToken);
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return _metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType == typeof(SentenceEmbedder)) return _embedder;
        return null;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var e in _truncated.Values) e.Dispose();
        _embedder.Dispose();
    }
}
