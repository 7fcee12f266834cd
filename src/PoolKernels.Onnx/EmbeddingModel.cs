using System.Reflection;

namespace PoolKernels.Onnx;

/// <summary>
/// A BERT-style ONNX encoder and its WordPiece vocab: the model a <see cref="SentenceEmbedder"/> runs. Both are read
/// when an embedder is created (each embedder reads them again), not when the model is made.
/// </summary>
/// <remarks>
/// <see cref="FromFiles"/> names a model on disk. The separate package <c>PoolKernels.Onnx.MiniLM</c> provides the
/// built-in all-MiniLM-L6-v2 as <c>BuiltInModels.AllMiniLML6V2</c>; with that package installed, options that name
/// no model use it (see <see cref="SentenceEmbedderOptions.Model"/>).
/// </remarks>
public sealed class EmbeddingModel
{
    /// <summary>The assembly and type that <see cref="BuiltIn"/> looks for.</summary>
    internal const string BuiltInAssembly = "PoolKernels.Onnx.MiniLM", BuiltInType = "PoolKernels.Onnx.BuiltInModels";

    private readonly Func<byte[]> _onnx;
    private readonly Func<string> _vocab;

    /// <summary>A model whose bytes and vocab come from the given functions (called once per embedder created).</summary>
    /// <param name="id">A name for the model, e.g. "all-MiniLM-L6-v2" (reported as the embeddings' model id).</param>
    /// <param name="onnx">Returns the ONNX file's bytes.</param>
    /// <param name="vocab">Returns the text of the WordPiece <c>vocab.txt</c> (one token per line).</param>
    public EmbeddingModel(string id, Func<byte[]> onnx, Func<string> vocab)
    {
        ArgumentException.ThrowIfNullOrEmpty(id);
        ArgumentNullException.ThrowIfNull(onnx);
        ArgumentNullException.ThrowIfNull(vocab);
        Id = id;
        _onnx = onnx;
        _vocab = vocab;
    }

    /// <summary>The model's name.</summary>
    public string Id { get; }

    /// <summary>Reads the ONNX file's bytes.</summary>
    public byte[] ReadOnnx() => _onnx();

    /// <summary>Reads the vocab's text.</summary>
    public string ReadVocab() => _vocab();

    /// <summary>A model on disk: <paramref name="modelPath"/> (.onnx) and its <c>vocab.txt</c>, by default the one in the
    /// model's folder. The id is the model's file name without extension. Missing files throw
    /// <see cref="FileNotFoundException"/> when an embedder reads them.</summary>
    public static EmbeddingModel FromFiles(string modelPath, string? vocabPath = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        string vocab = vocabPath ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, "vocab.txt");
        return new EmbeddingModel(Path.GetFileNameWithoutExtension(modelPath), () => Read(modelPath, "model", File.ReadAllBytes),
            () => Read(vocab, "vocab", File.ReadAllText));
    }

    private static T Read<T>(string path, string what, Func<string, T> read) =>
        File.Exists(path) ? read(path) : throw new FileNotFoundException($"The {what} file {path} does not exist.", path);

    /// <summary>
    /// The built-in model of the package <c>PoolKernels.Onnx.MiniLM</c> (all-MiniLM-L6-v2), found by loading its
    /// assembly by name: PoolKernels.Onnx itself does not depend on it. Throws <see cref="InvalidOperationException"/>
    /// saying what to do when that package is not installed.
    /// </summary>
    public static EmbeddingModel BuiltIn => FindBuiltIn(BuiltInAssembly);

    internal static EmbeddingModel FindBuiltIn(string assemblyName)
    {
        Assembly asm;
        try { asm = Assembly.Load(new AssemblyName(assemblyName)); }
        catch (Exception e) when (e is FileNotFoundException or FileLoadException or BadImageFormatException)
        {
            throw new InvalidOperationException("No model was given and the built-in one is not installed: set "
                + "SentenceEmbedderOptions.ModelPath (and VocabPath) or Model, or add the package PoolKernels.Onnx.MiniLM "
                + $"(all-MiniLM-L6-v2). ({assemblyName}: {e.Message})", e);
        }
        var property = asm.GetType(BuiltInType)?.GetProperty("Default", BindingFlags.Public | BindingFlags.Static);
        return property?.GetValue(null) as EmbeddingModel
            ?? throw new InvalidOperationException($"{assemblyName} has no {BuiltInType}.Default model: a mismatched version?");
    }
}
