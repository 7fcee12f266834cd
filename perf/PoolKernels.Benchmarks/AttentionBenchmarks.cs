using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Attention;

namespace PoolKernels.Benchmarks;

/// <summary>
/// sdpa forward, B=8, H=12, T=512, E=64, F32 with a key-padding mask: simd beside ONNX Runtime CPU's opset-23
/// <c>Attention</c> (same inputs, mask as a [B,1,1,T] boolean attn_mask) and beside an FMA loop that performs the same
/// 4·B·H·T²·E floating-point operations at the machine's peak (so time(FmaPeak) / time(Simd) is the fraction of F32
/// FMA peak reached). Causal vs non-causal at T = 2048 (B=1, H=12) shows the skipped tiles.
/// <para>simd never visits the keys the padding removes (0..259 of 512 per sequence here), so it computes fewer FLOPs than the
/// issue's formula counts: "FMA peak, FLOPs simd computes" performs those (Q·Kᵀ over the kept keys rounded up to 4, P·V over
/// the kept keys), and time(that) / time(Simd) is the fraction of peak over the work actually done.</para>
/// </summary>
/// <remarks>On a shared machine compare the Min column: the minimum over 15 iterations is what contention disturbs least.</remarks>
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 15)]
[MinColumn]
public class AttentionBenchmarks
{
    private const int B = 8, H = 12, T = 512, E = 64, TL = 2048, HL = 12;
    private float[] _q = [], _k = [], _v = [], _o = [], _l = [], _ql = [], _kl = [], _vl = [], _ol = [], _ll = [];
    private byte[] _pad = [];
    private double _computedFlops;
    private Device _simd = null!;
    private InferenceSession _ort = null!;
    private OrtValue[] _ortIn = [], _ortOut = [];
    private RunOptions _runOptions = null!;
    private static readonly string[] OrtInNames = ["Q", "K", "V", "M"], OrtOutNames = ["Y"];

    [GlobalSetup]
    public void Setup()
    {
        var r = new Random(1);
        float[] Rand(int n) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1); return a; }
        _q = Rand(B * H * T * E); _k = Rand(B * H * T * E); _v = Rand(B * H * T * E);
        _o = new float[B * H * T * E]; _l = new float[B * H * T];
        _pad = new byte[B * T];
        for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) _pad[b * T + t] = (byte)(t < T - 37 * b ? 1 : 0); // right padding, ragged
        for (int b = 0; b < B; b++)
        {
            int kept = 0;
            for (int t = 0; t < T; t++) kept += _pad[b * T + t];
            _computedFlops += 2.0 * H * T * E * (((kept + 3) & ~3) + kept);
        }
        _ql = Rand(HL * TL * E); _kl = Rand(HL * TL * E); _vl = Rand(HL * TL * E); _ol = new float[HL * TL * E]; _ll = new float[HL * TL];
        _simd = Device.Open("simd");

        var model = new OnnxGraph()
            .Input("Q", TensorProto.Types.DataType.Float, B, H, T, E).Input("K", TensorProto.Types.DataType.Float, B, H, T, E)
            .Input("V", TensorProto.Types.DataType.Float, B, H, T, E).Input("M", TensorProto.Types.DataType.Bool, B, 1, T, T)
            .Output("Y", TensorProto.Types.DataType.Float, B, H, T, E)
            .Node("Attention", ["Q", "K", "V", "M"], ["Y"], OnnxGraph.Float("scale", 0.125f))
            .Build(23);
        var so = new SessionOptions
        {
            IntraOpNumThreads = Environment.ProcessorCount,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL
        };
        _ort = new InferenceSession(model, so);
        // ORT's Attention wants the mask's query dim spelled out: [B, 1, Tq, Tk] (it broadcasts the head dim only)
        var mask = new bool[B * T * T];
        for (int b = 0; b < B; b++) for (int i = 0; i < T; i++) for (int j = 0; j < T; j++) mask[(b * T + i) * T + j] = _pad[b * T
            + j] != 0;
        _ortIn = [OrtValue.CreateTensorValueFromMemory(_q, [B, H, T, E]), OrtValue.CreateTensorValueFromMemory(_k, [B, H, T, E]),
            OrtValue.CreateTensorValueFromMemory(_v, [B, H, T, E]), OrtValue.CreateTensorValueFromMemory(mask, [B, 1, T, T])];
        _ortOut = [OrtValue.CreateTensorValueFromMemory(new float[B * H * T * E], [B, H, T, E])];
        _runOptions = new RunOptions();

        // the peers must agree before they are timed
        Simd(); Ort();
        var y = _ortOut[0].GetTensorDataAsSpan<float>();
        double err = 0;
        for (int i = 0; i < _o.Length; i++) err = Math.Max(err, Math.Abs(y[i] - _o[i]));
        Console.WriteLine($"// simd vs ONNX Runtime max abs diff {err:G3}; simd "
            + $"{(Vector512.IsHardwareAccelerated ? "Vector512" : "Vector256")}, {WorkerPool.Shared.Workers} workers");
        if (err > 1e-3) throw new InvalidOperationException($"simd and ONNX Runtime disagree (max abs diff {err}).");
    }

    [GlobalCleanup]
    public void Cleanup() { foreach (var v in _ortIn.Concat(_ortOut)) v.Dispose(); _ort.Dispose(); _runOptions.Dispose(); _simd.Dispose(); }

    [Benchmark(Baseline = true, Description = "simd sdpa T=512 key padding")]
    public void Simd() => _simd.Sdpa<float, byte>(_q, _k, _v, _pad, _o, _l, new SdpaDims(B, H, H, T, T, E, E));

    [Benchmark(Description = "ORT Attention-23 T=512 key padding")]
    public void Ort() => _ort.Run(_runOptions, OrtInNames, _ortIn, OrtOutNames, _ortOut);

    [Benchmark(Description = "FMA peak, same FLOPs as T=512")]
    public double FmaPeak() => MachineLimits.FmaFlops(4.0 * B * H * T * T * E);

    [Benchmark(Description = "FMA peak, FLOPs simd computes at T=512")]
    public double FmaPeakComputed() => MachineLimits.FmaFlops(_computedFlops);

    [Benchmark(Description = "simd sdpa T=2048 non-causal")]
    public void SimdLong() => _simd.Sdpa(_ql.AsSpan(), _kl, _vl, _ol, _ll, new SdpaDims(1, HL, HL, TL, TL, E, E));

    [Benchmark(Description = "simd sdpa T=2048 causal")]
    public void SimdLongCausal() => _simd.Sdpa(_ql.AsSpan(), _kl, _vl, _ol, _ll, new SdpaDims(1, HL, HL, TL, TL, E, E), Causal);

    private static readonly SdpaOptions Causal = new() { Causal = SdpaCausal.TopLeft };
}
