using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace PoolKernels;

/// <summary>One tuned configuration: the best parameters found for an operation at a shape bucket on a device.</summary>
/// <param name="Device">The device's name (e.g. the GPU's model), so a cache follows the hardware, not the id.</param>
/// <param name="Op">Operation name.</param>
/// <param name="Bucket">Shape bucket (see <see cref="Tuning.Bucket"/>).</param>
/// <param name="Params">Parameter values by name.</param>
/// <param name="MedianMs">Median time of the winner when tuned.</param>
public sealed record TunedEntry(string Device, string Op, string Bucket, Dictionary<string, int> Params, double MedianMs);

/// <summary>
/// Per-device kernel parameters found by <c>poolkernels tune</c>, stored as JSON keyed by device name, operation and
/// shape bucket. The library loads the cache once, at first use, from <c>$POOLKERNELS_TUNING_CACHE</c> or
/// <c>$XDG_CACHE_HOME/poolkernels/tuning.json</c> (default <c>~/.cache/poolkernels/tuning.json</c>). A corrupt or
/// foreign file is ignored with a warning on stderr; the built-in defaults are then used.
/// </summary>
public static class Tuning
{
    /// <summary>The cache file format version.</summary>
    public const int FormatVersion = 1;
    private const string Magic = "poolkernels-tuning";

    private static readonly ConcurrentDictionary<(string Device, string Op, string Bucket), Dictionary<string, int>> Entries = new();
    private static readonly ConcurrentDictionary<(string Device, string Op, int A, int B), Dictionary<string, int>?> Resolved = new();
    private static int _loaded;
    [ThreadStatic] private static Dictionary<string, int>? t_override;

    /// <summary>Where the cache lives.</summary>
    public static string DefaultPath()
    {
        var env = Environment.GetEnvironmentVariable("POOLKERNELS_TUNING_CACHE");
        if (!string.IsNullOrEmpty(env)) return env;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = string.IsNullOrEmpty(xdg) ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile),
            ".cache") : xdg;
        return Path.Combine(root, "poolkernels", "tuning.json");
    }

    /// <summary>The bucket of two characteristic sizes: their ceil(log2), e.g. "14x10".</summary>
    public static string Bucket(int a, int b) => $"{a}x{b}";

    /// <summary>ceil(log2(max(n,1))): the bucket coordinate of a size.</summary>
    public static int Log2Bucket(long n) => n <= 1 ? 0 : 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)(n - 1));

    /// <summary>The tuned value of <paramref name="param"/> for <paramref name="op"/> on <paramref name="device"/> at sizes
    /// (<paramref name="sizeA"/>, <paramref name="sizeB"/>), or <paramref name="fallback"/>. Allocation-free after the first
    /// lookup of a bucket.</summary>
    public static int Get(Device device, string op, long sizeA, long sizeB, string param, int fallback)
    {
        if (t_override is { } o) return o.TryGetValue(param, out int ov) ? ov : fallback;
        EnsureLoaded();
        if (Entries.IsEmpty) return fallback;
        int a = Log2Bucket(sizeA), b = Log2Bucket(sizeB);
        (string Device, string Op, int A, int B) key = (device.Info.Name, op, a, b);
        if (!Resolved.TryGetValue(key, out var p))
            p = Resolved.GetOrAdd(key, static k => Entries.GetValueOrDefault((k.Device, k.Op, Bucket(k.A, k.B))));
        return p is not null && p.TryGetValue(param, out int v) ? v : fallback;
    }

    /// <summary>Runs <paramref name="action"/> on this thread with <paramref name="parameters"/> in force (the tuner's
    /// candidates, tests).</summary>
    public static void With(Dictionary<string, int> parameters, Action action)
    {
        var previous = t_override;
        t_override = parameters;
        try { action(); } finally { t_override = previous; }
    }

    /// <summary>Every loaded entry.</summary>
    public static IReadOnlyList<TunedEntry> All()
    {
        EnsureLoaded();
        return Entries.Select(kv => new TunedEntry(kv.Key.Device, kv.Key.Op, kv.Key.Bucket, kv.Value, 0)).ToList();
    }

    /// <summary>Adds or replaces an entry in memory (call <see cref="Save"/> to persist).</summary>
    public static void Set(TunedEntry e)
    {
        EnsureLoaded();
        Entries[(e.Device, e.Op, e.Bucket)] = new Dictionary<string, int>(e.Params);
        Resolved.Clear();
    }

    /// <summary>Forgets everything loaded (tests) and reloads from <paramref name="path"/> (default location when null).</summary>
    public static void Reload(string? path = null)
    {
        Entries.Clear(); Resolved.Clear();
        Interlocked.Exchange(ref _loaded, 1);
        foreach (var e in Load(path ?? DefaultPath())) Entries[(e.Device, e.Op, e.Bucket)] = e.Params;
    }

    /// <summary>Writes every entry to <paramref name="path"/> (default location when null), atomically.</summary>
    public static void Save(string? path = null)
    {
        path ??= DefaultPath();
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var file = new CacheFile
        {
            Format = Magic,
            Version = FormatVersion,
            Entries = All().OrderBy(e => e.Device).ThenBy(e
            => e.Op).ThenBy(e => e.Bucket).ToList()
        };
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(file, JsonOptions));
        File.Move(tmp, path, true);
    }

    /// <summary>Reads a cache file; a missing file gives nothing, a corrupt or foreign one gives nothing and a warning.</summary>
    public static IReadOnlyList<TunedEntry> Load(string path)
    {
        if (!File.Exists(path)) return [];
        try
        {
            var file = JsonSerializer.Deserialize<CacheFile>(File.ReadAllText(path), JsonOptions);
            if (file is null || file.Format != Magic || file.Version != FormatVersion || file.Entries is null)
            {
                Warn($"ignoring tuning cache {path}: not a poolkernels v{FormatVersion} cache");
                return [];
            }
            var ok = file.Entries.Where(e => e is
            {
                Device: not null, Op: not null, Bucket: not null,
                Params: not null
            } && e.Params.Values.All(v => v > 0)).ToList();
            if (ok.Count != file.Entries.Count) Warn($"tuning cache {path}: skipped {file.Entries.Count - ok.Count} malformed entries");
            return ok;
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or NotSupportedException)
        {
            Warn($"ignoring corrupt tuning cache {path}: {e.Message}");
            return [];
        }
    }

    /// <summary>Where warnings go (stderr by default; tests capture them).</summary>
    public static TextWriter WarningWriter { get; set; } = Console.Error;

    private static void Warn(string message) => WarningWriter.WriteLine($"poolkernels: warning: {message}");

    private static void EnsureLoaded()
    {
        if (Volatile.Read(ref _loaded) != 0) return;
        lock (Entries)
        {
            if (_loaded != 0) return;
            foreach (var e in Load(DefaultPath())) Entries[(e.Device, e.Op, e.Bucket)] = e.Params;
            Volatile.Write(ref _loaded, 1);
        }
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower
    };

    private sealed class CacheFile
    {
        public string? Format { get; set; }
        public int Version { get; set; }
        public List<TunedEntry>? Entries { get; set; }
    }
}
