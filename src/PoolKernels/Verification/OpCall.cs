using System.Globalization;

namespace PoolKernels.Verification;

/// <summary>The named inputs and string parameters of one operation call, as a test vector stores them.</summary>
public sealed class OpCall(IReadOnlyDictionary<string, Tensor> inputs, IReadOnlyDictionary<string, string> parameters)
{
    /// <summary>Input tensors by DESIGN.md name.</summary>
    public IReadOnlyDictionary<string, Tensor> Inputs { get; } = inputs;
    /// <summary>Parameters as strings ("true", "1e-6", "1,2,4").</summary>
    public IReadOnlyDictionary<string, string> Parameters { get; } = parameters;

    /// <summary>A required input.</summary>
    public Tensor Input(string name) => Inputs.TryGetValue(name, out var t) ? t
        : throw new ArgumentException($"Missing input tensor '{name}'.", name);

    /// <summary>An optional input, null when absent.</summary>
    public Tensor? Optional(string name) => Inputs.GetValueOrDefault(name);

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
/// <param name="Name">DESIGN.md name.</param>
/// <param name="Run">Runs the op on a device; returns outputs by name (without the "expected." prefix).</param>
/// <param name="RandomCases">Builds randomized cases from a seed; small shapes, since ilgpu-cpu is a slow simulator.</param>
/// <param name="Rtol">Relative tolerance of a float backend against the reference.</param>
/// <param name="Atol">Absolute tolerance of a float backend against the reference.</param>
public sealed record OpSpec(string Name, Func<Device, OpCall, IReadOnlyDictionary<string, Tensor>> Run,
    Func<int, IReadOnlyList<(string Label, OpCall Call)>> RandomCases, double Rtol = 1e-4, double Atol = 1e-5);
