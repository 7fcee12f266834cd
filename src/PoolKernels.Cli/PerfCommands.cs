using PoolKernels.Perf;
using PoolKernels.Verification;

namespace PoolKernels.Cli;

/// <summary><c>bench</c> and <c>tune</c>.</summary>
internal static class PerfCommands
{
    private static List<OpSpec> Ops(string[] op)
    {
        var names = Commands.Split(op);
        foreach (var n in names)
            if (OpRegistry.Find(n) is null)
                throw new ArgumentException($"Unknown operation '{n}'. Implemented: {string.Join(", ", OpRegistry.All.Keys)}.");
        return (names.Count == 0 ? OpRegistry.All.Values : names.Select(n => OpRegistry.All[n])).ToList();
    }

    public static int Bench(Io io, string[] opValues, string[] devices, int repeat, bool json, string? png)
    {
        var ops = Ops(opValues).Where(o => o.BenchCases is not null).ToList();
        var results = new List<BenchResult>();
        foreach (var id in Commands.DeviceIds(devices, includeReference: false).Ids)
        {
            using var device = Device.Open(id);
            io.Progress($"{device.Id}: measuring bandwidth and FMA peak");
            var limits = Bench_MeasureLimits(device);
            io.ProgressDone();
            if (json) Output.Json(io.Out, new
            {
                op = "machine_limits",
                device = device.Id,
                name = device.Info.Name,
                gbps = limits.Gbps,
                gflops = limits.Gflops
            });
            else io.Out.WriteLine($"{device.Id} ({device.Info.Name}): streaming read {limits.Gbps:0.0} GB/s, F32 FMA peak "
                + $"{limits.Gflops:0.0} GFLOP/s");
            var cases = ops.SelectMany(o => o.BenchCases!(device).Select(c => (o, c))).ToList();
            int i = 0;
            foreach (var (op, c) in cases)
            {
                io.Progress($"[{++i}/{cases.Count}] {op.Name} {c.Shape} on {device.Id}");
                var r = Perf.Bench.Run(op, c, device, limits, repeat);
                results.Add(r);
                if (json)
                {
                    io.ProgressDone();
                    Output.Json(io.Out, new
                    {
                        op = r.Op,
                        device = r.Device,
                        shape = r.Shape,
                        median_ms = r.MedianMs,
                        min_ms = r.MinMs,
                        max_ms = r.MaxMs,
                        gbps = r.Gbps,
                        gflops = r.Gflops,
                        pct_bandwidth = r.PctBandwidth,
                        pct_peak = r.PctPeak
                    });
                }
            }
            io.ProgressDone();
        }
        if (!json)
            Output.Table(io.Out, ["op", "device", "shape", "median ms", "spread", "GB/s", "GFLOP/s", "% bandwidth", "% FMA peak"],
                results.Select(r => (IReadOnlyList<string>)[r.Op, r.Device, r.Shape, Output.Num(r.MedianMs),
                    $"{Output.Num(r.MinMs)}..{Output.Num(r.MaxMs)}",
                    Output.Num(r.Gbps), Output.Num(r.Gflops), Output.Num(r.PctBandwidth), Output.Num(r.PctPeak)]));
        if (png is not null) { Plot(results, png); io.Err.WriteLine($"plot written to {png}"); }
        return 0;
    }

    private static DeviceLimits Bench_MeasureLimits(Device d) => Perf.Bench.MeasureLimits(d);

    /// <summary>Time against size, one series per (op, device), log-log, one PNG.</summary>
    private static void Plot(List<BenchResult> results, string path)
    {
        var plt = new ScottPlot.Plot();
        foreach (var g in results.GroupBy(r => (r.Op, r.Device)))
        {
            var pts = g.OrderBy(r => r.Size).ToList();
            var s = plt.Add.Scatter(pts.Select(r => Math.Log10(r.Size)).ToArray(), pts.Select(r => Math.Log10(Math.Max(r.MedianMs,
                1e-6))).ToArray());
            s.LegendText = $"{g.Key.Op} @ {g.Key.Device}";
        }
        plt.Title("poolkernels bench: median time");
        plt.XLabel("log10 size (sequence length / elements)");
        plt.YLabel("log10 ms");
        plt.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plt.SavePng(path, 900, 600);
    }

    public static int Tune(Io io, string id, string[] opValues, double budget, string? cache)
    {
        if (cache is not null) Tuning.Reload(cache); else Tuning.Reload();
        var ops = Ops(opValues).Where(o => o.Tunables is not null && o.BenchCases is not null).ToList();
        using var device = Device.Open(id);
        using var reference = Device.Open("reference");
        var results = new List<TuneResult>();
        foreach (var op in ops)
            results.AddRange(Tuner.Tune(op, device, reference, TimeSpan.FromSeconds(budget / Math.Max(1, ops.Count)),
                progress: io.Progress));
        io.ProgressDone();
        Tuning.Save(cache);
        Output.Table(io.Out, ["op", "device", "bucket", "shape", "default ms", "best ms", "speedup", "best", "tried", "rejected"],
            results.Select(r => (IReadOnlyList<string>)[r.Op, r.Device, r.Bucket, r.Shape, Output.Num(r.DefaultMs), Output.Num(r.BestMs),
                Output.Num(r.DefaultMs / r.BestMs) + "x", Tuner.Format(r.Best),
                    r.Tried.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    r.Rejected.ToString(System.Globalization.CultureInfo.InvariantCulture)]));
        io.Out.WriteLine($"saved to {cache ?? Tuning.DefaultPath()}");
        return 0;
    }
}
