using PoolKernels.Verification;

namespace PoolKernels.Perf;

/// <summary>One tuned bucket: the default's time, the winner's, and the winner.</summary>
public sealed record TuneResult(string Op, string Device, string Bucket, string Shape, double DefaultMs, double BestMs,
    Dictionary<string, int> Best, int Tried, int Rejected);

/// <summary>
/// Searches an operation's tunable parameters on a device, the way Kernel Tuner does: every candidate is first
/// checked against <c>reference</c> on the workload (a wrong configuration is rejected, never timed), then timed;
/// the fastest is stored in the <see cref="Tuning"/> cache under the device's name, the op and the shape bucket.
/// </summary>
public static class Tuner
{
    /// <summary>Tunes every bench case of <paramref name="spec"/> within <paramref name="budget"/>.</summary>
    public static IReadOnlyList<TuneResult> Tune(OpSpec spec, Device device, Device reference, TimeSpan budget, int repeats = 5,
        Action<string>? progress = null)
    {
        var results = new List<TuneResult>();
        if (spec.Tunables is null || spec.BenchCases is null) return results;
        var space = spec.Tunables(device);
        if (space.Count == 0) return results;
        var cases = spec.BenchCases(device);
        var deadline = DateTime.UtcNow + budget;
        var perCase = budget / Math.Max(1, cases.Count);
        foreach (var c in cases)
        {
            var caseDeadline = DateTime.UtcNow + perCase;
            var want = spec.Run(reference, c.Call);
            var combos = Combinations(space).ToList();
            var defaults = combos[0];
            double defaultMs = double.NaN, bestMs = double.PositiveInfinity;
            Dictionary<string, int>? best = null;
            int tried = 0, rejected = 0;
            foreach (var combo in combos)
            {
                if (tried > 0 && (DateTime.UtcNow > caseDeadline || DateTime.UtcNow > deadline)) break;
                tried++;
                progress?.Invoke($"{spec.Name} {c.Shape} {Format(combo)}");
                bool ok = true;
                Tuning.With(combo, () =>
                {
                    var got = spec.Run(device, c.Call);
                    foreach (var (name, expected) in want)
                        ok &= got.TryGetValue(name, out var actual) && Compare.Tensors(actual, expected, spec.Rtol, spec.Atol, name).Pass;
                });
                if (!ok) { rejected++; continue; }
                double ms = 0;
                Tuning.With(combo, () =>
                {
                    using var prepared = spec.Prepare?.Invoke(device, c.Call) ?? new PreparedCall(() => spec.Run(device, c.Call));
                    ms = Bench.Time(prepared.Run, repeats).Median;
                });
                if (ReferenceEquals(combo, defaults)) defaultMs = ms;
                if (ms < bestMs) { bestMs = ms; best = combo; }
            }
            if (best is null) continue;
            string bucket = c.Bucket;
            Tuning.Set(new TunedEntry(device.Info.Name, spec.Name, bucket, best, bestMs));
            results.Add(new(spec.Name, device.Id, bucket, c.Shape, defaultMs, bestMs, best, tried, rejected));
        }
        return results;
    }

    /// <summary>Every combination, the defaults (first candidates) first.</summary>
    public static IEnumerable<Dictionary<string, int>> Combinations(IReadOnlyList<TunableParam> space)
    {
        IEnumerable<Dictionary<string, int>> acc = [new Dictionary<string, int>()];
        foreach (var p in space)
            acc = acc.SelectMany(d => p.Candidates.Select(v => new Dictionary<string, int>(d) { [p.Name] = v }));
        return acc;
    }

    /// <summary>"block=256 threads=2".</summary>
    public static string Format(Dictionary<string, int> p) => string.Join(" ", p.Select(kv => $"{kv.Key}={kv.Value}"));
}
