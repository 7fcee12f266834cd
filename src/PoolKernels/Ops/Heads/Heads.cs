using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Heads;
using PoolKernels.Kernels.Sequence;

namespace PoolKernels;

/// <summary>
/// The fused building blocks of the trainable pooling heads (docs/operations.md "Trainable pooling heads"), exposed on every
/// backend: <see cref="LayerNorm(Device, HostTensor, HostTensor, HostTensor, float)"/>, <see cref="Linear(Device, HostTensor, HostTensor,
/// HostTensor?, HostTensor?)"/> (a tiled GEMM), <see cref="Geglu(Device, HostTensor)"/> and <see cref="MeanRows(Device, HostTensor,
/// HostTensor?, bool)"/>. All take and return F32 tensors (the heads widen F16/BF16 inputs once, on entry) and accumulate in float (double
/// on
/// <c>reference</c>); the float backends differ from the reference in the last bits.
/// </summary>
public static class Heads
{
    // ------------------------------------------------------------------ LayerNorm

    /// <summary>LayerNorm over the last dim D: y = (x - mean) / √(var + eps) · weight + bias, var the biased variance
    /// (PyTorch's <c>layer_norm</c>). x [..., D] F32, weight and bias [D] F32. Returns a new tensor of x's shape.</summary>
    /// <exception cref="ArgumentException">A shape or dtype is wrong (ParamName x, weight, bias, eps).</exception>
    public static HostTensor LayerNorm(this Device device, HostTensor x, HostTensor weight, HostTensor bias, float eps = 1e-5f)
    {
        ArgumentNullException.ThrowIfNull(device); ArgumentNullException.ThrowIfNull(x);
        using var scope = new HostScope(device);
        var y = scope.Output(DType.F32, x.Shape.ToArray());
        device.LayerNorm(scope.Bind(x), scope.Bind(weight), scope.Bind(bias), y, eps);
        return scope.Result(y);
    }

