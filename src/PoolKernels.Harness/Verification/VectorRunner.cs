using System.Diagnostics;
using System.Globalization;
using PoolKernels.IO;

namespace PoolKernels.Verification;

/// <summary>The result of one test vector on one device.</summary>
/// <param name="File">The vector file.</param>
/// <param name="Device">Device id.</param>
/// <param name="Op">Operation name from the metadata.</param>
/// <param name="Pass">Every expected output within tolerance.</param>
/// <param name="MaxAbsErr">Largest absolute error over all outputs.</param>
/// <param name="MaxRelErr">Largest relative error over all outputs.</param>
/// <param name="MedianMs">Median wall time of the call over the repeats (host tensors in and out).</param>
/// <param name="Message">Why it failed, or empty.</param>
public sealed record VectorResult(string File, string Device, string Op, bool Pass, double MaxAbsErr, double MaxRelErr, double MedianMs,
    string Message);

/// <summary>Runs safetensors test vectors (docs/operations.md (test vectors)) on a device.</summary>
public static class VectorRunner
{
    /// <summary>Every .safetensors file under the given files or folders, sorted.</summary>
    public static IReadOnlyList<string> Expand(IEnumerable<string> paths)
    {
        var files = new List<string>();
        foreach (var p in paths)
        {
            if (Directory.Exists(p)) files.AddRange(Directory.EnumerateFiles(p, "*.safetensors", SearchOption.AllDirectories));
            else if (System.IO.File.Exists(p)) files.Add(p);
            else throw new FileNotFoundException($"No such file or folder: {p}", p);
        }
        files.Sort(StringComparer.Ordinal);
        return files;
    }

    /// <summary>The op name stored in a vector's metadata.</summary>
    public static string OpOf(string file)
    {
        using var f = Safetensors.Read(file);
        return f.Metadata.TryGetValue("op", out var op) ? op : "";
    }

    /// <summary>The metadata keys the runner reads itself; every other key is an operation parameter.</summary>
    private static readonly string[] RunnerKeys = ["op", "rtol", "atol"];

    /// <summary>
    /// Runs one vector on one device <paramref name="repeat"/> times and compares every expected output. Never throws
    /// for a bad file: one that cannot be read, is not a test vector (no <c>__metadata__.op</c>), names an operation
    /// that is not implemented, or has a malformed tolerance, parameter or input (the message names the key) is a
    /// failed result; so is any exception the operation throws on this device.
    /// </summary>
    public static VectorResult Run(string file, Device device, int repeat = 1)
    {
        ArgumentNullException.ThrowIfNull(device);
        SafetensorsFile f;
        try { f = Safetensors.Read(file); }
        catch (Exception e) when (e is FormatException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            return Failed(file, device, "", $"not a readable safetensors file: {e.Message}");
        }
        using (f) return Run(file, f, device, repeat);
    }

    private static VectorResult Failed(string file, Device device, string op, string message) =>
        new(file, device.Id, op, false, 0, 0, 0, message);

    /// <summary>A tolerance from the metadata, or its default; garbage, negative or NaN values are rejected by key.</summary>
    private static double Tolerance(IReadOnlyDictionary<string, string> metadata, string key, double fallback)
    {
        if (!metadata.TryGetValue(key, out var text)) return fallback;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
            throw new FormatException($"metadata {key} = '{text}' is not a number");
        if (!(v >= 0)) throw new FormatException($"metadata {key} = '{text}' must be >= 0");
        return v;
    }

    private static VectorResult Run(string file, SafetensorsFile f, Device device, int repeat)
    {
        if (!f.Metadata.TryGetValue("op", out var op) || string.IsNullOrWhiteSpace(op))
            return Failed(file, device, "", "not a test vector (no __metadata__.op)");
        var spec = OpRegistry.Find(op);
        if (spec is null) return Failed(file, device, op, $"operation '{op}' is not implemented");
        double rtol, atol;
        try { rtol = Tolerance(f.Metadata, "rtol", 1e-4); atol = Tolerance(f.Metadata, "atol", 1e-5); }
        catch (FormatException e) { return Failed(file, device, op, e.Message); }
        var inputs = f.Tensors.Where(kv => !kv.Key.StartsWith("expected.", StringComparison.Ordinal)).ToDictionary();
        var parameters = f.Metadata.Where(kv => !RunnerKeys.Contains(kv.Key)).ToDictionary();
        var call = new OpCall(inputs, parameters);

        IReadOnlyDictionary<string, HostTensor> outputs;
        var times = new List<double>();
        try
        {
            outputs = spec.Run(device, call);
            for (int i = 0; i < repeat; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                outputs = spec.Run(device, call);
                times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
        }
        catch (Exception e) when (e is ArgumentException or FormatException or NotSupportedException or InvalidOperationException)
        {
            return Failed(file, device, op, $"{e.GetType().Name}: {e.Message}");
        }
        catch (Exception e)
        {
            // Anything else (an overflow a spec let through, a backend's compiler error) is still this file's failure,
            // never the end of the run over the other files.
            return Failed(file, device, op, $"{e.GetType().Name}: {e.Message}");
        }
        times.Sort();
        double median = times.Count == 0 ? 0 : times[times.Count / 2];

        bool pass = true; double maxAbs = 0, maxRel = 0; string msg = "";
        int expectedCount = 0;
        foreach (var (name, expected) in f.Tensors)
        {
            if (!name.StartsWith("expected.", StringComparison.Ordinal)) continue;
            expectedCount++;
            string output = name["expected.".Length..];
            if (!outputs.TryGetValue(output, out var actual)) { pass = false; msg = $"no output '{output}'"; continue; }
            var c = Compare.Tensors(actual, expected, rtol, atol, output);
            maxAbs = Math.Max(maxAbs, c.MaxAbsErr); maxRel = Math.Max(maxRel, c.MaxRelErr);
            if (!c.Pass) { pass = false; if (msg.Length == 0) msg = c.Message; }
        }
        if (expectedCount == 0) { pass = false; msg = "vector has no expected.* tensors"; }
        return new(file, device.Id, op, pass, maxAbs, maxRel, median, msg);
    }
}
