using PoolKernels.Kernels.Sequence;

namespace PoolKernels.Verification;

/// <summary>An op family's entries in the registry: each family adds one class implementing this (found by
/// reflection, so families never edit a shared list).</summary>
public interface IOpFamily
{
    /// <summary>The family's operations.</summary>
    static abstract IEnumerable<OpSpec> Specs();
}

/// <summary>Every implemented operation, by docs/operations.md name: what <c>check</c>, <c>verify</c> and the tests run.</summary>
public static class OpRegistry
{
    /// <summary>The specs, by name, sorted.</summary>
    public static IReadOnlyDictionary<string, OpSpec> All { get; } = typeof(OpRegistry).Assembly.GetTypes()
        .Where(t => t.IsClass && t.GetInterfaces().Contains(typeof(IOpFamily)))
        .SelectMany(t => (IEnumerable<OpSpec>)t.GetMethod(nameof(IOpFamily.Specs))!.Invoke(null, null)!)
        .OrderBy(s => s.Name, StringComparer.Ordinal)
        .ToDictionary(s => s.Name);

    /// <summary>The spec of <paramref name="op"/>, or null when it is not implemented.</summary>
    public static OpSpec? Find(string op) => All.GetValueOrDefault(op);
}