    /// <summary>LayerNorm on device tensors; <paramref name="output"/> has x's shape (may be x itself).</summary>
    public static void LayerNorm(this Device device, DeviceTensor x, DeviceTensor weight, DeviceTensor bias, DeviceTensor output,
        float eps = 1e-5f)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(weight); ArgumentNullException.ThrowIfNull(bias);
        ArgumentNullException.ThrowIfNull(output);
        foreach (var (n, t) in (ReadOnlySpan<(string, DeviceTensor)>)[("x", x), ("weight", weight), ("bias", bias), ("output",
            output)]) { Check.SameDevice(device, n, t); F32(t, n); }
        if (x.Shape.Length == 0) throw new ArgumentException($"x must be [..., D], got {Shape.Format(x.Shape)}.", nameof(x));
        int d = x.Shape[^1];
        if (weight.Shape.Length != 1 || weight.Shape[0] != d)
            throw new ArgumentException($"weight must be [D] = [{d}] for x {Shape.Format(x.Shape)}, got {Shape.Format(weight.Shape)}.",
            nameof(weight));
        if (bias.Shape.Length != 1 || bias.Shape[0] != d)
            throw new ArgumentException($"bias must be [D] = [{d}] for x {Shape.Format(x.Shape)}, got {Shape.Format(bias.Shape)}.",
            nameof(bias));
        if (!x.Shape.SequenceEqual(output.Shape))
            throw new ArgumentException($"output must be {Shape.Format(x.Shape)}, got {Shape.Format(output.Shape)}.", nameof(output));
        if (!(eps >= 0) || float.IsInfinity(eps)) throw new ArgumentException($"eps must be finite and >= 0, got {eps}.", nameof(eps));
        HeadKernels.LayerNorm(device, x, weight, bias, output, d == 0 ? 0 : (int)(x.Count / d), d, eps);
    }

    // ------------------------------------------------------------------ Linear

    /// <summary>PyTorch's Linear: y = x·Wᵀ + bias (+ residual). x [..., K], weight [N, K] (<c>Linear.weight</c>), bias [N]
    /// optional, residual optional with y's shape [..., N]. A tiled GEMM on every backend (SIMD: packed Vector512 panels,
    /// multi-threaded; ILGPU: shared-memory tiles). Returns a new [..., N] tensor.</summary>
    /// <exception cref="ArgumentException">A shape or dtype is wrong (ParamName x, weight, bias, residual).</exception>
    public static HostTensor Linear(this Device device, HostTensor x, HostTensor weight, HostTensor? bias = null,
        HostTensor? residual = null)
    {
        ArgumentNullException.ThrowIfNull(device); ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(weight);
        if (x.Shape.Length == 0 || weight.Shape.Length != 2) CheckLinear(x.Shape, weight.Shape, bias?.ShapeArray, residual?.ShapeArray,
            null);
        var outShape = x.Shape.ToArray(); outShape[^1] = weight.Shape[0];
        using var scope = new HostScope(device);
        var y = scope.Output(DType.F32, outShape);
        device.Linear(scope.Bind(x), scope.Bind(weight), scope.BindOptional(bias), y, scope.BindOptional(residual));
        return scope.Result(y);
    }

    /// <summary>Linear on device tensors: output [..., N] = x·Wᵀ + bias + residual (bias, residual optional; residual may be
    /// output).</summary>
    public static void Linear(this Device device, DeviceTensor x, DeviceTensor weight, DeviceTensor? bias, DeviceTensor output,
        DeviceTensor? residual = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(x); ArgumentNullException.ThrowIfNull(weight); ArgumentNullException.ThrowIfNull(output);
        foreach (var (n, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[("x", x), ("weight", weight), ("bias", bias), ("output", output),
            ("residual", residual)])
        {
            Check.SameDevice(device, n, t);
            if (t is not null) F32(t, n);
        }
        CheckLinear(x.Shape, weight.Shape, bias?.ShapeArray, residual?.ShapeArray, output.ShapeArray);
        int k = weight.Shape[1], n2 = weight.Shape[0];
        int m = (int)(k == 0 ? Shape.Count(x.Shape[..^1]) : x.Count / k);
        HeadKernels.Linear(device, x, LinearWeight.Unpacked(weight, bias), residual, output, m);
    }

    private static void CheckLinear(ReadOnlySpan<int> x, ReadOnlySpan<int> w, int[]? bias, int[]? residual, int[]? output)
    {
        if (x.Length == 0) throw new ArgumentException($"x must be [..., K], got {Shape.Format(x)}.", "x");
        if (w.Length != 2 || w[1] != x[^1])
            throw new ArgumentException($"weight must be [N, K] with K = {x[^1]} (x {Shape.Format(x)}), got {Shape.Format(w)}.", "weight");
        if (bias is not null && (bias.Length != 1 || bias[0] != w[0]))
            throw new ArgumentException($"bias must be [N] = [{w[0]}] for weight {Shape.Format(w)}, got {Shape.Format(bias)}.", "bias");
        var y = x.ToArray(); y[^1] = w[0];
        if (residual is not null && !residual.AsSpan().SequenceEqual(y))
            throw new ArgumentException($"residual must be {Shape.Format(y)} (x {Shape.Format(x)}, weight {Shape.Format(w)}), got "
                + $"{Shape.Format(residual)}.", "residual");
        if (output is not null && !output.AsSpan().SequenceEqual(y))
            throw new ArgumentException($"output must be {Shape.Format(y)} (x {Shape.Format(x)}, weight {Shape.Format(w)}), got "
                + $"{Shape.Format(output)}.", "output");
    }

    // ------------------------------------------------------------------ GEGLU

    /// <summary>GEGLU with the exact (erf) GELU: h [..., 2F] = a‖g (a the first half) → [..., F] = a ⊙ gelu(g),
    /// gelu(g) = g/2·(1 + erf(g/√2)). NaN propagates; gelu(-inf) is NaN as in PyTorch (-inf·0).</summary>
    public static HostTensor Geglu(this Device device, HostTensor h)
    {
        ArgumentNullException.ThrowIfNull(device); ArgumentNullException.ThrowIfNull(h);
        if (h.Shape.Length == 0 || h.Shape[^1] % 2 != 0)
            throw new ArgumentException($"h must be [..., 2F] (even last dim), got {Shape.Format(h.Shape)}.", nameof(h));
        var outShape = h.Shape.ToArray(); outShape[^1] /= 2;
        using var scope = new HostScope(device);
        var y = scope.Output(DType.F32, outShape);
        device.Geglu(scope.Bind(h), y);
        return scope.Result(y);
    }

    /// <summary>GEGLU on device tensors: output [..., F] from h [..., 2F].</summary>
    public static void Geglu(this Device device, DeviceTensor h, DeviceTensor output)
    {
        ArgumentNullException.ThrowIfNull(device); ArgumentNullException.ThrowIfNull(h); ArgumentNullException.ThrowIfNull(output);
        Check.SameDevice(device, nameof(h), h); Check.SameDevice(device, nameof(output), output);
        F32(h, nameof(h)); F32(output, nameof(output));
        if (h.Shape.Length == 0 || h.Shape[^1] % 2 != 0)
            throw new ArgumentException($"h must be [..., 2F] (even last dim), got {Shape.Format(h.Shape)}.", nameof(h));
        var y = h.Shape.ToArray(); y[^1] /= 2;
        if (!output.Shape.SequenceEqual(y)) throw new ArgumentException($"output must be {Shape.Format(y)} for h {Shape.Format(h.Shape)}, "
            + $"got {Shape.Format(output.Shape)}.", nameof(output));
        int f = y[^1];
        HeadKernels.Geglu(device, h, output, f == 0 ? 0 : (int)(output.Count / f), f);
    }

    // ------------------------------------------------------------------ mean over rows

    /// <summary>Mean over the rows of each batch item: x [B, N, D] (F32|F16|BF16) → [B, D], over the rows whose
    /// <paramref name="mask"/> [B, N] (I64|I32|U8|BOOL, nonzero keeps) is set, all rows when null; an empty set gives 0;
    /// then v / max(‖v‖₂, 1e-12) when <paramref name="normalize"/>. This is <c>sequence_pool</c>'s <c>mean</c> (same kernels).</summary>
    public static HostTensor MeanRows(this Device device, HostTensor x, HostTensor? mask = null, bool normalize = false)
    {
        ArgumentNullException.ThrowIfNull(device); ArgumentNullException.ThrowIfNull(x);
        Check.Rank(x.Shape, 3, nameof(x), "[B,N,D]");
        mask ??= Ones(x.Shape[0], x.Shape[1]);
        return device.SequencePool(x, mask, new SequencePoolOptions(SequencePoolMode.Mean) { Normalize = normalize });
    }

    internal static HostTensor Ones(int b, int n)
    {
        var t = HostTensor.Zeros(DType.U8, b, n);
        t.Data.Span.Fill(1);
        return t;
    }

    private static void F32(DeviceTensor t, string name) => Check.DTypeIs(t.DType, name, "F32", t.DType == DType.F32);
}

