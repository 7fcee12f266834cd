using BenchmarkDotNet.Attributes;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using PoolKernels.Kernels;

namespace PoolKernels.Benchmarks;

/// <summary>
/// sequence_pool mean + normalize over [32, 512, 768] F32 with a ragged mask (lengths 64..512): PoolKernels simd
/// beside ONNX Runtime CPU running the same pooling as a graph (Cast, Unsqueeze, Mul, ReduceSum, Max, Div,
/// LpNormalization — what sentence-transformers exports), and beside a streaming sum over the same 50 MB (the
/// read bandwidth ceiling), all in one run. simd reads only the kept rows; the report counts those bytes.
/// </summary>
public class SequencePoolBenchmarks : IDisposable
{
    private const int B = 32, T = 512, D = 768;
    private float[] _hidden = [];
    private long[] _mask = [];
    private float[] _out = [];
    private Device _simd = null!;
    private readonly SequencePoolOptions _options = SequencePoolOptions.Parse("mean") with { Normalize = true };
    private InferenceSession _session = null!;
    private OrtValue[] _ortInputs = [], _ortOutputs = [];
    private RunOptions _runOptions = null!;

    /// <summary>Fraction of tokens kept by the mask (simd reads only these rows).</summary>
    public double KeptFraction { get; private set; }

    [GlobalSetup]
    public void Setup()
    {
        var r = new Random(42);
        _hidden = new float[B * T * D];
        for (int i = 0; i < _hidden.Length; i++) _hidden[i] = (float)(r.NextDouble() * 2 - 1);
        _mask = new long[B * T];
        long kept = 0;
        for (int b = 0; b < B; b++)
        {
            int len = 64 + r.Next(T - 63);
            for (int t = 0; t < len; t++) _mask[b * T + t] = 1;
            kept += len;
        }
        KeptFraction = (double)kept / (B * T);
        _out = new float[B * D];
        _simd = Device.Open("simd");

        var model = new OnnxGraph()
            .Input("hidden", TensorProto.Types.DataType.Float, B, T, D)
            .Input("mask", TensorProto.Types.DataType.Int64, B, T)
            .Output("out", TensorProto.Types.DataType.Float, B, D)
            .Constant("axis1", [1L], 1).Constant("axis2", [2L], 1).Constant("tiny", [1e-9f])
            .Node("Cast", ["mask"], ["m"], OnnxGraph.Int("to", (long)TensorProto.Types.DataType.Float))
            .Node("Unsqueeze", ["m", "axis2"], ["m3"])
            .Node("Mul", ["hidden", "m3"], ["xm"])
            .Node("ReduceSum", ["xm", "axis1"], ["sum"], OnnxGraph.Int("keepdims", 0))
            .Node("ReduceSum", ["m", "axis1"], ["count"], OnnxGraph.Int("keepdims", 1))
            .Node("Max", ["count", "tiny"], ["count1"])
            .Node("Div", ["sum", "count1"], ["mean"])
            .Node("LpNormalization", ["mean"], ["out"], OnnxGraph.Int("axis", 1), OnnxGraph.Int("p", 2))
            .Build(18);
        var so = new SessionOptions
        {
            IntraOpNumThreads = Environment.ProcessorCount,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL
        };
        _session = new InferenceSession(model, so);
        _ortInputs = [OrtValue.CreateTensorValueFromMemory(_hidden, [B, T, D]), OrtValue.CreateTensorValueFromMemory(_mask, [B, T])];
        _ortOutputs = [OrtValue.CreateTensorValueFromMemory(new float[B * D], [B, D])];
        _runOptions = new RunOptions();

        // Same answer from both before timing anything.
        Simd(); OnnxRuntime();
        var ort = _ortOutputs[0].GetTensorDataAsSpan<float>();
        for (int i = 0; i < _out.Length; i++)
            if (Math.Abs(ort[i] - _out[i]) > 1e-5f) throw new
                InvalidOperationException($"ORT and simd disagree at {i}: {ort[i]} vs {_out[i]}");
    }

    [Benchmark(Baseline = true, Description = "streaming sum, same 50 MB (bandwidth)")]
    public float StreamingRead() => MachineLimits.StreamingSum(_hidden);

    [Benchmark(Description = "PoolKernels simd mean+normalize")]
    public void Simd() => _simd.SequencePool<float, long>(_hidden, _mask, _out, B, T, D, _options);

    private readonly byte[] _bits = new byte[B * D / 8];
    private readonly sbyte[] _int8 = new sbyte[B * D];
    private readonly float[] _ranges = [.. Enumerable.Repeat(-0.2f, D), .. Enumerable.Repeat(0.2f, D)];

    /// <summary>The same pooling with ubinary quantization fused at its end (issue 18: no extra pass; compare with
    /// <see cref="Simd"/> in the paired A/B).</summary>
    [Benchmark(Description = "PoolKernels simd mean+normalize+ubinary (fused)")]
    public void SimdUbinary() => _simd.SequencePool<float, long>(_hidden, _mask, _bits, B, T, D, _options, QuantizePrecision.Ubinary);

    /// <summary>The same pooling with int8 quantization (given ranges) fused at its end.</summary>
    [Benchmark(Description = "PoolKernels simd mean+normalize+int8 (fused)")]
    public void SimdInt8() => _simd.SequencePool<float, long>(_hidden, _mask,
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(_int8.AsSpan()),
        B, T, D, _options, QuantizePrecision.Int8, _ranges);

    [Benchmark(Description = "ONNX Runtime CPU graph")]
    public void OnnxRuntime() => _session.Run(_runOptions, ["hidden", "mask"], _ortInputs, ["out"], _ortOutputs);

    [GlobalCleanup]
    public void Dispose()
    {
        GC.SuppressFinalize(this);
        foreach (var v in _ortInputs.Concat(_ortOutputs)) v.Dispose();
        _session?.Dispose();
        _runOptions?.Dispose();
        _simd?.Dispose();
    }
}
