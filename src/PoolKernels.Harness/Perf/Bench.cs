using ILGPU;
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
        var fma = new FmaPlan(repeats);
        Dispatch.Run(device, ref fma);
        return new(gbps, fma.Gflops);
    }

    /// <summary>Streaming-read bandwidth (GB/s) over a buffer of <paramref name="bytes"/> bytes: the same amount of data
    /// an operation reads, so cache effects are the same for both.</summary>
    public static double ReadBandwidth(Device device, long bytes, int repeats = 5)
    {
        var read = new ReadPlan(Math.Max(1024, bytes / 4), repeats);
        Dispatch.Run(device, ref read);
        return read.Gbps;
    }

    /// <summary>The FMA peak, timed inside one dispatch (on an accelerator: each run synchronizes).</summary>
    private struct FmaPlan(int repeats) : IPlan
    {
        public double Gflops;

        public void Reference() => Cpu(WorkerPool.Shared);

        public void Simd(CpuDevice cpu) => Cpu(cpu.Pool);

        private void Cpu(WorkerPool pool)
        {
            double flops = 0;
            var fma = Time(() => flops = MachineLimits.FmaLoop(2_000_000, pool), repeats);
            Gflops = flops / (fma.Median * 1e6);
        }

        public void Ilgpu(IlgpuScope s)
        {
            var acc = s.Accelerator;
            bool simulator = acc.AcceleratorType == AcceleratorType.CPU;
            int threads = simulator ? 64 : acc.NumMultiprocessors * acc.MaxNumThreadsPerMultiprocessor;
            var output = s.Temp<float>(threads);
            var g = s.Device;
            double f = 0;
            var fm = Time(() => { f = MachineLimitsIlgpu.Fma(acc, output, simulator ? 1000 : 20000); g.Synchronize(); }, repeats);
            Gflops = f / (fm.Median * 1e6);
        }
    }

    /// <summary>The streaming-read bandwidth over <paramref name="n"/> floats, timed inside one dispatch.</summary>
    private struct ReadPlan(long n, int repeats) : IPlan
    {
        public double Gbps;

        public void Reference() => Cpu(WorkerPool.Shared);

        public void Simd(CpuDevice cpu) => Cpu(cpu.Pool);

        private void Cpu(WorkerPool pool)
        {
            var data = new float[n];
            for (int i = 0; i < data.Length; i++) data[i] = i % 7 * 0.5f;
            var read = Time(() => MachineLimits.StreamingSum(data, pool), repeats);
            Gbps = n * 4.0 / (read.Median * 1e6);
        }

        public void Ilgpu(IlgpuScope s)
        {
            var acc = s.Accelerator;
            int threads = acc.AcceleratorType == AcceleratorType.CPU ? 64 : acc.NumMultiprocessors * acc.MaxNumThreadsPerMultiprocessor;
            var buf = s.Temp<float>(n);
            var partial = s.Temp<float>(threads);
            buf.MemSetToZero(s.Stream);
            var g = s.Device;
            var r = Time(() => { MachineLimitsIlgpu.StreamRead(acc, buf, partial); g.Synchronize(); }, repeats);
            Gbps = n * 4.0 / (r.Median * 1e6);
        }
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
