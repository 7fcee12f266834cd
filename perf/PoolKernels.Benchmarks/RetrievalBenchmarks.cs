using BenchmarkDotNet.Attributes;
using PoolKernels.Kernels;

namespace PoolKernels.Benchmarks;

/// <summary>
/// Issue 18's bandwidth and ratio goals on simd, each beside its yardstick in the same process (use the paired A/B):
/// <list type="bullet">
/// <item><c>hamming_topk</c> of one query batch (32 queries) over a 1M × 1024-bit db (128 MB), k 10, against a streaming
/// read of the same bytes (goal: at least 70% of it; also batches of 1 and 4 queries: Hamming1, Hamming4); <c>binary_search</c> (rescore
/// multiplier 4) over the same db (goal: within 1.2× of hamming_topk). <c>--paired RetrievalBenchmarks StreamDb Hamming
/// BinarySearch</c>.</item>
/// <item><c>similarity_topk</c> 256 queries × 100k × 256 (W7), k 10, over an F32 and an I8 corpus (goal: I8 at least 1.5×
/// faster). <c>--paired RetrievalBenchmarks SimilarityF32 SimilarityI8</c>.</item>
/// </list>
/// </summary>
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 10)]
public class RetrievalBenchmarks : IDisposable
{
    private const int Q = 32, N = 1 << 20, W = 128, K = 10;
    private const int SQ = 256, SN = 100_000, SD = 256;
    private Device _simd = null!;
    private float[] _dbFloats = [];
    private DeviceTensor _db = null!, _packed = null!, _query = null!, _index = null!, _distance = null!, _bIndex = null!, _bScore = null!;
    private DeviceTensor _sq = null!, _f32 = null!, _i8 = null!, _sIndex = null!, _sScore = null!;
    private DeviceTensor _packed1 = null!, _index1 = null!, _distance1 = null!, _packed4 = null!, _index4 = null!, _distance4 = null!;

    [GlobalSetup]
    public void Setup()
    {
        _simd = Device.Open("simd");
        var r = new Random(7);
        var bits = new byte[(long)N * W];
        r.NextBytes(bits);
        _dbFloats = new float[bits.Length / 4];
        Buffer.BlockCopy(bits, 0, _dbFloats, 0, bits.Length); // the same 128 MB, read as floats by the streaming sum
        _db = _simd.Upload<byte>(bits, N, W);
        var q = new float[Q * W * 8];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(r.NextDouble() * 2 - 1);
        _query = _simd.Upload<float>(q, Q, W * 8);
        _packed = _simd.Allocate(DType.U8, Q, W);
        _simd.Quantize(_query, _packed, QuantizePrecision.Ubinary);
        _index = _simd.Allocate(DType.I64, Q, K); _distance = _simd.Allocate(DType.I32, Q, K);
        _bIndex = _simd.Allocate(DType.I64, Q, K); _bScore = _simd.Allocate(DType.F32, Q, K);
        var packed = _packed.ToTensor().Data.ToArray();
        _packed1 = _simd.Upload<byte>(packed.AsSpan(0, W), 1, W);
        _index1 = _simd.Allocate(DType.I64, 1, K); _distance1 = _simd.Allocate(DType.I32, 1, K);
        _packed4 = _simd.Upload<byte>(packed.AsSpan(0, 4 * W), 4, W);
        _index4 = _simd.Allocate(DType.I64, 4, K); _distance4 = _simd.Allocate(DType.I32, 4, K);

        var sq = new float[SQ * SD]; var db = new float[(long)SN * SD];
        for (int i = 0; i < sq.Length; i++) sq[i] = (float)(r.NextDouble() * 2 - 1);
        for (int i = 0; i < db.Length; i++) db[i] = (float)(r.NextDouble() * 2 - 1);
        _sq = _simd.Upload<float>(sq, SQ, SD);
        _f32 = _simd.Upload<float>(db, SN, SD);
        _i8 = _simd.Allocate(DType.I8, SN, SD);
        using (var ranges = _simd.Upload<float>([.. Enumerable.Repeat(-1f, SD), .. Enumerable.Repeat(1f, SD)], 2, SD))
            _simd.Quantize(_f32, _i8, QuantizePrecision.Int8, ranges);
        _sIndex = _simd.Allocate(DType.I64, SQ, K); _sScore = _simd.Allocate(DType.F32, SQ, K);
    }

    /// <summary>The db bytes: 128 MB streamed once.</summary>
    public static long DbBytes => (long)N * W;

    [Benchmark(Baseline = true, Description = "streaming read of the 128 MB db")]
    public float StreamDb() => MachineLimits.StreamingSum(_dbFloats);

    [Benchmark(Description = "hamming_topk 32 × 1M × 1024 bits, k 10")]
    public void Hamming() => _simd.HammingTopk(_packed, _db, _index, _distance, K);

    [Benchmark(Description = "hamming_topk 1 × 1M × 1024 bits, k 10")]
    public void Hamming1() => _simd.HammingTopk(_packed1, _db, _index1, _distance1, K);

    [Benchmark(Description = "hamming_topk 4 × 1M × 1024 bits, k 10")]
    public void Hamming4() => _simd.HammingTopk(_packed4, _db, _index4, _distance4, K);

    [Benchmark(Description = "binary_search 32 × 1M × 1024 bits, k 10, rescore ×4")]
    public void BinarySearch() => _simd.BinarySearch(_query, _db, _bIndex, _bScore, K);

    [Benchmark(Description = "similarity_topk 256 × 100k × 256, F32 corpus")]
    public void SimilarityF32() => _simd.SimilarityTopk(_sq, _f32, _sIndex, _sScore, K);

    [Benchmark(Description = "similarity_topk 256 × 100k × 256, I8 corpus")]
    public void SimilarityI8() => _simd.SimilarityTopk(_sq, _i8, _sIndex, _sScore, K);

    [GlobalCleanup]
    public void Dispose()
    {
        GC.SuppressFinalize(this);
        _simd?.Dispose();
    }
}
