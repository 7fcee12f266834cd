using System.Text.Json;
using PoolKernels.Kernels.Sequence;

namespace PoolKernels.Onnx;

/// <summary>
/// How token states become a sentence vector, read from a sentence-transformers model folder:
/// <c>1_Pooling/config.json</c> (pooling_mode_* keys, in sentence-transformers' concatenation order cls, max, mean,
/// mean_sqrt_len, weightedmean, lasttoken) and <c>modules.json</c> (a Normalize module turns on L2 normalization).
/// </summary>
public static class PoolingConfig
{
    /// <summary>all-MiniLM-L6-v2's pooling: mean over kept tokens, then L2 normalization.</summary>
    public static SequencePoolOptions MiniLM => new(SequencePoolMode.Mean) { Normalize = true };

    /// <summary>Reads the pooling of a model folder, or of a <c>config.json</c> file given directly (normalization is then
    /// taken from a <c>modules.json</c> two levels up, when present).</summary>
    /// <exception cref="FileNotFoundException">No pooling config at <paramref name="path"/>.</exception>
    /// <exception cref="ArgumentException">The config selects no mode or is not valid JSON.</exception>
    public static SequencePoolOptions Load(string path)
    {
        string config = Directory.Exists(path) ? Path.Combine(path, "1_Pooling", "config.json") : path;
        if (!File.Exists(config)) throw new FileNotFoundException($"No sentence-transformers pooling config at {config}.", config);
        string root = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetDirectoryName(Path.GetFullPath(config))!)!;
        bool normalize = false;
        var modules = Path.Combine(root, "modules.json");
        if (File.Exists(modules)) normalize = File.ReadAllText(modules).Contains("sentence_transformers.models.Normalize",
            StringComparison.Ordinal);
        return Parse(File.ReadAllText(config), normalize);
    }

    /// <summary>Parses the JSON of <c>1_Pooling/config.json</c>.</summary>
    public static SequencePoolOptions Parse(string json, bool normalize)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new ArgumentException($"pooling config is not valid JSON: {e.Message}", nameof(json)); }
        using (doc)
        {
            bool On(string key) => doc.RootElement.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.True;
            var modes = new List<SequencePoolMode>();
            if (On("pooling_mode_cls_token")) modes.Add(SequencePoolMode.Cls);
            if (On("pooling_mode_max_tokens")) modes.Add(SequencePoolMode.Max);
            if (On("pooling_mode_mean_tokens")) modes.Add(SequencePoolMode.Mean);
            if (On("pooling_mode_mean_sqrt_len_tokens")) modes.Add(SequencePoolMode.MeanSqrtLen);
            if (On("pooling_mode_weightedmean_tokens")) modes.Add(SequencePoolMode.WeightedMean);
            if (On("pooling_mode_lasttoken")) modes.Add(SequencePoolMode.LastToken);
            if (modes.Count == 0) throw new ArgumentException("pooling config enables no pooling_mode_* key.", nameof(json));
            return new SequencePoolOptions([.. modes]) { Normalize = normalize };
        }
    }
}
