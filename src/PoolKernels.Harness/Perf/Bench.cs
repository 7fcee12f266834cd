using System.Diagnostics;
using ILGPU.Runtime;
using PoolKernels.Kernels;
using PoolKernels.Verification;

namespace PoolKernels.Perf;

/// <summary>A device's limits, measured in the same run as the operations they are compared with.</summary>
/// <param name="Gbps">Streaming read bandwidth, GB/s (1e9 bytes).</param>
/// <param name="Gflops">F32 FMA peak, GFLOP/s.</param>
public sealed record DeviceLimits(double Gbps, double Gflops);

/// <summary>One timed workload.</summary>
public sealed record BenchResult(string Op, string Device, string Shape, double Size, double MedianMs, double MinMs, double MaxMs,
    double Gbps, double Gflops, double PctBandwidth, double PctPeak);

/// <summary>Timing helpers behind <c>poolkernels bench</c> and <c>tune</c>.</summary>
public static class Bench
{
    /// <summary>Median, min and max of <paramref name="repeats"/> timed runs after two warm-ups, in ms.</summary>
    public static (double Median, double Min, double Max) Time(Action run, int repeats)
    {
        run(); run();
        var t = new double[Math.Max(1, repeats)];
        for (int i = 0; i < t.Length; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            run();
            t[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        Array.Sort(t);
        return (t[t.Length / 2], t[0], t[^1]);
    }

    /// <summary>Measures the device's F32 FMA peak (a register-resident loop on every worker / thread) and its
    /// streaming-read bandwidth over 256 MB (64 MB on the ilgpu-cpu simulator).</summary>
    public static DeviceLimits MeasureLimits(Device device, int repeats = 5)
    {
        double gbps = ReadBandwidth(device, device.Id == "ilgpu-cpu" ? 1L << 20 : 256L << 20, repeats);
        if (device is CpuDevice cpu)
        {
            double flops = 0;
            var fma = Time(() => flops = MachineLimits.FmaLoop(2_000_000, cpu.Pool), repeats);
            return new(gbps, flops / (fma.Median * 1e6));
        }
        var g = (IlgpuDevice)device;
        var acc = g.Accelerator;
        bool simulator = acc.AcceleratorType == AcceleratorType.CPU;
        int threads = simulator ? 64 : acc.NumMultiprocessors * acc.MaxNumThreadsPerMultiprocessor;
        using var output = acc.Allocate1D<float>(threads);
        double f = 0;
        var fm = Time(() => { lock (g.Gate) { f = MachineLimitsIlgpu.Fma(acc, output.View, simulator ? 1000 : 20000); acc.Synchronize(); } }, repeats);
        return new(gbps, f / (fm.Median * 1e6));
    }

    /// <summary>Streaming-read bandwidth (GB/s) over a buffer of <paramref name="bytes"/> bytes: the same amount of data
    /// an operation reads, so cache effects are the same for both.</summary>
    public static double ReadBandwidth(Device device, long bytes, int repeats = 5)
    {
        long n = Math.Max(1024, bytes / 4);
        if (device is CpuDevice cpu)
        {
            var data = new float[n];
            for (int i = 0; i < data.Length; i++) data[i] = i % 7 * 0.5f;
            var read = Time(() => MachineLimits.StreamingSum(data, cpu.Pool), repeats);
            return n * 4.0 / (read.Median * 1e6);
        }
        var g = (IlgpuDevice)device;
        var acc = g.Accelerator;
        int threads = acc.AcceleratorType == AcceleratorType.CPU ? 64 : acc.NumMultiprocessors * acc.MaxNumThreadsPerMultiprocessor;
        using var buf = acc.Allocate1D<float>(n);
        using var partial = acc.Allocate1D<float>(threads);
        buf.MemSetToZero();
        var r = Time(() => { lock (g.Gate) { MachineLimitsIlgpu.StreamRead(acc, buf.View, partial.View); acc.Synchronize(); } }, repeats);
        return n * 4.0 / (r.Median * 1e6);
    }

    /// <summary>Times one workload of <paramref name="spec"/> on <paramref name="device"/>; % bandwidth is against a streaming
    /// read of the same number of bytes measured right before it, % peak against <paramref name="limits"/>.</summary>
    public static BenchResult Run(OpSpec spec, BenchCase c, Device device, DeviceLimits limits, int repeats)
    {
        using var prepared = spec.Prepare?.Invoke(device, c.Call) ?? new PreparedCall(() => spec.Run(device, c.Call));
        double bandwidth = ReadBandwidth(device, (long)c.Bytes, repeats);
        var (median, min, max) = Time(prepared.Run, repeats);
        double gbps = c.Bytes / (median * 1e6), gflops = c.Flops / (median * 1e6);
        return new(spec.Name, device.Id, c.Shape, c.Size, median, min, max, gbps, gflops,
            100 * gbps / bandwidth, limits.Gflops > 0 ? 100 * gflops / limits.Gflops : 0);
    }
}
