using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using PoolKernels.Kernels;

namespace PoolKernels.Benchmarks;

/// <summary>
/// The engine-attention goals, simd, each beside its own yardstick in the same run:
/// <list type="bullet">
/// <item>score modifiers: sdpa with softcap 30 + ALiBi + sinks against plain sdpa on the issue-3 workload (B8 H12 T512
/// E64, F32, key padding); goal ≤ 1.15×.</item>
/// <item>decode: sdpa_paged B32 Hq32 Hkv8 E128, 4096 keys each, page 16, Tq 1, against a multi-threaded streaming read
/// (a sum over as many bytes as the decode must read: its K and V); goal ≥ 70% of that read's bandwidth, and ≥ 50% for B1
/// with 32768 keys (the split over keys); the F16 cache against a read of half the bytes.</item>
/// <item>prefill through the cache: sdpa_paged Tq = Tk = 2048 (B1 H12 E64, page 16, causal bottom_right) against sdpa on
/// the same keys stored contiguously; goal ≤ 1.2×.</item>
/// </list>
/// Run the pairs with the same-process A/B (<c>--paired EngineAttentionBenchmarks Plain Modified</c>, ...): the goals are
/// ratios, and the shared machine's noise is larger than BenchmarkDotNet's separate processes can cancel.
/// </summary>
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 10)]
[MinColumn]
public class EngineAttentionBenchmarks
{
    private const int B = 8, H = 12, T = 512, E = 64;
    private Device _simd = null!;
    private HostTensor _q = null!, _k = null!, _v = null!, _pad = null!;
    private DeviceTensor _dq = null!, _dk = null!, _dv = null!, _dpad = null!, _do = null!, _dl = null!;
    private SdpaOptions _plain = null!, _modified = null!;
    private Paged _decode = null!, _decodeLong = null!, _decodeF16 = null!, _prefill = null!;
    private DeviceTensor _pq = null!, _pk = null!, _pv = null!, _po = null!, _pl = null!;
    private float[] _stream = [], _streamHalf = [], _partial = [];

    /// <summary>A paged workload: device tensors over a shuffled block table.</summary>
    private sealed record Paged(DeviceTensor Q, DeviceTensor K, DeviceTensor V, DeviceTensor Table, DeviceTensor Lens, DeviceTensor Out,
        DeviceTensor Lse, long CacheBytes);

    private static Paged MakePaged(Device d, int b, int len, int hq, int hkv, int e, int tq, DType dt, int seed)
    {
        var rng = new Random(seed);
        int s = 16, per = (len + s - 1) / s, pages = b * per;
        var order = Enumerable.Range(0, pages).OrderBy(_ => rng.Next()).ToArray();
        var table = new int[b * per];
        for (int i = 0; i < table.Length; i++) table[i] = order[i];
        HostTensor R(params int[] shape)
        {
            var a = new float[(int)Shape.Count(shape)];
            for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
            var t = HostTensor.From(a, shape);
            return dt == DType.F32 ? t : t.To(dt);
        }
        return new Paged(d.Upload(R(b, hq, tq, e)), d.Upload(R(pages, s, hkv, e)), d.Upload(R(pages, s, hkv, e)),
            d.Upload(HostTensor.From(table, b, per)), d.Upload(HostTensor.From(Enumerable.Repeat(len, b).ToArray(), b)),
            d.Allocate(DType.F32, b, hq, tq, e), d.Allocate(DType.F32, b, hq, tq), 2L * b * len * hkv * e * dt.Size());
    }

