namespace PoolKernels.Verification;

/// <summary>One row of the <c>verify</c> table: an operation's randomized cases on one device vs reference.</summary>
/// <param name="Op">Operation.</param>
/// <param name="Device">Device id.</param>
/// <param name="Cases">Number of cases run.</param>
/// <param name="Failed">Number that failed.</param>
/// <param name="MaxAbsErr">Largest absolute error.</param>
/// <param name="MaxRelErr">Largest relative error.</param>
/// <param name="Message">First failure, or empty.</param>
public sealed record ConformanceRow(string Op, string Device, int Cases, int Failed, double MaxAbsErr, double MaxRelErr, string Message);

/// <summary>The built-in randomized conformance suite: every operation's cases on a device against <c>reference</c>.</summary>
public static class Conformance
{
    /// <summary>Runs every case of <paramref name="spec"/> on <paramref name="device"/> and on <paramref name="reference"/>.</summary>
    public static ConformanceRow Run(OpSpec spec, Device device, Device reference, int seed)
    {
        int failed = 0, count = 0; double maxAbs = 0, maxRel = 0; string msg = "";
        foreach (var (label, call) in spec.RandomCases(seed))
        {
            count++;
            try
            {
                var want = spec.Run(reference, call);
                var got = spec.Run(device, call);
                foreach (var (name, expected) in want)
                {
                    var c = got.TryGetValue(name, out var actual)
                        ? Compare.Tensors(actual, expected, spec.Rtol, spec.Atol, name)
                        : new Comparison(false, 0, 0, $"no output '{name}'");
                    maxAbs = Math.Max(maxAbs, c.MaxAbsErr); maxRel = Math.Max(maxRel, c.MaxRelErr);
                    if (!c.Pass) { failed++; if (msg.Length == 0) msg = $"{label}: {c.Message}"; break; }
                }
            }
            catch (Exception e)
            {
                failed++;
                if (msg.Length == 0) msg = $"{label}: {e.GetType().Name}: {e.Message}";
            }
        }
        return new(spec.Name, device.Id, count, failed, maxAbs, maxRel, msg);
    }
}
