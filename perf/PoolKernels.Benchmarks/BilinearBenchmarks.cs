using System.Numerics;
using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using MathNet.Numerics;
using MathNet.Numerics.IntegralTransforms;
using PoolKernels.Kernels.Bilinear;

namespace PoolKernels.Benchmarks;

/// <summary>
/// compact_bilinear_pool d = 16000, B = 256, Dx = Dy = 2048 on simd, beside (a) the direct O(d²) circular convolution
/// of the same two count sketches (vectorized: each output bin is one TensorPrimitives.Dot against a reversed copy),
/// measured on 8 rows and reported per 256 rows by the ratio; (b) a plain complex FFT of length 16000 per row with
/// MathNet.Numerics 5.0.0 (the maintained managed FFT on NuGet; 16000 is not a power of two, so it runs Bluestein)
/// and (c) the same with the project's own FFT, both rows in parallel. The issue asks simd >= 5x (a) and within 2x of
/// the best plain FFT.
/// </summary>
[ShortRunJob]
public class McbBenchmarks
{
    public const int B = 256, D = 16000, Dx = 2048, Dy = 2048, DirectRows = 8;
    private HostTensor _x = null!, _y = null!, _hx = null!, _sx = null!, _hy = null!, _sy = null!;
    private float[] _out = [];
    private Device _simd = null!;
    private float[][] _sketchX = [], _sketchY = [];
    private Complex32[][] _mathnet = [];
    private float[][] _re = [], _im = [], _scratch = [];

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(3);
        float[] F(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        _x = HostTensor.From(F(B * Dx), B, Dx); _y = HostTensor.From(F(B * Dy), B, Dy);
        _hx = HostTensor.From(Enumerable.Range(0, Dx).Select(_ => (long)rng.Next(D)).ToArray(), Dx);
        _hy = HostTensor.From(Enumerable.Range(0, Dy).Select(_ => (long)rng.Next(D)).ToArray(), Dy);
        _sx = HostTensor.From(Enumerable.Range(0, Dx).Select(_ => rng.Next(2) == 0 ? -1f : 1f).ToArray(), Dx);
        _sy = HostTensor.From(Enumerable.Range(0, Dy).Select(_ => rng.Next(2) == 0 ? -1f : 1f).ToArray(), Dy);
        _out = new float[B * D];
        _simd = Device.Open("simd");
        _sketchX = Enumerable.Range(0, DirectRows).Select(_ => F(D)).ToArray();
        _sketchY = Enumerable.Range(0, DirectRows).Select(_ => { var v = F(D); return v.Concat(v).Reverse().ToArray(); }).ToArray();
        _mathnet = Enumerable.Range(0, B).Select(_ => F(D).Select(v => new Complex32(v, -v)).ToArray()).ToArray();
        _re = Enumerable.Range(0, B).Select(_ => F(D)).ToArray();
        _im = Enumerable.Range(0, B).Select(_ => F(D)).ToArray();
        _scratch = Enumerable.Range(0, Environment.ProcessorCount).Select(_ => new float[FftPlan.Get(D).ScratchLength]).ToArray();
    }

    [Benchmark(Baseline = true, Description = "MCB d=16000 B=256 (simd)")]
    public void Mcb()
    {
        var x = _x.AsSpan<float>(); var y = _y.AsSpan<float>();
        var hx = _hx.AsSpan<long>(); var hy = _hy.AsSpan<long>();
        CompactBilinearSimd.Run(x, y, hx, _sx.AsSpan<float>(), hy, _sy.AsSpan<float>(), _out, B, D, false, false);
    }

    [Benchmark(Description = "direct O(d²) circular convolution, 8 rows (x32 for 256)")]
    public float DirectConvolution8Rows()
    {
        var z = new float[D];
        float sum = 0;
        Parallel.For(0, DirectRows, r =>
        {
            var zr = new float[D];
            var a = _sketchX[r]; var brev = _sketchY[r];
            // brev = reverse(b ++ b): z[c] = Σ_i a[i]·b[(c - i) mod d] = Dot(a, brev[d-1-c .. d-1-c+d])
            for (int c = 0; c < D; c++) zr[c] = TensorPrimitives.Dot(a, brev.AsSpan(D - 1 - c, D));
            lock (z) sum += zr[0];
        });
        return sum;
    }

    [Benchmark(Description = "plain complex FFT n=16000 x256, MathNet.Numerics 5.0.0")]
    public void MathNetFft() => Parallel.For(0, B, r => Fourier.Forward(_mathnet[r], FourierOptions.NoScaling));

    [Benchmark(Description = "plain complex FFT n=16000 x256, PoolKernels FftPlan")]
    public void OwnFft()
    {
        var plan = FftPlan.Get(D);
        Parallel.For(0, B, new ParallelOptions { MaxDegreeOfParallelism = _scratch.Length }, () => -1, (r, _, slot) =>
        {
            if (slot < 0) slot = Environment.CurrentManagedThreadId % _scratch.Length;
            lock (_scratch[slot]) plan.Forward(_re[r], _im[r], _scratch[slot]);
            return slot;
        }, _ => { });
    }
}
