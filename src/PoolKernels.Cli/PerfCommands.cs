using PoolKernels.Perf;
using PoolKernels.Verification;

namespace PoolKernels.Cli;

/// <summary><c>bench</c> and <c>tune</c>.</summary>
internal static class PerfCommands
{
    private static List<OpSpec> Ops(Args a)
    {
        var names = a.All("op").SelectMany(s => s.Split(',')).ToList();
        foreach (var n in names)
            if (OpRegistry.Find(n) is null) throw new ArgumentException($"Unknown operation '{n}'. Implemented: {string.Join(", ", OpRegistry.All.Keys)}.");
        return (names.Count == 0 ? OpRegistry.All.Values : names.Select(n => OpRegistry.All[n])).ToList();
    }

    private static List<string> Devices(Args a, string fallback)
    {
        var ids = a.All("device").DefaultIfEmpty(fallback).SelectMany(s => s.Split(',')).ToList();
        return ids.Contains("all") ? Device.List().Select(d => d.Id).Where(id => id != "reference").ToList() : ids;
    }

    private static void Progress(string text) => Console.Error.Write("\r" + (text.Length > 100 ? text[..100] : text).PadRight(100));
    private static void ProgressDone() => Console.Error.Write("\r" + new string(' ', 100) + "\r");

    public static int Bench(Args a)
    {
        a.RejectUnknown("op", "device", "json", "plot", "repeat");
        var ops = Ops(a).Where(o => o.BenchCases is not null).ToList();
        int repeat = Math.Max(1, a.Int("repeat", 10));
        bool json = a.Flag("json");
        var results = new List<BenchResult>();
        foreach (var id in Devices(a, "auto"))
        {
            using var device = Device.Open(id);
            Progress($"{device.Id}: measuring bandwidth and FMA peak");
            var limits = Bench_MeasureLimits(device);
            ProgressDone();
            if (json) Output.Json(new { op = "machine_limits", device = device.Id, name = device.Info.Name, gbps = limits.Gbps, gflops = limits.Gflops });
            else Console.WriteLine($"{device.Id} ({device.Info.Name}): streaming read {limits.Gbps:0.0} GB/s, F32 FMA peak {limits.Gflops:0.0} GFLOP/s");
            var cases = ops.SelectMany(o => o.BenchCases!(device).Select(c => (o, c))).ToList();
            int i = 0;
            foreach (var (op, c) in cases)
            {
                Progress($"[{++i}/{cases.Count}] {op.Name} {c.Shape} on {device.Id}");
                var r = Perf.Bench.Run(op, c, device, limits, repeat);
                results.Add(r);
                if (json)
                {
                    ProgressDone();
                    Output.Json(new { op = r.Op, device = r.Device, shape = r.Shape, median_ms = r.MedianMs, min_ms = r.MinMs, max_ms = r.MaxMs, gbps = r.Gbps, gflops = r.Gflops, pct_bandwidth = r.PctBandwidth, pct_peak = r.PctPeak });
                }
            }
            ProgressDone();
        }
        if (!json)
            Output.Table(["op", "device", "shape", "median ms", "spread", "GB/s", "GFLOP/s", "% bandwidth", "% FMA peak"],
                results.Select(r => (IReadOnlyList<string>)[r.Op, r.Device, r.Shape, Output.Num(r.MedianMs), $"{Output.Num(r.MinMs)}..{Output.Num(r.MaxMs)}",
                    Output.Num(r.Gbps), Output.Num(r.Gflops), Output.Num(r.PctBandwidth), Output.Num(r.PctPeak)]));
        if (a.Get("plot") is { } png) { Plot(results, png); Console.Error.WriteLine($"plot written to {png}"); }
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
            var s = plt.Add.Scatter(pts.Select(r => Math.Log10(r.Size)).ToArray(), pts.Select(r => Math.Log10(Math.Max(r.MedianMs, 1e-6))).ToArray());
            s.LegendText = $"{g.Key.Op} @ {g.Key.Device}";
        }
        plt.Title("poolkernels bench: median time");
        plt.XLabel("log10 size (sequence length / elements)");
        plt.YLabel("log10 ms");
        plt.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plt.SavePng(path, 900, 600);
    }

    public static int Tune(Args a)
    {
        a.RejectUnknown("op", "device", "budget", "cache");
        var id = a.Get("device") ?? throw new ArgumentException("tune needs --device ID.");
        double budget = a.Get("budget") is { } b ? double.Parse(b, System.Globalization.CultureInfo.InvariantCulture) : 60;
        if (a.Get("cache") is { } cache) Tuning.Reload(cache); else Tuning.Reload();
        var ops = Ops(a).Where(o => o.Tunables is not null && o.BenchCases is not null).ToList();
        using var device = Device.Open(id);
        using var reference = Device.Open("reference");
        var results = new List<TuneResult>();
        foreach (var op in ops)
            results.AddRange(Tuner.Tune(op, device, reference, TimeSpan.FromSeconds(budget / Math.Max(1, ops.Count)), progress: Progress));
        ProgressDone();
        Tuning.Save(a.Get("cache"));
        Output.Table(["op", "device", "bucket", "shape", "default ms", "best ms", "speedup", "best", "tried", "rejected"],
            results.Select(r => (IReadOnlyList<string>)[r.Op, r.Device, r.Bucket, r.Shape, Output.Num(r.DefaultMs), Output.Num(r.BestMs),
                Output.Num(r.DefaultMs / r.BestMs) + "x", Tuner.Format(r.Best), r.Tried.ToString(System.Globalization.CultureInfo.InvariantCulture), r.Rejected.ToString(System.Globalization.CultureInfo.InvariantCulture)]));
        Console.WriteLine($"saved to {a.Get("cache") ?? Tuning.DefaultPath()}");
        return 0;
    }
}