/// <summary>A Linear layer's weight on a device: W [N, K] as a device tensor, plus on <c>simd</c> its packed panels
/// (<see cref="HeadsSimd.Pack"/>, 64-byte aligned at <see cref="HeadsSimd.AlignedOffset"/> in a pinned array), and the
/// optional bias [N].</summary>
internal sealed class LinearWeight : IDisposable
{
    public required DeviceTensor W { get; init; }
    public DeviceTensor? Bias { get; init; }
    public float[]? Packed { get; init; }
    public bool Owned { get; init; }
    public int N => W.Shape[0];
    public int K => W.Shape[1];

    public static LinearWeight Unpacked(DeviceTensor w, DeviceTensor? bias) => new() { W = w, Bias = bias };

    /// <summary>Uploads W (and bias) to <paramref name="device"/> once; on simd also packs W.</summary>
    public static LinearWeight Create(Device device, float[] w, int n, int k, float[]? bias)
    {
        var pack = new PackPlan(w, n, k);
        Dispatch.Run(device, ref pack);
        return new LinearWeight
        {
            W = device.Upload<float>(w, n, k),
            Bias = bias is null ? null : device.Upload<float>(bias, n),
            Packed = pack.Packed,
            Owned = true,
        };
    }

    /// <summary>The packed form of W: the simd GEMM's panels; the other backends read W as it is.</summary>
    private struct PackPlan(float[] w, int n, int k) : IPlan
    {
        public float[]? Packed;

