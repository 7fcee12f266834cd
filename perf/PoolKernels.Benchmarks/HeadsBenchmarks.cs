using BenchmarkDotNet.Attributes;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Heads;
using PoolKernels.Verification;

namespace PoolKernels.Benchmarks;

/// <summary>
/// The trainable pooling heads on <c>simd</c> beside the same network in ONNX Runtime CPU (a graph of MatMul,
/// LayerNormalization, Softmax attention, Split, Gelu (exact), ReduceMean, LpNormalization built with OnnxSharp, all
/// weights as initializers, the input-independent queries precomputed as for PoolingHead). The GEMM alone: <see
/// cref="HeadsGemmBenchmarks"/>. Head: D = 1024, R = 256 latents, 8 heads of dh = 128, FF width F = D (multiplier 1, to keep a run short).
/// multi_layer_pool: B = 32, L = 24. resampler: B = 8, N = 512 tokens.
/// </summary>
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 8), MinColumn]
public class HeadsBenchmarks : IDisposable
{
    private const int D = 1024, R = 256, H = 8, Dh = 128, F = 1024, L = 24, Bm = 32, Br = 8, N = 512;
    private Device _simd = null!;
    private PoolingHead _head = null!;
    private DeviceTensor _layers = null!, _hidden = null!, _outM = null!, _outR = null!;
    private InferenceSession _ortM = null!, _ortR = null!;
    private OrtValue[] _inM = [], _outMo = [], _inR = [], _outRo = [];
    private RunOptions _runOptions = null!;

    [GlobalSetup]
    public void Setup()
    {
        var r = new RandomTensors(42);
        var w = HeadsFamily.RandomWeights(r, D, R, H, Dh, F, L);
        _simd = Device.Open("simd");
        _head = PoolingHead.FromTensors(_simd, w, H);
        var layers = r.Floats(DType.F32, -2, 2, Bm, L, D);
        var hidden = r.Floats(DType.F32, -2, 2, Br, N, D);
        _layers = _simd.Upload(layers); _hidden = _simd.Upload(hidden);
        _outM = _simd.Allocate(DType.F32, Bm, D); _outR = _simd.Allocate(DType.F32, Br, D);

        // The input-independent queries, as PoolingHead precomputes them: LNctx(latents)·Wqᵀ·dh^-0.5 as [1, H, R, dh].
        using var reference = Device.Open("reference");
        var lt = _simd.LayerNorm(w[PoolingHead.Latents], w[PoolingHead.NormCtxW], w[PoolingHead.NormCtxB]);
        var q = _simd.Linear(lt, w[PoolingHead.ToQ]).AsSpan<float>().ToArray();
        var qh = new float[H * R * Dh];
        float scale = 1f / MathF.Sqrt(Dh);
        for (int h = 0; h < H; h++) for (int i = 0; i < R; i++) for (int e = 0; e < Dh; e++) qh[(h * R + i) * Dh + e] = q[i * H * Dh
            + h * Dh + e] * scale;

        var so = new SessionOptions
        {
            IntraOpNumThreads = Environment.ProcessorCount,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL
        };
        _ortM = new InferenceSession(Graph(w, qh, Bm, L, posEmb: true), so);
        _ortR = new InferenceSession(Graph(w, qh, Br, N, posEmb: false), so);
        _inM = [OrtValue.CreateTensorValueFromMemory(layers.AsSpan<float>().ToArray(), [Bm, L, D])];
        _outMo = [OrtValue.CreateTensorValueFromMemory(new float[Bm * D], [Bm, D])];
        _inR = [OrtValue.CreateTensorValueFromMemory(hidden.AsSpan<float>().ToArray(), [Br, N, D])];
        _outRo = [OrtValue.CreateTensorValueFromMemory(new float[Br * D], [Br, D])];
        _runOptions = new RunOptions();

        // Same answers before timing anything.
        SimdMultiLayer(); OrtMultiLayer(); SimdResampler(); OrtResampler();
        Agree(_outM.ToTensor().AsSpan<float>(), _outMo[0].GetTensorDataAsSpan<float>(), "multi_layer_pool");
        Agree(_outR.ToTensor().AsSpan<float>(), _outRo[0].GetTensorDataAsSpan<float>(), "resampler");
    }