    [GlobalSetup]
    public void Setup()
    {
        _simd = Device.Open("simd");
        var r = new Random(1);
        HostTensor Rand(params int[] shape)
        {
            var a = new float[(int)Shape.Count(shape)];
            for (int i = 0; i < a.Length; i++) a[i] = (float)(r.NextDouble() * 2 - 1);
            return HostTensor.From(a, shape);
        }
        _q = Rand(B, H, T, E); _k = Rand(B, H, T, E); _v = Rand(B, H, T, E);
        var pad = new byte[B * T];
        for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) pad[b * T + t] = (byte)(t < T - 37 * b ? 1 : 0);
        _pad = HostTensor.From(pad, B, T);
        _dq = _simd.Upload(_q); _dk = _simd.Upload(_k); _dv = _simd.Upload(_v); _dpad = _simd.Upload(_pad);
        _do = _simd.Allocate(DType.F32, B, H, T, E); _dl = _simd.Allocate(DType.F32, B, H, T);
        _plain = new SdpaOptions();
        _modified = new SdpaOptions
        {
            Softcap = 30,
            AlibiSlopes = Enumerable.Range(0, H).Select(h => MathF.Pow(2, -8f * (h + 1) / H)).ToArray(),
            Sinks = Enumerable.Range(0, H).Select(h => 0.1f * h).ToArray(),
        };
        _decode = MakePaged(_simd, 32, 4096, 32, 8, 128, 1, DType.F32, 2);
        _decodeLong = MakePaged(_simd, 1, 32768, 32, 8, 128, 1, DType.F32, 3);
        _decodeF16 = MakePaged(_simd, 32, 4096, 32, 8, 128, 1, DType.F16, 4);
        _prefill = MakePaged(_simd, 1, 2048, 12, 12, 64, 2048, DType.F32, 5);
        // the prefill's keys, contiguous (bhtd) for sdpa
        var kc = _prefill.K.ToTensor(); var vc = _prefill.V.ToTensor(); var tab = _prefill.Table.ToTensor().ToInt64s();
        var kk = new float[12 * 2048 * 64]; var vv = new float[12 * 2048 * 64];
        for (int j = 0; j < 2048; j++)
            for (int h = 0; h < 12; h++)
            {
                long row = tab[j / 16] * 16 + j % 16;
                kc.AsSpan<float>().Slice((int)((row * 12 + h) * 64), 64).CopyTo(kk.AsSpan((h * 2048 + j) * 64));
                vc.AsSpan<float>().Slice((int)((row * 12 + h) * 64), 64).CopyTo(vv.AsSpan((h * 2048 + j) * 64));
            }
        _pq = _prefill.Q; _pk = _simd.Upload(HostTensor.From(kk, 1, 12, 2048, 64)); _pv = _simd.Upload(HostTensor.From(vv, 1, 12, 2048,
            64));
        _po = _simd.Allocate(DType.F32, 1, 12, 2048, 64); _pl = _simd.Allocate(DType.F32, 1, 12, 2048);
        _stream = new float[_decode.CacheBytes / 4];
        _streamHalf = new float[_decodeF16.CacheBytes / 4];
        _partial = new float[WorkerPool.Shared.Workers * 64];
        new Random(6).NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_stream.AsSpan()));
        Array.Clear(_streamHalf);
        Console.WriteLine($"// decode reads {_decode.CacheBytes / 1e9:F2} GB (F32), {_decodeLong.CacheBytes / 1e9:F2} GB (B1 32768 keys), "
            + $"{_decodeF16.CacheBytes / 1e9:F2} GB (F16)");
    }

    [GlobalCleanup]
    public void Cleanup() => _simd.Dispose();

    [Benchmark(Baseline = true, Description = "sdpa B8 H12 T512 E64 key padding")]
    public void Plain() => _simd.Sdpa(_dq, _dk, _dv, _do, _dl, keyPaddingMask: _dpad, options: _plain);

    [Benchmark(Description = "sdpa + softcap 30 + ALiBi + sinks")]
    public void Modified() => _simd.Sdpa(_dq, _dk, _dv, _do, _dl, keyPaddingMask: _dpad, options: _modified);

    [Benchmark(Description = "streaming read of the decode's bytes (F32)")]
    public void StreamRead() => Stream(_stream);

    [Benchmark(Description = "sdpa_paged decode B32 Hq32/Hkv8 E128 4096 keys F32")]
    public void Decode() => Run(_decode);

    [Benchmark(Description = "streaming read of the B1 decode's bytes")]
    public void StreamReadLong() => Stream(_stream, _decodeLong.CacheBytes / 4);

    [Benchmark(Description = "sdpa_paged decode B1 Hq32/Hkv8 E128 32768 keys F32")]
    public void DecodeLong() => Run(_decodeLong);

    [Benchmark(Description = "streaming read of the decode's bytes (F16)")]
    public void StreamReadHalf() => Stream(_streamHalf);

    [Benchmark(Description = "sdpa_paged decode B32 Hq32/Hkv8 E128 4096 keys F16")]
    public void DecodeF16() => Run(_decodeF16);

    [Benchmark(Description = "sdpa Tq=Tk=2048 B1 H12 E64 bottom_right, contiguous keys")]
    public void PrefillContiguous() => _simd.Sdpa(_pq, _pk, _pv, _po, _pl, options: Attention.PagedDefaults);

    [Benchmark(Description = "sdpa_paged Tq=Tk=2048 B1 H12 E64 page 16")]
    public void PrefillPaged() => Run(_prefill);

    private void Run(Paged p) => _simd.SdpaPaged(p.Q, p.K, p.V, p.Table, p.Lens, p.Out, p.Lse);

    /// <summary>A multi-threaded sum over <paramref name="count"/> floats (default all) of <paramref name="data"/>: the
    /// streaming-read bandwidth this machine gives the simd worker pool.</summary>
    private void Stream(float[] data, long count = -1) => WorkerPool.Shared.Run(new StreamJob(data, count < 0 ? data.Length : count,
        _partial),
        WorkerPool.Shared.Workers * 8);

    private sealed class StreamJob(float[] data, long count, float[] partial) : IParallelJob
    {
        public void Execute(int item, int worker)
        {
            long chunk = (count + WorkerPool.Shared.Workers * 8 - 1) / (WorkerPool.Shared.Workers * 8);
            long a = item * chunk, z = Math.Min(count, a + chunk);
            if (a < z) partial[worker * 16] += TensorPrimitives.Sum(data.AsSpan((int)a, (int)(z - a)));
        }
    }
}
