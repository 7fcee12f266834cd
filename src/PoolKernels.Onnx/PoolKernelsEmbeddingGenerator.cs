using System.Collections.Concurrent;
using Microsoft.Extensions.AI;

namespace PoolKernels.Onnx;

/// <summary>
/// A Microsoft.Extensions.AI <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over <see cref="SentenceEmbedder"/>,
/// so PoolKernels embeddings plug into Semantic Kernel and the rest of the .NET AI stack.
/// <see cref="EmbeddingGenerationOptions.Dimensions"/> truncates the pooled vector (Matryoshka) before the pooling's
/// normalization. It is also an <c>IEmbeddingGenerator&lt;string, BinaryEmbedding&gt;</c>: the same vectors packed to one
/// bit per dimension by PoolKernels <c>quantize</c> (ubinary), bit d of the <see cref="BinaryEmbedding.Vector"/> being
/// embedding[d] &gt; 0.
/// </summary>
public sealed class PoolKernelsEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>, IEmbeddingGenerator<string,
    BinaryEmbedding>
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
        var embedder = For(options);
        return Task.Run(() =>
        {
            var vectors = embedder.Embed(texts, null, cancellationToken);
            var now = DateTimeOffset.UtcNow;
            return new GeneratedEmbeddings<Embedding<float>>(vectors.Select(v => new Embedding<float>(v)
            {
                ModelId = _embedder.ModelId,
                CreatedAt = now
            }));
        }, cancellationToken);
    }

    /// <summary>Embeds one text. (With two IEmbeddingGenerator interfaces, the Microsoft.Extensions.AI extension methods
    /// cannot infer their type arguments on this class; this and <see cref="GenerateVectorAsync"/> keep the common calls
    /// working on a variable of this type.)</summary>
    public async Task<Embedding<float>> GenerateAsync(string value, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        (await GenerateAsync([value], options, cancellationToken).ConfigureAwait(false))[0];

    /// <summary>Embeds one text and returns its vector.</summary>
    public async Task<ReadOnlyMemory<float>> GenerateVectorAsync(string value, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        (await GenerateAsync(value, options, cancellationToken).ConfigureAwait(false)).Vector;

    /// <summary>Binary embeddings: the float embeddings (truncated to <see cref="EmbeddingGenerationOptions.Dimensions"/>
    /// and normalized as for <c>Embedding&lt;float&gt;</c>) packed by PoolKernels <c>quantize</c> (ubinary); bit d of each
    /// <see cref="BinaryEmbedding.Vector"/> is embedding[d] &gt; 0, and its length is the number of dimensions.</summary>
    public Task<GeneratedEmbeddings<BinaryEmbedding>> GenerateBinaryAsync(IEnumerable<string> values,
        EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        var texts = values.ToList();
        var embedder = For(options);
        return Task.Run(() =>
        {
            var packed = embedder.EmbedQuantized(texts, QuantizePrecision.Ubinary, null, cancellationToken);
            var now = DateTimeOffset.UtcNow;
            return new GeneratedEmbeddings<BinaryEmbedding>(Enumerable.Range(0, packed.Count)
                .Select(i => new BinaryEmbedding(packed.ToBitArray(i)) { ModelId = _embedder.ModelId, CreatedAt = now }));
        }, cancellationToken);
    }

    /// <inheritdoc/>
    Task<GeneratedEmbeddings<BinaryEmbedding>> IEmbeddingGenerator<string, BinaryEmbedding>.GenerateAsync(IEnumerable<string> values,
        EmbeddingGenerationOptions? options, CancellationToken cancellationToken) => GenerateBinaryAsync(values, options,
            cancellationToken);

    private SentenceEmbedder For(EmbeddingGenerationOptions? options)
    {
        if (options?.Dimensions is not int dims || dims == _embedder.Dimensions) return _embedder;
        if (dims < 1 || dims > _embedder.Dimensions)
            throw new ArgumentException($"Dimensions must be in [1, {_embedder.Dimensions}], got {dims}.", nameof(options));
        // the options' quantize ranges have the full width: the truncated embedder has none (binary needs none)
        return _truncated.GetOrAdd(dims, d => new SentenceEmbedder(_options with
        {
            Pooling = _embedder.Pooling with { Dims = d },
            Ranges = null,
            Calibration = null,
        }, _embedder.Device));
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
