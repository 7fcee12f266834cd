using BenchmarkDotNet.Attributes;

namespace PoolKernels.Benchmarks;

/// <summary>
/// The cost of the host-tensor overloads against the span and device-tensor overloads on the same data (issue 14's
/// "host overloads within 10% of the span overloads"): spatial_pool GeM [64,2048,7,7] and sequence_pool mean [32,512,768]
/// on simd. The host overloads return a tensor in pooled memory that its disposal returns (a result not disposed costs a
/// fresh array per call: <c>SpatialHostKept</c>); the span and device-tensor overloads write into buffers the caller keeps.
/// Use the paired A/B: <c>--paired HostOverloadBenchmarks SpatialSpan SpatialHost SpatialHostKept SpatialDevice</c>.
/// </summary>
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 15)]
[MinColumn]
[MemoryDiagnoser]
public class HostOverloadBenchmarks
{
    private Device _simd = null!;
    private float[] _x = [], _xo = [], _h = [], _ho = [];
    private long[] _mask = [];
    private HostTensor _xt = null!, _ht = null!, _mt = null!;
    private DeviceTensor _xd = null!, _xod = null!;
    private readonly SpatialPoolOptions _gem = new() { Mode = SpatialPoolMode.Gem };
    private readonly SequencePoolOptions _mean = SequencePoolOptions.Parse("mean");

    [GlobalSetup]
    public void Setup()
    {
        _simd = Device.Open("simd");
        var r = new Random(1);
        _x = new float[64 * 2048 * 49]; for (int i = 0; i < _x.Length; i++) _x[i] = (float)r.NextDouble();
        _xo = new float[64 * 2048];
        _xt = HostTensor.From(_x, 64, 2048, 7, 7);
        _xd = _simd.Upload(_xt); _xod = _simd.Allocate(DType.F32, 64, 2048);
        _h = new float[32 * 512 * 768]; for (int i = 0; i < _h.Length; i++) _h[i] = (float)(r.NextDouble() * 2 - 1);
        _mask = new long[32 * 512]; for (int i = 0; i < _mask.Length; i++) _mask[i] = i % 512 < 300 ? 1 : 0;
        _ho = new float[32 * 768];
        _ht = HostTensor.From(_h, 32, 512, 768); _mt = HostTensor.From(_mask, 32, 512);
    }

    [GlobalCleanup]
    public void Cleanup() => _simd.Dispose();

    [Benchmark(Baseline = true, Description = "spatial_pool gem span overload")]
    public void SpatialSpan() => _simd.SpatialPool(_x, _xo, 64, 2048, 7, 7, _gem);

    [Benchmark(Description = "spatial_pool gem HostTensor overload, result disposed")]
    public void SpatialHost() { using var r = _simd.SpatialPool(_xt, _gem); }

    [Benchmark(Description = "spatial_pool gem DeviceTensor overload")]
    public void SpatialDevice() => _simd.SpatialPool(_xd, _xod, _gem);

    [Benchmark(Description = "spatial_pool gem HostTensor overload, result not disposed")]
    public HostTensor SpatialHostKept() => _simd.SpatialPool(_xt, _gem);

    [Benchmark(Description = "sequence_pool mean span overload")]
    public void SequenceSpan() => _simd.SequencePool<float, long>(_h, _mask, _ho, 32, 512, 768, _mean);

    [Benchmark(Description = "sequence_pool mean HostTensor overload, result disposed")]
    public void SequenceHost() { using var r = _simd.SequencePool(_ht, _mt, _mean); }
}
