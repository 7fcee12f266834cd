using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Spatial;

namespace PoolKernels.Benchmarks;

/// <summary>Builds small ONNX graphs for the spatial benchmarks' ONNX Runtime peers (protobuf via OnnxSharp).</summary>
internal static class SpatialOnnx
{
    public static ValueInfoProto Value(string name, TensorProto.Types.DataType type, params long[] shape)
    {
        var s = new TensorShapeProto();
        foreach (long d in shape) s.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto
            {
                TensorType = new TypeProto.Types.Tensor
                {
                    ElemType = (int)type,
                    Shape = s
                }
            }
        };
    }

    public static ValueInfoProto F32(string name, params long[] shape) => Value(name, TensorProto.Types.DataType.Float, shape);

    public static NodeProto Node(string op, string[] inputs, string[] outputs, params AttributeProto[] attrs)
    {
        var n = new NodeProto { OpType = op, Name = op + "_" + outputs[0] };
        n.Input.AddRange(inputs); n.Output.AddRange(outputs); n.Attribute.AddRange(attrs);
        return n;
    }

    public static AttributeProto Ints(string name, params long[] v)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(v);
        return a;
    }

    public static AttributeProto Int(string name, long v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = v };

    public static TensorProto Scalar(string name, float v)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.FloatData.Add(v);
        return t;
    }

    public static TensorProto Longs(string name, params long[] v)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(v.Length); t.Int64Data.AddRange(v);
        return t;
    }

    public static InferenceSession Session(ValueInfoProto[] inputs, ValueInfoProto[] outputs, NodeProto[] nodes, params TensorProto[] init)
    {
        var g = new GraphProto { Name = "bench" };
        g.Input.AddRange(inputs); g.Output.AddRange(outputs); g.Node.AddRange(nodes); g.Initializer.AddRange(init);
        var m = new ModelProto { IrVersion = 8, Graph = g, ProducerName = "PoolKernels.Benchmarks" };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        // as the other classes: ORT's threads follow Environment.ProcessorCount like WorkerPool.Shared, so
        // DOTNET_PROCESSOR_COUNT=1 puts both sides on one thread
        var so = new SessionOptions
        {
            IntraOpNumThreads = Environment.ProcessorCount,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL
        };
        return new InferenceSession(m.ToByteArray(), so);
    }

    public static float[] Random(long n, int seed)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (long i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1);
        return v;
    }
}

/// <summary>pool2d max 3×3 stride 2 padding 1 on [32,64,112,112] (the ResNet stem pool): simd vs ONNX Runtime MaxPool,
/// beside a streaming read of the same input (the machine's bandwidth limit for this op).</summary>
[ShortRunJob]
public class Pool2dMaxBenchmarks
{
    private const int B = 32, C = 64, H = 112, W = 112, Ho = 56, Wo = 56;
    private float[] _x = [], _o = [];
    private Device _simd = null!;
    private readonly Pool2dOptions _opt = new() { Mode = Pool2dMode.Max, Kernel = (3, 3), Stride = (2, 2), Padding = (1, 1) };
    private InferenceSession _ort = null!;
    private OrtValue _xin = null!, _yout = null!;
    private RunOptions _run = null!;

    [GlobalSetup]
    public void Setup()
    {
        _x = SpatialOnnx.Random((long)B * C * H * W, 1);
        _o = new float[B * C * Ho * Wo];
        _simd = Device.Open("simd");
        _ort = SpatialOnnx.Session([SpatialOnnx.F32("x", B, C, H, W)], [SpatialOnnx.F32("y", B, C, Ho, Wo)],
            [SpatialOnnx.Node("MaxPool", ["x"], ["y"], SpatialOnnx.Ints("kernel_shape", 3, 3), SpatialOnnx.Ints("strides", 2, 2),
                SpatialOnnx.Ints("pads", 1, 1, 1, 1))]);
        _xin = OrtValue.CreateTensorValueFromMemory(_x, [B, C, H, W]);
        _yout = OrtValue.CreateTensorValueFromMemory(new float[_o.Length], [B, C, Ho, Wo]);
        _run = new RunOptions();
    }

    [Benchmark(Baseline = true)]
    public void OrtMaxPool() => _ort.Run(_run, ["x"], [_xin], ["y"], [_yout]);

    [Benchmark]
    public void SimdPool2d() => _simd.Pool2d(_x, _o, B, C, H, W, _opt);