    private static void Agree(ReadOnlySpan<float> a, ReadOnlySpan<float> b, string what)
    {
        for (int i = 0; i < a.Length; i++)
            if (Math.Abs(a[i] - b[i]) > 1e-3f)
                throw new InvalidOperationException($"{what}: ORT and simd disagree at {i}: {b[i]} vs {a[i]}");
    }

    private static float[] Transposed(HostTensor w, int rowFrom = 0, int rows = -1)
    {
        int n = rows < 0 ? w.Shape[0] : rows, k = w.Shape[1];
        var s = w.AsSpan<float>();
        var t = new float[n * k];
        for (int j = 0; j < n; j++) for (int i = 0; i < k; i++) t[i * n + j] = s[(rowFrom + j) * k + i];
        return t;
    }

    /// <summary>The resampler (optionally with the layer-position embedding) as an ONNX graph over x [b, n, D].</summary>
    private static byte[] Graph(Dictionary<string, HostTensor> w, float[] qh, int b, int n, bool posEmb)
    {
        const TensorProto.Types.DataType Fl = TensorProto.Types.DataType.Float;
        float[] A(string name) => w[name].AsSpan<float>().ToArray();
        var g = new OnnxGraph().Input("x", Fl, b, n, D).Output("out", Fl, b, D)
            .Constant("n0w", A(PoolingHead.Norm0W), D).Constant("n0b", A(PoolingHead.Norm0B), D)
            .Constant("n1w", A(PoolingHead.Norm1W), D).Constant("n1b", A(PoolingHead.Norm1B), D)
            .Constant("wk", Transposed(w[PoolingHead.ToKv], 0, H * Dh), D, H * Dh)
            .Constant("wv", Transposed(w[PoolingHead.ToKv], H * Dh, H * Dh), D, H * Dh)
            .Constant("wo", Transposed(w[PoolingHead.ToOut]), H * Dh, D)
            .Constant("w1", Transposed(w[PoolingHead.Net0W]), D, 2 * F).Constant("b1", A(PoolingHead.Net0B), 2 * F)
            .Constant("w2", Transposed(w[PoolingHead.Net2W]), F, D).Constant("b2", A(PoolingHead.Net2B), D)
            .Constant("latents", A(PoolingHead.Latents), R, D)
            .Constant("qh", qh, 1, H, R, Dh)
            .Constant("kvshape", [(long)b, n, H, Dh], 4).Constant("oshape", [(long)b, R, H * Dh], 3)
            .Constant("split", [(long)F, F], 2).Constant("axis1", [1L], 1);
        string x = "x";
        if (posEmb)
        {
            g.Constant("pos", A(PoolingHead.PosEmb).AsSpan(0, n * D).ToArray(), n, D).Node("Add", ["x", "pos"], ["xp"]);
            x = "xp";
        }
        g.Node("LayerNormalization", [x, "n0w", "n0b"], ["xn"], OnnxGraph.Int("axis", -1), OnnxGraph.Float("epsilon", 1e-5f))
            .Node("MatMul", ["xn", "wk"], ["k"]).Node("MatMul", ["xn", "wv"], ["v"])
            .Node("Reshape", ["k", "kvshape"], ["k4"]).Node("Transpose", ["k4"], ["kt"], OnnxGraph.Ints("perm", 0, 2, 3, 1))
            .Node("Reshape", ["v", "kvshape"], ["v4"]).Node("Transpose", ["v4"], ["vt"], OnnxGraph.Ints("perm", 0, 2, 1, 3))
            .Node("MatMul", ["qh", "kt"], ["s"]).Node("Softmax", ["s"], ["p"], OnnxGraph.Int("axis", -1))
            .Node("MatMul", ["p", "vt"], ["o4"]).Node("Transpose", ["o4"], ["ot"], OnnxGraph.Ints("perm", 0, 2, 1, 3))
            .Node("Reshape", ["ot", "oshape"], ["o"])
            .Node("MatMul", ["o", "wo"], ["ao"]).Node("Add", ["ao", "latents"], ["y"])
            .Node("LayerNormalization", ["y", "n1w", "n1b"], ["z"], OnnxGraph.Int("axis", -1), OnnxGraph.Float("epsilon", 1e-5f))
            .Node("MatMul", ["z", "w1"], ["h0"]).Node("Add", ["h0", "b1"], ["h1"])
            .Node("Split", ["h1", "split"], ["a", "gg"], OnnxGraph.Int("axis", -1))
            .Node("Gelu", ["gg"], ["ge"]).Node("Mul", ["a", "ge"], ["gt"])
            .Node("MatMul", ["gt", "w2"], ["f0"]).Node("Add", ["f0", "b2"], ["f1"]).Node("Add", ["f1", "y"], ["y2"])
            .Node("ReduceMean", ["y2", "axis1"], ["mean"], OnnxGraph.Int("keepdims", 0))
            .Node("LpNormalization", ["mean"], ["out"], OnnxGraph.Int("axis", 1), OnnxGraph.Int("p", 2));
        return g.Build(20);
    }

