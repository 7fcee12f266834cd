namespace PoolKernels.Cli;

/// <summary>Minimal command-line parsing: positional arguments, --flag and --name value options.</summary>
internal sealed class Args
{
    private readonly Dictionary<string, List<string>> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags;
    public List<string> Positional { get; } = [];

    public Args(IEnumerable<string> args, params string[] flags)
    {
        _flags = [.. flags];
        using var e = args.GetEnumerator();
        while (e.MoveNext())
        {
            var a = e.Current;
            if (!a.StartsWith("--", StringComparison.Ordinal)) { Positional.Add(a); continue; }
            string name = a[2..], value;
            int eq = name.IndexOf('=');
            if (eq >= 0) { value = name[(eq + 1)..]; name = name[..eq]; }
            else if (_flags.Contains(name)) value = "true";
            else if (e.MoveNext()) value = e.Current;
            else throw new ArgumentException($"--{name} needs a value.");
            if (!_options.TryGetValue(name, out var list)) _options[name] = list = [];
            list.Add(value);
        }
    }

    public bool Flag(string name) => _options.ContainsKey(name);
    public string? Get(string name) => _options.TryGetValue(name, out var l) ? l[^1] : null;
    public IReadOnlyList<string> All(string name) => _options.TryGetValue(name, out var l) ? l : [];
    public int Int(string name, int fallback) => Get(name) is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : fallback;

    public void RejectUnknown(params string[] known)
    {
        var bad = _options.Keys.Where(k => !known.Contains(k)).ToList();
        if (bad.Count > 0) throw new ArgumentException($"Unknown option(s): {string.Join(", ", bad.Select(b => "--" + b))}. Known: {string.Join(", ", known.Select(k => "--" + k))}.");
    }
}