    [Benchmark]
    public float StreamingRead() => TensorPrimitives.Sum(_x);
}

/// <summary>spatial_pool gem p=3 + normalize on [64,2048,7,7] (a ResNet-50 retrieval head): simd vs ONNX Runtime composed
/// of Clip, Pow, GlobalAveragePool, Pow, LpNormalization, beside a streaming read of the same input.</summary>
[ShortRunJob]
public class GemNormalizeBenchmarks
{
    private const int B = 64, C = 2048, H = 7, W = 7;
    private float[] _x = [], _o = [];
    private Device _simd = null!;
    private readonly SpatialPoolOptions _opt = new() { Mode = SpatialPoolMode.Gem, P = 3, Eps = 1e-6f, Normalize = true };
    private InferenceSession _ort = null!;
    private OrtValue _xin = null!, _yout = null!;
    private RunOptions _run = null!;

    [GlobalSetup]
    public void Setup()
    {
        _x = SpatialOnnx.Random((long)B * C * H * W, 2);
        _o = new float[B * C];
        _simd = Device.Open("simd");
        _ort = SpatialOnnx.Session([SpatialOnnx.F32("x", B, C, H, W)], [SpatialOnnx.F32("y", B, C, 1, 1)],
        [
            SpatialOnnx.Node("Clip", ["x", "eps"], ["c"]),
            SpatialOnnx.Node("Pow", ["c", "p"], ["cp"]),
            SpatialOnnx.Node("GlobalAveragePool", ["cp"], ["m"]),
            SpatialOnnx.Node("Pow", ["m", "inv_p"], ["g"]),
            SpatialOnnx.Node("LpNormalization", ["g"], ["y"], SpatialOnnx.Int("axis", 1), SpatialOnnx.Int("p", 2)),
        ], SpatialOnnx.Scalar("eps", 1e-6f), SpatialOnnx.Scalar("p", 3f), SpatialOnnx.Scalar("inv_p", 1f / 3));
        _xin = OrtValue.CreateTensorValueFromMemory(_x, [B, C, H, W]);
        _yout = OrtValue.CreateTensorValueFromMemory(new float[B * C], [B, C, 1, 1]);
        _run = new RunOptions();
    }

    [Benchmark(Baseline = true)]
    public void OrtComposed() => _ort.Run(_run, ["x"], [_xin], ["y"], [_yout]);

    [Benchmark]
    public void SimdGemNormalize() => _simd.SpatialPool(_x, _o, B, C, H, W, _opt);

    [Benchmark]
    public float StreamingRead() => TensorPrimitives.Sum(_x);
}

/// <summary>mask_pool, 100 soft masks on x [8,256,64,64]: simd vs ONNX Runtime's MatMul formulation
/// (Transpose, MatMul, ReduceSum, Add, Div), beside a streaming read of x and the masks and an FMA loop of the same
/// 2·B·Q·C·HW FLOPs.</summary>
[ShortRunJob]
public class MaskPoolBenchmarks
{
    private const int B = 8, C = 256, H = 64, W = 64, Q = 100, HW = H * W;
    private const double Flops = 2.0 * B * Q * C * HW;
    private float[] _x = [], _m = [];
    private Device _simd = null!;
    private DeviceTensor _xd = null!, _md = null!, _od = null!;
    private InferenceSession _ort = null!;
    private OrtValue _xin = null!, _min = null!, _yout = null!;
    private RunOptions _run = null!;

