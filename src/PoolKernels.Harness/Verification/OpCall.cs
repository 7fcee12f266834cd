using System.Globalization;

namespace PoolKernels.Verification;

/// <summary>The named inputs and string parameters of one operation call, as a test vector stores them.</summary>
public sealed class OpCall(IReadOnlyDictionary<string, HostTensor> inputs, IReadOnlyDictionary<string, string> parameters)
{
    /// <summary>Input tensors by docs/operations.md name.</summary>
    public IReadOnlyDictionary<string, HostTensor> Inputs { get; } = inputs;
    /// <summary>Parameters as strings ("true", "1e-6", "1,2,4").</summary>
    public IReadOnlyDictionary<string, string> Parameters { get; } = parameters;

    /// <summary>The most bytes the arrays a call's size parameters ask for may take: 2^31. Test vectors are untrusted
    /// input, so a size parameter beyond it (output_size = 100000, num_nodes = 2000000000) is rejected by
    /// <see cref="CheckSize"/>, naming the key, before anything is allocated.</summary>
    public const long MaxBytes = 1L << 31;

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> naming <paramref name="key"/> when <paramref name="what"/>, of
    /// <paramref name="dims"/> elements (multiplied) of <paramref name="bytesPerElement"/> bytes each, would take more than
    /// <see cref="MaxBytes"/>. Computed in floating point, so sizes whose product overflows a long are caught too.
    /// </summary>
    public void CheckSize(string key, string what, double bytesPerElement, params long[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        double bytes = bytesPerElement;
        foreach (long d in dims) bytes *= Math.Max(d, 0);
        if (bytes <= MaxBytes) return;
        string value = Parameters.TryGetValue(key, out var v) ? $" = '{v}'" : "";
        throw new ArgumentException(
            $"Parameter {key}{value}: {what} would take {bytes / (1 << 30):0.#} GiB, over the {MaxBytes >> 30} GiB limit for a test "
                + $"vector.", key);
    }

    /// <summary>A required input.</summary>
    public HostTensor Input(string name) => Inputs.TryGetValue(name, out var t) ? t
        : throw new ArgumentException($"Missing input tensor '{name}'.", name);

    /// <summary>An optional input, null when absent.</summary>
    public HostTensor? Optional(string name) => Inputs.GetValueOrDefault(name);

    /// <summary>A string parameter or its default (null default = required).</summary>
    public string Text(string name, string? fallback = null) =>
        Parameters.TryGetValue(name, out var v) ? v : fallback ?? throw new ArgumentException($"Missing parameter '{name}'.", name);

    /// <summary>A float parameter ("inf" allowed).</summary>
    public float Float(string name, float fallback)
    {
        if (!Parameters.TryGetValue(name, out var v)) return fallback;
        if (v is "inf" or "+inf") return float.PositiveInfinity;
        if (v == "-inf") return float.NegativeInfinity;
        return float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out float f) ? f
            : throw new ArgumentException($"Parameter {name} = '{v}' is not a number.", name);
    }

    /// <summary>An integer parameter.</summary>
    public int Int(string name, int fallback)
    {
        if (!Parameters.TryGetValue(name, out var v)) return fallback;
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i) ? i
            : throw new ArgumentException($"Parameter {name} = '{v}' is not an integer.", name);
    }

    /// <summary>A boolean parameter ("true"/"false"/"1"/"0").</summary>
    public bool Bool(string name, bool fallback)
    {
        if (!Parameters.TryGetValue(name, out var v)) return fallback;
        return v.ToLowerInvariant() switch
        {
            "true" or "1" => true,
            "false" or "0" => false,
            _ => throw new ArgumentException($"Parameter {name} = '{v}' is not true or false.", name),
        };
    }
}

/// <summary>One operation as the harness sees it: run by name on host tensors, and randomized cases for
/// <c>verify</c> (the op × backend conformance table, ggml's test-backend-ops in spirit).</summary>
/// <param name="Name">docs/operations.md name.</param>
/// <param name="Run">Runs the op on a device; returns outputs by name (without the "expected." prefix).</param>
/// <param name="RandomCases">Builds randomized cases from a seed; small shapes, since ilgpu-cpu is a slow simulator.</param>
/// <param name="Rtol">Relative tolerance of a float backend against the reference.</param>
/// <param name="Atol">Absolute tolerance of a float backend against the reference.</param>
public sealed record OpSpec(string Name, Func<Device, OpCall, IReadOnlyDictionary<string, HostTensor>> Run,
    Func<int, IReadOnlyList<(string Label, OpCall Call)>> RandomCases, double Rtol = 1e-4, double Atol = 1e-5)
{
    /// <summary>Representative workloads for <c>bench</c> and <c>tune</c> on a device, smallest first (smaller on the
    /// ilgpu-cpu simulator).</summary>
    public Func<Device, IReadOnlyList<BenchCase>>? BenchCases { get; init; }

    /// <summary>The parameters <c>tune</c> may search on a device, with their candidate values.</summary>
    public Func<Device, IReadOnlyList<TunableParam>>? Tunables { get; init; }

    /// <summary>Uploads a call's inputs to the device once and returns the kernel-only run, so timings exclude host
    /// transfers. When null, the host-tensor <see cref="Run"/> is timed.</summary>
    public Func<Device, OpCall, PreparedCall>? Prepare { get; init; }
}

/// <summary>A benchmark workload.</summary>
/// <param name="Shape">Human-readable shape, e.g. "[32,512,768]".</param>
/// <param name="Size">The x coordinate of plots (sequence length, pixels, ...).</param>
/// <param name="Call">Inputs and parameters.</param>
/// <param name="Bytes">Bytes a kernel must at least move (for GB/s).</param>
/// <param name="Flops">Floating-point operations (for GFLOP/s; 0 for pure data movement).</param>
/// <param name="Bucket">The tuning bucket these sizes fall in: <see cref="Tuning.Bucket"/> of the two sizes the op passes
/// to <see cref="Tuning.Get"/>, each through <see cref="Tuning.Log2Bucket"/>.</param>
public sealed record BenchCase(string Shape, double Size, OpCall Call, double Bytes, double Flops, string Bucket);

/// <summary>A tunable kernel parameter and the values <c>tune</c> tries.</summary>
/// <param name="Name">Parameter name as the kernel reads it from <see cref="Tuning"/>.</param>
/// <param name="Candidates">Values to try (the first is the built-in default).</param>
public sealed record TunableParam(string Name, int[] Candidates);

/// <summary>A call whose inputs already live on the device: <see cref="Run"/> launches only the kernels.</summary>
public sealed class PreparedCall(Action run, params IDisposable[] resources) : IDisposable
{
    /// <summary>Runs the operation once (synchronously).</summary>
    public void Run() => run();

    /// <summary>Frees the device buffers.</summary>
    public void Dispose()
    {
        foreach (var r in resources) r.Dispose();
    }
}
