using System.Globalization;
using PoolKernels.IO;

namespace PoolKernels.Cli;

/// <summary>The precisions of <c>embed --precision</c> and the files of <c>--calibration</c> and <c>--embeddings</c>.</summary>
internal static class QuantizeFiles
{
    public const string Precisions = "float32, int8, uint8, binary or ubinary";

    /// <summary>float32 (null) or a quantize precision; the option's custom parser reports anything else.</summary>
    public static bool TryParsePrecision(string text, out QuantizePrecision? precision)
    {
        precision = null;
        if (text == "float32") return true;
        if (text is "int8" or "uint8" or "binary" or "ubinary") { precision = Quantization.ParsePrecision(text); return true; }
        return false;
    }

    public static string Name(QuantizePrecision? p) => p is { } q ? Quantization.Name(q) : "float32";

    public static bool NeedsRanges(QuantizePrecision? p) => p is QuantizePrecision.Int8 or QuantizePrecision.Uint8;

    /// <summary>
    /// Reads --calibration: a safetensors file whose tensor <c>ranges</c> F32 [2,D] gives the ranges (e.g. the output of
    /// <c>embed --precision int8 --out</c>), else whose tensor <c>embeddings</c> (or only F32 tensor) [M,D] is calibration
    /// data (e.g. the output of <c>embed --out</c>). Errors name the flag, the file and the shape wanted.
    /// </summary>
    public static (HostTensor? Ranges, HostTensor? Calibration) ReadCalibration(string flag, string path, int d)
    {
        using var file = Open(flag, path);
        if (file.Tensors.TryGetValue("ranges", out var ranges))
        {
            if (ranges.DType != DType.F32 || ranges.Rank != 2 || ranges.Shape[0] != 2 || ranges.Shape[1] != d)
                throw new ArgumentException($"{flag}: {path}: 'ranges' must be F32 [2, {d}] for {d}-dimensional embeddings, got {ranges}.");
            return (Copy(ranges), null);
        }
        var data = Matrix(flag, path, file, "embeddings");
        if (data.Shape[1] != d || data.Shape[0] < 1)
            throw new ArgumentException($"{flag}: {path}: calibration embeddings must be F32 [M, {d}] with M >= 1 for {d}-dimensional "
                + $"embeddings, got {data}.");
        return (null, Copy(data));
    }

    /// <summary>Reads float embeddings [N,D] F32: the tensor <c>embeddings</c>, else the file's only F32 rank-2 tensor.</summary>
    public static (HostTensor Embeddings, IReadOnlyDictionary<string, string> Metadata) ReadEmbeddings(string flag, string path)
    {
        using var file = Open(flag, path);
        var m = Matrix(flag, path, file, "embeddings");
        return (Copy(m), file.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value));
    }

    public static SafetensorsFile Open(string flag, string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{flag}: no such file: {path}", path);
        try { return Safetensors.Read(path); }
        catch (FormatException e) { throw new FormatException($"{flag}: {path} is not a readable safetensors file: {e.Message}", e); }
    }

    private static HostTensor Matrix(string flag, string path, SafetensorsFile file, string name)
    {
        if (file.Tensors.TryGetValue(name, out var t))
        {
            if (t.DType != DType.F32 || t.Rank != 2)
                throw new ArgumentException($"{flag}: {path}: '{name}' must be an F32 [N, D] tensor, got {t}.");
            return t;
        }
        var candidates = file.Tensors.Where(kv => kv.Value.DType == DType.F32 && kv.Value.Rank == 2).ToList();
        if (candidates.Count != 1)
            throw new ArgumentException($"{flag}: {path} has no '{name}' tensor and {candidates.Count} F32 rank-2 tensors "
                + $"({string.Join(", ", file.Tensors.Select(kv => $"{kv.Key} {kv.Value}"))}); expected one F32 [N, D] tensor.");
        return candidates[0].Value;
    }

    // a copy: the file's tensors view its (possibly memory-mapped) bytes, released with the file
    private static HostTensor Copy(HostTensor t) => new(t.DType, t.Shape.ToArray(), t.Data.ToArray());

    public static string Count(long v) => v.ToString(CultureInfo.InvariantCulture);
}