    [GlobalSetup]
    public void Setup()
    {
        _x = SpatialOnnx.Random((long)B * C * HW, 3);
        _m = SpatialOnnx.Random((long)B * Q * HW, 4);
        for (int i = 0; i < _m.Length; i++) _m[i] = 0.5f + 0.5f * _m[i]; // soft masks in [0,1]
        _simd = Device.Open("simd");
        _xd = _simd.Upload<float>(_x, B, C, H, W);
        _md = _simd.Upload<float>(_m, B, Q, H, W);
        _od = _simd.Allocate(DType.F32, B, Q, C);
        _ort = SpatialOnnx.Session([SpatialOnnx.F32("x", B, C, HW), SpatialOnnx.F32("m", B, Q, HW)], [SpatialOnnx.F32("y", B, Q, C)],
        [
            SpatialOnnx.Node("Transpose", ["x"], ["xt"], SpatialOnnx.Ints("perm", 0, 2, 1)),
            SpatialOnnx.Node("MatMul", ["m", "xt"], ["s"]),
            SpatialOnnx.Node("ReduceSum", ["m", "axes"], ["ws"], SpatialOnnx.Int("keepdims", 1)),
            SpatialOnnx.Node("Add", ["ws", "eps"], ["den"]),
            SpatialOnnx.Node("Div", ["s", "den"], ["y"]),
        ], SpatialOnnx.Longs("axes", -1), SpatialOnnx.Scalar("eps", 1e-8f));
        _xin = OrtValue.CreateTensorValueFromMemory(_x, [B, C, HW]);
        _min = OrtValue.CreateTensorValueFromMemory(_m, [B, Q, HW]);
        _yout = OrtValue.CreateTensorValueFromMemory(new float[B * Q * C], [B, Q, C]);
        _run = new RunOptions();
    }

    [Benchmark(Baseline = true)]
    public void OrtMatMul() => _ort.Run(_run, ["x", "m"], [_xin, _min], ["y"], [_yout]);

    [Benchmark]
    public void SimdMaskPool() => _simd.MaskPool(_xd, _md, _od, MaskType.Soft);

    [Benchmark]
    public float StreamingRead() => TensorPrimitives.Sum(_x) + TensorPrimitives.Sum(_m);

    [Benchmark]
    public double FmaLoopSameFlops() => MachineLimits.FmaFlops(Flops);
}

/// <summary>similarity_topk k=10, 1000 queries × 100000 db rows × 256: simd vs ONNX Runtime Gemm(transB) + TopK, beside a
/// streaming read of db and an FMA loop of the same 2·Q·N·D FLOPs.</summary>
[ShortRunJob]
public class SimilarityTopkBenchmarks
{
    private const int Q = 1000, N = 100000, D = 256, K = 10;
    private const double Flops = 2.0 * Q * N * D;
    private float[] _q = [], _db = [];
    private Device _simd = null!;
    private DeviceTensor _qd = null!, _dbd = null!, _idx = null!, _score = null!;
    private InferenceSession _ort = null!;
    private OrtValue _qin = null!, _dbin = null!, _vout = null!, _iout = null!;
    private RunOptions _run = null!;

    [GlobalSetup]
    public void Setup()
    {
        _q = SpatialOnnx.Random((long)Q * D, 5);
        _db = SpatialOnnx.Random((long)N * D, 6);
        _simd = Device.Open("simd");
        _qd = _simd.Upload<float>(_q, Q, D);
        _dbd = _simd.Upload<float>(_db, N, D);
        _idx = _simd.Allocate(DType.I64, Q, K);
        _score = _simd.Allocate(DType.F32, Q, K);
        _ort = SpatialOnnx.Session([SpatialOnnx.F32("q", Q, D), SpatialOnnx.F32("db", N, D)],
            [SpatialOnnx.F32("v", Q, K), SpatialOnnx.Value("i", TensorProto.Types.DataType.Int64, Q, K)],
        [
            SpatialOnnx.Node("Gemm", ["q", "db"], ["s"], SpatialOnnx.Int("transB", 1)),
            SpatialOnnx.Node("TopK", ["s", "k"], ["v", "i"], SpatialOnnx.Int("axis", 1)),
        ], SpatialOnnx.Longs("k", K));
        _qin = OrtValue.CreateTensorValueFromMemory(_q, [Q, D]);
        _dbin = OrtValue.CreateTensorValueFromMemory(_db, [N, D]);
        _vout = OrtValue.CreateTensorValueFromMemory(new float[Q * K], [Q, K]);
        _iout = OrtValue.CreateTensorValueFromMemory(new long[Q * K], [Q, K]);
        _run = new RunOptions();
    }

    [Benchmark(Baseline = true)]
    public void OrtGemmTopK() => _ort.Run(_run, ["q", "db"], [_qin, _dbin], ["v", "i"], [_vout, _iout]);

    [Benchmark]
    public void SimdSimilarityTopk() => _simd.SimilarityTopk(_qd, _dbd, _idx, _score, K);

    [Benchmark]
    public float StreamingRead() => TensorPrimitives.Sum(_db);

    [Benchmark]
    public double FmaLoopSameFlops() => MachineLimits.FmaFlops(Flops);
}