        public readonly void Reference() { }

        public void Simd(CpuDevice cpu)
        {
            Packed = HeadsSimd.AllocatePacked(HeadsSimd.PackedLength(n, k));
            HeadsSimd.Pack(w, n, k, Packed.AsSpan(HeadsSimd.AlignedOffset(Packed)));
        }

        public readonly void Ilgpu(IlgpuScope s) { }
    }

    public void Dispose()
    {
        if (!Owned) return;
        W.Dispose(); Bias?.Dispose();
    }
}

/// <summary>The head kernels as plans, on validated device tensors (F32). Inside a <see cref="DeviceBatch"/> (as every
/// <see cref="PoolingHead"/> call runs) they are enqueued on an accelerator without synchronizing.</summary>
internal static unsafe class HeadKernels
{
    private static Span<float> F(DeviceTensor t) => MemoryMarshal.Cast<byte, float>(t.Host.Span);

    public static void LayerNorm(Device device, DeviceTensor x, DeviceTensor w, DeviceTensor b, DeviceTensor y, int rows, int dim,
        float eps)
    {
        if (rows == 0 || dim == 0) return;
        var plan = new LayerNormPlan(x, w, b, y, rows, dim, eps);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct LayerNormPlan(DeviceTensor x, DeviceTensor w, DeviceTensor b, DeviceTensor y, int rows, int dim,
        float eps) : IPlan
    {
        public void Reference() => HeadsReference.LayerNorm(F(x), F(w), F(b), F(y), rows, dim, eps);

        public void Simd(CpuDevice cpu)
        {
            fixed (float* px = F(x)) fixed (float* pw = F(w)) fixed (float* pb = F(b)) fixed (float* py = F(y))
                HeadsSimd.LayerNorm(px, pw, pb, py, rows, dim, eps, cpu.Pool);
        }

        public void Ilgpu(IlgpuScope s) =>
            HeadsIlgpu.LayerNorm(s.Accelerator, s.Stream, s.View<float>(x), s.View<float>(w), s.View<float>(b), s.View<float>(y), rows,
                dim, eps);
    }

    public static void Linear(Device device, DeviceTensor x, LinearWeight lw, DeviceTensor? residual, DeviceTensor y, int m)
    {
        if (m == 0 || lw.N == 0) return;
        var plan = new LinearPlan(x, lw, residual, y, m);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct LinearPlan(DeviceTensor x, LinearWeight lw, DeviceTensor? residual, DeviceTensor y, int m) : IPlan
    {
        public void Reference() =>
            HeadsReference.Linear(F(x), F(lw.W), lw.Bias is null ? default : F(lw.Bias), residual is null ? default : F(residual), F(y),
                m, lw.N, lw.K);

        public void Simd(CpuDevice cpu)
        {
            int n = lw.N, k = lw.K;
            if (lw.Packed is null)
            {
                HeadsSimd.Linear(F(x), F(lw.W), lw.Bias is null ? default : F(lw.Bias), residual is null ? default : F(residual), F(y),
                    m, n, k, cpu.Pool);
                return;
            }
            fixed (float* px = F(x)) fixed (float* pp = &lw.Packed[HeadsSimd.AlignedOffset(lw.Packed)]) fixed (float* py = F(y))
            fixed (float* pb = lw.Bias is null ? default : F(lw.Bias)) fixed (float* pr = residual is null ? default : F(residual))
                HeadsSimd.Gemm(px, pp, lw.Bias is null ? null : pb, residual is null ? null : pr, py, m, n, k, cpu.Pool);
        }

        public void Ilgpu(IlgpuScope s)
        {
            bool empty = lw.K == 0; // nothing to read: the dummy view
            HeadsIlgpu.Gemm(s.Accelerator, s.Stream, s.View<float>(empty ? null : x), s.View<float>(empty ? null : lw.W),
                s.View<float>(lw.Bias),
                s.View<float>(residual), s.View<float>(y), m, lw.N, lw.K, lw.Bias is not null, residual is not null);
        }
    }

    public static void Geglu(Device device, DeviceTensor h, DeviceTensor y, int rows, int f)
    {
        if (rows == 0 || f == 0) return;
        var plan = new GegluPlan(h, y, rows, f);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct GegluPlan(DeviceTensor h, DeviceTensor y, int rows, int f) : IPlan
    {
        public void Reference() => HeadsReference.Geglu(F(h), F(y), rows, f);

        public void Simd(CpuDevice cpu)
        {
            fixed (float* ph = F(h)) fixed (float* py = F(y))
                HeadsSimd.Geglu(ph, py, rows, f, cpu.Pool);
        }

        public void Ilgpu(IlgpuScope s) => HeadsIlgpu.Geglu(s.Accelerator, s.Stream, s.View<float>(h), s.View<float>(y), rows, f);
    }

    /// <summary>y [B,R,D] F32 = x [B,R,D] (F32|F16|BF16) + add [R,D] (optional).</summary>
    public static void AddRows(Device device, DeviceTensor x, DeviceTensor? add, DeviceTensor y, int batch, int rows, int dim)
    {
        if ((long)batch * rows * dim == 0) return;
        var plan = new AddRowsPlan(x, add, y, batch, rows, dim);
        Dispatch.Run(device, ref plan);
    }

    private struct AddRowsPlan(DeviceTensor x, DeviceTensor? add, DeviceTensor y, int batch, int rows, int dim) : IPlan, ITypedRunner
    {
        private bool _simd;

        public void Reference() { _simd = false; TypeDispatch.Run(ref this, x.DType, DType.F32, DType.F32); }

        public void Simd(CpuDevice cpu) { _simd = true; TypeDispatch.Run(ref this, x.DType, DType.F32, DType.F32); }

        public readonly void Run<T, T2, T3>() where T : unmanaged where T2 : unmanaged where T3 : unmanaged
        {
            var xs = MemoryMarshal.Cast<byte, T>(x.Host.Span);
            var a = add is null ? default : F(add);
            if (_simd) HeadsSimd.AddRows<T>(xs, a, F(y), batch, rows, dim);
            else HeadsReference.AddRows<T>(xs, a, F(y), batch, rows, dim);
        }

        public readonly void Ilgpu(IlgpuScope s) =>
            AddRowsLauncher(x.DType)(s.Accelerator, s.Stream, s.Bytes(x), s.View<float>(add), s.View<float>(y), batch, rows, dim,
                add is not null);
    }

    private static AddRowsLaunch AddRowsLauncher(DType x) => x switch
    {
        DType.F32 => HeadsIlgpu.AddRows<float, F32Reader>,
        DType.F16 => HeadsIlgpu.AddRows<ushort, F16Reader>,
        _ => HeadsIlgpu.AddRows<ushort, Bf16Reader>,
    };

    /// <summary>dst (count·src.Count elements) = src repeated <paramref name="count"/> times, on the device.</summary>
    public static void Repeat(Device device, DeviceTensor src, DeviceTensor dst, int count)
    {
        if (src.Bytes == 0) return;
        var plan = new RepeatPlan(src, dst, count);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct RepeatPlan(DeviceTensor src, DeviceTensor dst, int count) : IPlan
    {
        public void Reference() => Simd(null!);

        public void Simd(CpuDevice cpu)
        {
            for (int i = 0; i < count; i++) src.Host.Span.CopyTo(dst.Host.Span.Slice((int)(i * src.Bytes), (int)src.Bytes));
        }

        public void Ilgpu(IlgpuScope s)
        {
            for (int i = 0; i < count; i++) src.View.CopyTo(s.Stream, dst.View.SubView(i * src.Bytes, src.Bytes));
        }
    }
}
