using System.Globalization;
using PoolKernels.Verification;

namespace PoolKernels.Cli;

/// <summary><c>devices</c>, <c>check</c>, <c>verify</c> and <c>ops</c>.</summary>
internal static class Commands
{
    /// <summary>Repeatable, comma-separated option values as one list.</summary>
    public static List<string> Split(IEnumerable<string> values) =>
        values.SelectMany(s => s.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)).ToList();

    /// <summary>
    /// The device ids named by --device, "all" expanded to every device present (reference only when
    /// <paramref name="includeReference"/>). Every id is checked before anything runs: an unknown or unavailable one
    /// throws the <see cref="ArgumentException"/> of <see cref="Device.Open"/>, which says why. With "all", also the
    /// backends that were probed and not found.
    /// </summary>
    public static (List<string> Ids, List<BackendProbe> NotFound) DeviceIds(string[] values, bool includeReference)
    {
        var ids = Split(values);
        if (ids.Count == 0) throw new ArgumentException("--device needs an id.");
        var present = PoolKernels.Devices.List().Select(d => d.Id).ToList();
        if (ids.Contains("all"))
        {
            var notFound = PoolKernels.Devices.Probe().Where(p => !p.Available).ToList();
            return (present.Where(id => includeReference || id != "reference").ToList(), notFound);
        }
        foreach (var id in ids.Where(id => id != "auto" && !present.Contains(id)))
            Device.Open(id).Dispose(); // throws, saying why
        return (ids.Distinct().ToList(), []);
    }

    private static string Count(long v) => v.ToString(CultureInfo.InvariantCulture);

    public static int Devices(Io io, bool json)
    {
        var probe = PoolKernels.Devices.Probe();
        if (json)
        {
            foreach (var p in probe)
            {
                if (p.Info is { } d)
                    Output.Json(io.Out, new
                    {
                        id = d.Id,
                        name = d.Name,
                        kind = d.Kind.ToString().ToLowerInvariant(),
                        memory_bytes = d.MemoryBytes,
                        compute_units = d.ComputeUnits,
                        gpu = d.IsGpu,
                        available = true
                    });
                else Output.Json(io.Out, new { id = p.Id, kind = "ilgpu", backend = p.Backend, available = false, reason = p.Reason });
            }
            return CliApp.ExitPass;
        }
        Output.Table(io.Out, ["id", "name", "memory", "compute units"], probe.Where(p => p.Info is not null).Select(p => p.Info!)
            .Select(d => (IReadOnlyList<string>)[d.Id, d.Name, $"{d.MemoryBytes / (1 << 20)} MiB", Count(d.ComputeUnits)]));
        foreach (var p in probe.Where(p => !p.Available)) io.Out.WriteLine($"{p.Id}: not available ({p.Reason})");
        return CliApp.ExitPass;
    }

    public static int Ops(Io io)
    {
        foreach (var op in OpRegistry.All.Keys) io.Out.WriteLine(op);
        return CliApp.ExitPass;
    }

    public static int Check(Io io, string[] paths, string[] devices, int repeat, bool json)
    {
        var files = VectorRunner.Expand(paths); // a path that does not exist: FileNotFoundException naming it
        if (files.Count == 0)
            throw new ArgumentException($"check: no .safetensors test vectors found in {string.Join(", ", paths)}.");
        var (ids, _) = DeviceIds(devices, includeReference: true);
        var rows = new List<IReadOnlyList<string>>();
        int failed = 0, done = 0, total = files.Count * ids.Count;
        foreach (var id in ids)
        {
            using var device = Device.Open(id);
            foreach (var file in files)
            {
                string name = Path.GetRelativePath(Environment.CurrentDirectory, file);
                io.Progress($"[{++done}/{total}] {device.Id} {name}");
                var r = VectorRunner.Run(file, device, repeat);
                if (!r.Pass) failed++;
                if (json)
                {
                    io.ProgressDone();
                    Output.Json(io.Out, new
                    {
                        file = name,
                        device = r.Device,
                        op = r.Op,
                        pass = r.Pass,
                        max_abs_err = r.MaxAbsErr,
                        max_rel_err = r.MaxRelErr,
                        median_ms = r.MedianMs,
                        message = r.Message
                    });
                }
                else rows.Add([name, r.Device, r.Pass ? "pass" : "FAIL", Output.Num(r.MaxAbsErr), Output.Num(r.MaxRelErr),
                    Output.Num(r.MedianMs), r.Message]);
            }
        }
        io.ProgressDone();
        if (!json)
        {
            Output.Table(io.Out, ["file", "device", "result", "max abs err", "max rel err", "median ms", "note"], rows);
            io.Out.WriteLine($"{rows.Count - failed} passed, {failed} failed");
        }
        return failed == 0 ? CliApp.ExitPass : CliApp.ExitFailed;
    }

    public static int Verify(Io io, string[] devices, int seed, string[] opValues, bool json)
    {
        var ops = opValues.Length > 0 ? Split(opValues) : OpRegistry.All.Keys.ToList();
        foreach (var op in ops)
            if (OpRegistry.Find(op) is null)
                throw new ArgumentException($"--op: unknown operation '{op}'. Implemented: {string.Join(", ", OpRegistry.All.Keys)}.");
        var (ids, notFound) = DeviceIds(devices, includeReference: true);
        using var reference = Device.Open("reference");
        var rows = new List<IReadOnlyList<string>>();
        int failed = 0, done = 0;
        foreach (var id in ids)
        {
            using var device = Device.Open(id);
            foreach (var op in ops)
            {
                io.Progress($"[{++done}/{ids.Count * ops.Count}] {op} on {device.Id}");
                var r = Conformance.Run(OpRegistry.All[op], device, reference, seed);
                if (r.Failed > 0) failed++;
                if (json)
                {
                    io.ProgressDone();
                    Output.Json(io.Out, new
                    {
                        op = r.Op,
                        device = r.Device,
                        cases = r.Cases,
                        failed = r.Failed,
                        pass = r.Failed == 0,
                        max_abs_err = r.MaxAbsErr,
                        max_rel_err = r.MaxRelErr,
                        message = r.Message
                    });
                }
                else rows.Add([r.Op, r.Device, r.Failed == 0 ? "pass" : "FAIL", $"{r.Cases - r.Failed}/{r.Cases}", Output.Num(r.MaxAbsErr),
                    Output.Num(r.MaxRelErr), r.Message]);
            }
        }
        io.ProgressDone();
        // What "all" covered and what it looked for and did not find (to stderr with --json, so stdout stays JSON lines).
        var coverage = json ? io.Err : io.Out;
        if (!json) Output.Table(io.Out, ["op", "device", "result", "cases", "max abs err", "max rel err", "note"], rows);
        coverage.WriteLine($"devices covered: {string.Join(", ", ids)}");
        if (notFound.Count > 0)
            coverage.WriteLine($"probed and not found: {string.Join("; ", notFound.Select(p => $"{p.Id} ({p.Reason})"))}");
        if (!json)
            io.Out.WriteLine(failed == 0 ? "all operations match the reference on every device"
                : $"{failed} op x device combinations FAILED");
        return failed == 0 ? CliApp.ExitPass : CliApp.ExitFailed;
    }
}