    [Benchmark(Description = "simd multi_layer_pool B32 L24")]
    public void SimdMultiLayer() => _head.MultiLayer(_layers, _outM);

    [Benchmark(Description = "ORT multi_layer_pool B32 L24")]
    public void OrtMultiLayer() => _ortM.Run(_runOptions, ["x"], _inM, ["out"], _outMo);

    [Benchmark(Description = "simd resampler B8 N512")]
    public void SimdResampler() => _head.Resampler(_hidden, null, _outR);

    [Benchmark(Description = "ORT resampler B8 N512")]
    public void OrtResampler() => _ortR.Run(_runOptions, ["x"], _inR, ["out"], _outRo);

    [GlobalCleanup]
    public void Dispose()
    {
        GC.SuppressFinalize(this);
        foreach (var v in _inM.Concat(_outMo).Concat(_inR).Concat(_outRo)) v.Dispose();
        _ortM?.Dispose(); _ortR?.Dispose(); _runOptions?.Dispose();
        _head?.Dispose();
        foreach (var t in new[] { _layers, _hidden, _outM, _outR }) t?.Dispose();
        _simd?.Dispose();
    }
}

/// <summary>The heads' GEMM alone at their largest shape ([B·R, D] × [D, D]ᵀ, B = 32, R = 256, D = 1024) on simd beside an FMA
/// loop doing the same number of FLOPs: the time ratio FMA / GEMM is the GEMM's fraction of the measured FMA peak. Compare
/// the Min columns: the FMA loop splits its work statically over the workers, so on a shared machine one delayed worker
/// stretches its mean, while the GEMM's dynamic work items rebalance.</summary>
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 15), MinColumn]
public class HeadsGemmBenchmarks
{
    private const int M = 32 * 256, D = 1024;
    private float[] _x = [], _y = [], _packed = [];
    private long _fmaIterations;

    [GlobalSetup]
    public void Setup()
    {
        var r = new RandomTensors(42);
        _x = r.Floats(DType.F32, -1, 1, M, D).AsSpan<float>().ToArray();
        var w = r.Floats(DType.F32, -1, 1, D, D).AsSpan<float>().ToArray();
        _y = new float[M * D];
        _packed = HeadsSimd.AllocatePacked(HeadsSimd.PackedLength(D, D)); // 64-byte aligned at AlignedOffset, as the heads keep it
        HeadsSimd.Pack(w, D, D, _packed.AsSpan(HeadsSimd.AlignedOffset(_packed)));
        _fmaIterations = (long)(2.0 * M * D * D / (2.0 * 8 * (System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated
            ? 16 : 8) * WorkerPool.Shared.Workers));
    }

    [Benchmark(Baseline = true, Description = "FMA loop, the GEMM's FLOPs (peak)")]
    public double FmaPeak() => MachineLimits.FmaLoop(_fmaIterations);

    [Benchmark(Description = "simd GEMM [8192,1024]x[1024,1024]^T")]
    public unsafe void SimdGemm()
    {
        fixed (float* x = _x) fixed (float* p = &_packed[HeadsSimd.AlignedOffset(_packed)]) fixed (float* y = _y)
            HeadsSimd.Gemm(x, p, null, null, y, M, D, D);
    }
}
