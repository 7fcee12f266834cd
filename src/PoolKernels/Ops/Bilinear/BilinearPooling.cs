using System.Runtime.InteropServices;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Bilinear;

namespace PoolKernels;

/// <summary>The four weights of one MFB block: wx [o·k, Dx], bx [o·k], wy [o·k, Dy], by [o·k] (F32); T is
/// <see cref="HostTensor"/> or <see cref="DeviceTensor"/>.</summary>
public sealed record MfbWeights<T>(T Wx, T Bx, T Wy, T By) where T : class;

/// <summary>Options of <c>mfb_pool</c> / <c>mfh_pool</c>.</summary>
public sealed record MfbOptions
{
    /// <summary>Factor k (>= 1): o·k projections are sum-pooled k at a time. Default 5.</summary>
    public int K { get; init; } = 5;
    /// <summary>Applied to both projections before the product. Default none.</summary>
    public MfbActivation Activation { get; init; } = MfbActivation.None;
    /// <summary>sign(z)·√|z| (per block). Default true.</summary>
    public bool SignedSqrt { get; init; } = true;
    /// <summary>z / max(‖z‖₂, 1e-12) per block. Default true.</summary>
    public bool Normalize { get; init; } = true;

    /// <summary>Parses none|relu|tanh|leaky_relu.</summary>
    public static MfbActivation ParseActivation(string name) => name switch
    {
        "none" or "" => MfbActivation.None,
        "relu" => MfbActivation.Relu,
        "tanh" => MfbActivation.Tanh,
        "leaky_relu" => MfbActivation.LeakyRelu,
        _ => throw new ArgumentException($"Unknown activation '{name}'; expected none, relu, tanh or leaky_relu.", "activation"),
    };
}

/// <summary>
/// Bilinear pooling on every backend (docs/operations.md "Ragged, graph and bilinear pooling"):
/// <list type="bullet">
/// <item><c>bilinear_pool</c>: x [B,N,Dx], y? [B,N,Dy] (absent: y = x), mask? [B,N] (I64|I32|U8|BOOL, nonzero keeps) →
/// [B, Dx·Dy] = vec(mean over valid n of x_n·y_nᵀ) (row-major, index i·Dy + j), then sign(z)·√|z|, then L2
/// normalization; a row with no valid n gives zeros.</item>
/// <item><c>mfb_pool</c> (Yu et al. 2017): z_j = Σ_{t&lt;k} e_{jk+t}, e = act(x·wxᵀ+bx) ⊙ act(y·wyᵀ+by) → [B, o].</item>
/// <item><c>mfh_pool</c>: two MFB blocks, e2 = e2' ⊙ e1 (unpooled); each block's z signed-sqrt'ed and normalized
/// separately → [B, 2o] = [z1; z2].</item>
/// <item><c>compact_bilinear_pool</c> (MCB): count sketches ψx[c] = Σ_{hx_i = c} sx_i·x_i, ψy likewise; out = their
/// circular convolution (z[c] = Σ_{(hx_i + hy_j) mod d = c} sx_i x_i sy_j y_j) computed by FFT in O(d log d) for any d
/// (mixed radix, Bluestein for large prime factors); signed_sqrt and normalize default to false.</item>
/// </list>
/// Inputs are F32; float backends accumulate in float (an FFT leaves ~1e-7·max|z| in every MCB bin), the reference
/// in double (MCB's reference is the direct sum, no FFT).
/// </summary>
public static class BilinearPooling
{
    // ---------------------------------------------------------------- bilinear_pool

    /// <summary><c>bilinear_pool</c> on host tensors; returns [B, Dx·Dy].</summary>
    public static HostTensor BilinearPool(this Device device, HostTensor x, HostTensor? y = null, HostTensor? mask = null,
        bool signedSqrt = true, bool normalize = true)
    {
        ArgumentNullException.ThrowIfNull(x);
        Check.Rank(x.Shape, 3, "x", "[B,N,Dx]");
        int dy = y is null ? x.Shape[2] : y.Shape.Length == 3 ? y.Shape[2]
            : throw new ArgumentException($"y must be [B,N,Dy], got {Shape.Format(y.Shape)}.", "y");
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape[0], checked(x.Shape[2] * dy));
        device.BilinearPool(scope.Bind(x), scope.BindOptional(y), scope.BindOptional(mask), o, signedSqrt, normalize);
        return scope.Result(o);
    }

    /// <summary><c>bilinear_pool</c> on device tensors: output [B, Dx·Dy] F32.</summary>
    public static void BilinearPool(this Device device, DeviceTensor x, DeviceTensor? y, DeviceTensor? mask, DeviceTensor output,
        bool signedSqrt = true, bool normalize = true)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(output);
        foreach (var (name, arg) in (ReadOnlySpan<(string, DeviceTensor?)>)[("x", x), ("y", y), ("mask", mask), ("output",
            output)]) Check.SameDevice(device, name, arg);
        Check.Rank(x.Shape, 3, "x", "[B,N,Dx]");
        Check.DTypeIs(x.DType, "x", "F32", x.DType == DType.F32);
        int b = x.Shape[0], n = x.Shape[1], dx = x.Shape[2], dy = dx;
        if (y is not null)
        {
            Check.DTypeIs(y.DType, "y", "F32", y.DType == DType.F32);
            if (y.Shape.Length != 3 || y.Shape[0] != b || y.Shape[1] != n)
                throw new ArgumentException($"y must be [B,N,Dy] with B,N = {b},{n} of x {Shape.Format(x.Shape)}, got "
                    + $"{Shape.Format(y.Shape)}.", "y");
            dy = y.Shape[2];
        }
        if (mask is not null)
        {
            Check.DTypeIs(mask.DType, "mask", "I64|I32|U8|BOOL", mask.DType.IsMask());
            if (mask.Shape.Length != 2 || mask.Shape[0] != b || mask.Shape[1] != n)
                throw new ArgumentException($"mask must be [B,N] = [{b}, {n}] for x {Shape.Format(x.Shape)}, got "
                    + $"{Shape.Format(mask.Shape)}.", "mask");
        }
        if (output.DType != DType.F32 || output.Shape.Length != 2 || output.Shape[0] != b || output.Shape[1] != (long)dx * dy)
            throw new ArgumentException($"output must be F32 [B, Dx·Dy] = [{b}, {(long)dx * dy}], got {output}.", "output");
        if (b == 0 || dx == 0 || dy == 0) return;
        var plan = new BilinearPlan(x, y, mask, output, new BilinearParams
        {
            Batch = b,
            N = n,
            Dx = dx,
            Dy = dy,
            HasMask = mask is null ? 0 : 1,
            SignedSqrt = signedSqrt ? 1 : 0,
        }, normalize);
        Dispatch.Run(device, ref plan);
    }

    private static ReadOnlySpan<float> F(DeviceTensor t) => MemoryMarshal.Cast<byte, float>(t.Host.Span);

    private static Span<float> FOut(DeviceTensor t) => MemoryMarshal.Cast<byte, float>(t.Host.Span);

    private struct BilinearPlan(DeviceTensor x, DeviceTensor? y, DeviceTensor? mask, DeviceTensor output, BilinearParams p, bool normalize)
        : IPlan, ITypedRunner
    {
        private CpuDevice? _simd;

        public void Reference() { _simd = null; TypeDispatch.Run(ref this, mask?.DType ?? DType.U8, DType.I32, DType.I32); }

        public void Simd(CpuDevice cpu) { _simd = cpu; TypeDispatch.Run(ref this, mask?.DType ?? DType.U8, DType.I32, DType.I32); }

        public readonly void Run<TMask, T2, T3>() where TMask : unmanaged where T2 : unmanaged where T3 : unmanaged
        {
            var m = mask is null ? default : MemoryMarshal.Cast<byte, TMask>(mask.Host.Span);
            var ys = y is null ? default : F(y);
            bool sq = p.SignedSqrt != 0;
            if (_simd is { } cpu) BilinearPoolSimd.Run(F(x), ys, m, FOut(output), p.Batch, p.N, p.Dx, p.Dy, sq, normalize, cpu.Pool);
            else BilinearPoolReference.Run(F(x), ys, m, FOut(output), p.Batch, p.N, p.Dx, p.Dy, sq, normalize);
        }

        public readonly void Ilgpu(IlgpuScope s)
        {
            BilinearLaunch launch = mask?.DType switch
            {
                DType.I64 => BilinearPoolIlgpu.Launch<long, I64Mask>,
                DType.I32 => BilinearPoolIlgpu.Launch<int, I32Mask>,
                _ => BilinearPoolIlgpu.Launch<byte, U8Mask>,
            };
            launch(s.Accelerator, s.Stream, s.View<float>(x), s.View<float>(y ?? x), s.View<byte>(mask), s.View<float>(output), p,
                normalize);
        }
    }

    // ---------------------------------------------------------------- mfb_pool / mfh_pool

    /// <summary><c>mfb_pool</c> on host tensors: x [B,Dx], y [B,Dy]; returns [B, o].</summary>
    public static HostTensor MfbPool(this Device device, HostTensor x, HostTensor y, MfbWeights<HostTensor> weights,
        MfbOptions? options = null) =>
        MfCore(device, x, y, weights, null, options ?? new());

    /// <summary><c>mfh_pool</c> on host tensors: returns [B, 2o] = [z1; z2].</summary>
    public static HostTensor MfhPool(this Device device, HostTensor x, HostTensor y, MfbWeights<HostTensor> block1,
        MfbWeights<HostTensor> block2, MfbOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(block2);
        return MfCore(device, x, y, block1, block2, options ?? new());
    }

    private static HostTensor MfCore(Device device, HostTensor x, HostTensor y, MfbWeights<HostTensor> w1, MfbWeights<HostTensor>? w2,
        MfbOptions options)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(w1);
        ArgumentNullException.ThrowIfNull(options);
        Check.Rank(x.Shape, 2, "x", "[B,Dx]");
        if (options.K < 1) throw new ArgumentException($"k must be >= 1, got {options.K}.", "k");
        Check.Rank(w1.Wx.Shape, 2, w2 is null ? "wx" : "wx1", "[o·k,Dx]");
        int o = w1.Wx.Shape[0] / options.K;
        using var scope = new HostScope(device);
        var output = scope.Output(DType.F32, x.Shape[0], (w2 is null ? 1 : 2) * o);
        MfbWeights<DeviceTensor> Bind(MfbWeights<HostTensor> w) => new(scope.Bind(w.Wx), scope.Bind(w.Bx), scope.Bind(w.Wy),
            scope.Bind(w.By));
        if (w2 is null) device.MfbPool(scope.Bind(x), scope.Bind(y), Bind(w1), output, options);
        else device.MfhPool(scope.Bind(x), scope.Bind(y), Bind(w1), Bind(w2), output, options);
        return scope.Result(output);
    }

    /// <summary><c>mfb_pool</c> on device tensors: output [B, o] F32.</summary>
    public static void MfbPool(this Device device, DeviceTensor x, DeviceTensor y, MfbWeights<DeviceTensor> weights, DeviceTensor output,
        MfbOptions? options = null) =>
        MfDevice(device, x, y, weights, null, output, options ?? new());

    /// <summary><c>mfh_pool</c> on device tensors: output [B, 2o] F32.</summary>
    public static void MfhPool(this Device device, DeviceTensor x, DeviceTensor y, MfbWeights<DeviceTensor> block1,
        MfbWeights<DeviceTensor> block2,
        DeviceTensor output, MfbOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(block2);
        MfDevice(device, x, y, block1, block2, output, options ?? new());
    }

    private static void MfDevice(Device device, DeviceTensor x, DeviceTensor y, MfbWeights<DeviceTensor> w1, MfbWeights<DeviceTensor>? w2,
        DeviceTensor output, MfbOptions opt)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        ArgumentNullException.ThrowIfNull(w1);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(opt);
        if (opt.K < 1) throw new ArgumentException($"k must be >= 1, got {opt.K}.", "k");
        if (opt.Activation is < MfbActivation.None or > MfbActivation.LeakyRelu)
            throw new ArgumentException($"activation {(int)opt.Activation} is unknown.", "activation");
        Check.SameDevice(device, "x", x); Check.SameDevice(device, "y", y); Check.SameDevice(device, "output", output);
        Check.Rank(x.Shape, 2, "x", "[B,Dx]");
        Check.DTypeIs(x.DType, "x", "F32", x.DType == DType.F32);
        Check.DTypeIs(y.DType, "y", "F32", y.DType == DType.F32);
        int b = x.Shape[0], dx = x.Shape[1];
        if (y.Shape.Length != 2 || y.Shape[0] != b)
            throw new ArgumentException($"y must be [B,Dy] with B = {b} of x {Shape.Format(x.Shape)}, got {Shape.Format(y.Shape)}.", "y");
        int dy = y.Shape[1];
        string sfx = w2 is null ? "" : "1";
        int rows = CheckBlock(device, w1, sfx, dx, dy, opt.K, -1);
        if (w2 is not null) CheckBlock(device, w2, "2", dx, dy, opt.K, rows);
        int o = rows / opt.K, blocks = w2 is null ? 1 : 2;
        if (output.DType != DType.F32 || output.Shape.Length != 2 || output.Shape[0] != b || output.Shape[1] != blocks * o)
            throw new ArgumentException($"output must be F32 [B, {(blocks == 1 ? "o" : "2o")}] = [{b}, {blocks * o}], got {output}.",
                "output");
        if (b == 0 || o == 0) return;
        var prm = new MfbParams
        {
            Batch = b,
            Dx = dx,
            Dy = dy,
            O = o,
            K = opt.K,
            Blocks = blocks,
            Act = (int)opt.Activation,
            SignedSqrt = opt.SignedSqrt ? 1 : 0
        };
        var plan = new MfbPlan(x, y, w1, w2, output, prm, opt);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct MfbPlan(DeviceTensor x, DeviceTensor y, MfbWeights<DeviceTensor> w1, MfbWeights<DeviceTensor>? w2,
        DeviceTensor output,
        MfbParams p, MfbOptions opt) : IPlan
    {
        private static MfbBlock Block(MfbWeights<DeviceTensor>? w) => w is null ? default : new MfbBlock(F(w.Wx), F(w.Bx), F(w.Wy),
            F(w.By));

        public void Reference() => MfbReference.Run(F(x), F(y), Block(w1), Block(w2), FOut(output), p.Batch, p.Dx, p.Dy, p.O, p.K,
            opt.Activation,
            opt.SignedSqrt, opt.Normalize);

        public void Simd(CpuDevice cpu) => MfbSimd.Run(F(x), F(y), Block(w1), Block(w2), FOut(output), p.Batch, p.Dx, p.Dy, p.O, p.K,
            opt.Activation,
            opt.SignedSqrt, opt.Normalize, cpu.Pool);

        public void Ilgpu(IlgpuScope s) => MfbIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(x), s.View<float>(y),
            s.View<float>(w1.Wx),
            s.View<float>(w1.Bx), s.View<float>(w1.Wy), s.View<float>(w1.By), s.View<float>(w2?.Wx), s.View<float>(w2?.Bx),
                s.View<float>(w2?.Wy),
            s.View<float>(w2?.By), s.View<float>(output), p, opt.Normalize);
    }

    private static readonly string[] WeightNames = ["wx", "bx", "wy", "by"], WeightNames1 = ["wx1", "bx1", "wy1", "by1"],
        WeightNames2 = ["wx2", "bx2", "wy2", "by2"];

    private static int CheckBlock(Device device, MfbWeights<DeviceTensor> w, string sfx, int dx, int dy, int k, int rows)
    {
        // the names are interned per block ("wx", "wx1", "wx2", ...): building them per call allocated
        var names = sfx switch { "1" => WeightNames1, "2" => WeightNames2, _ => WeightNames };
        ReadOnlySpan<DeviceTensor?> ts = [w.Wx, w.Bx, w.Wy, w.By];
        for (int i = 0; i < 4; i++)
        {
            var t = ts[i];
            Arg(device, t, names[i]);
            Check.DTypeIs(t.DType, names[i], "F32", t.DType == DType.F32);
        }
        if (w.Wx.Shape.Length != 2 || w.Wx.Shape[1] != dx)
            throw new ArgumentException($"wx{sfx} must be [o·k, Dx] with Dx = {dx}, got {Shape.Format(w.Wx.Shape)}.", "wx" + sfx);
        int r = w.Wx.Shape[0];
        if (r % k != 0) throw new ArgumentException($"wx{sfx} has {r} rows, not a multiple of k = {k} (o·k rows expected).", "wx" + sfx);
        if (rows >= 0 && r != rows) throw new ArgumentException($"wx{sfx} has {r} rows but the first block has {rows}.", "wx" + sfx);
        if (w.Wy.Shape.Length != 2 || w.Wy.Shape[0] != r || w.Wy.Shape[1] != dy)
            throw new ArgumentException($"wy{sfx} must be [o·k, Dy] = [{r}, {dy}], got {Shape.Format(w.Wy.Shape)}.", "wy" + sfx);
        if (w.Bx.Shape.Length != 1 || w.Bx.Shape[0] != r)
            throw new ArgumentException($"bx{sfx} must be [o·k] = [{r}], got {Shape.Format(w.Bx.Shape)}.", "bx" + sfx);
        if (w.By.Shape.Length != 1 || w.By.Shape[0] != r)
            throw new ArgumentException($"by{sfx} must be [o·k] = [{r}], got {Shape.Format(w.By.Shape)}.", "by" + sfx);
        return r;
    }

    // ---------------------------------------------------------------- compact_bilinear_pool

    /// <summary><c>compact_bilinear_pool</c> on host tensors: x [B,Dx], y [B,Dy] F32, hx [Dx] / hy [Dy] I64|I32 in [0, d),
    /// sx [Dx] / sy [Dy] F32 (±1); returns [B, d].</summary>
    public static HostTensor CompactBilinearPool(this Device device, HostTensor x, HostTensor y, HostTensor hx, HostTensor sx,
        HostTensor hy, HostTensor sy, int d,
        bool signedSqrt = false, bool normalize = false)
    {
        ArgumentNullException.ThrowIfNull(x);
        Check.Rank(x.Shape, 2, "x", "[B,Dx]");
        if (d < 1) throw new ArgumentException($"d must be >= 1, got {d}.", "d");
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape[0], d);
        device.CompactBilinearPool(scope.Bind(x), scope.Bind(y), scope.Bind(hx), scope.Bind(sx), scope.Bind(hy), scope.Bind(sy), o,
            signedSqrt, normalize);
        return scope.Result(o);
    }

    /// <summary><c>compact_bilinear_pool</c> on device tensors: output [B, d] F32 (d = its second dimension).</summary>
    public static void CompactBilinearPool(this Device device, DeviceTensor x, DeviceTensor y, DeviceTensor hx, DeviceTensor sx,
        DeviceTensor hy, DeviceTensor sy,
        DeviceTensor output, bool signedSqrt = false, bool normalize = false)
    {
        ArgumentNullException.ThrowIfNull(device);
        Arg(device, x, "x"); Arg(device, y, "y"); Arg(device, hx, "hx"); Arg(device, sx, "sx"); Arg(device, hy, "hy"); Arg(device, sy,
            "sy");
        Arg(device, output, "output");
        Check.Rank(x.Shape, 2, "x", "[B,Dx]");
        Check.DTypeIs(x.DType, "x", "F32", x.DType == DType.F32);
        Check.DTypeIs(y.DType, "y", "F32", y.DType == DType.F32);
        int b = x.Shape[0], dx = x.Shape[1];
        if (y.Shape.Length != 2 || y.Shape[0] != b)
            throw new ArgumentException($"y must be [B,Dy] with B = {b}, got {Shape.Format(y.Shape)}.", "y");
        int dy = y.Shape[1];
        if (output.DType != DType.F32 || output.Shape.Length != 2 || output.Shape[0] != b || output.Shape[1] < 1)
            throw new ArgumentException($"output must be F32 [B, d] with B = {b} and d >= 1, got {output}.", "output");
        int d = output.Shape[1];
        var hxv = Hash(hx, "hx", dx, d, ref _hxScratch);
        var hyv = Hash(hy, "hy", dy, d, ref _hyScratch);
        Sign(sx, "sx", dx);
        Sign(sy, "sy", dy);
        if (b == 0) return;
        var plan = new CompactPlan(x, y, hxv, sx, hyv, sy, output, new McbParams
        {
            Batch = b,
            Dx = dx,
            Dy = dy,
            D = d,
            SignedSqrt = signedSqrt ? 1 : 0
        },
            normalize);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>A validated compact_bilinear_pool call; the hash indices are validated host copies (I64).</summary>
    private readonly ref struct CompactPlan(DeviceTensor x, DeviceTensor y, ReadOnlySpan<long> hx, DeviceTensor sx, ReadOnlySpan<long> hy,
        DeviceTensor sy, DeviceTensor output, McbParams p, bool normalize) : IPlan
    {
        private readonly ReadOnlySpan<long> _hx = hx, _hy = hy;

        public void Reference() =>
            CompactBilinearReference.Run(F(x), F(y), _hx, F(sx), _hy, F(sy), FOut(output), p.Batch, p.D, p.SignedSqrt != 0, normalize);

        public void Simd(CpuDevice cpu) =>
            CompactBilinearSimd.Run(F(x), F(y), _hx, F(sx), _hy, F(sy), FOut(output), p.Batch, p.D, p.SignedSqrt != 0, normalize, cpu.Pool);

        public void Ilgpu(IlgpuScope s) => CompactBilinearIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(x), s.View<float>(y),
            s.Upload<int>(CompactBilinearIlgpu.Bins(_hx, p.D)), s.Upload<int>(CompactBilinearIlgpu.Bins(_hy, p.D)), s.View<float>(sx),
                s.View<float>(sy),
            s.View<float>(output), p, normalize, s.Temp<float>);
    }

    /// <summary>The validated hash indices as I64: on a CPU device an I64 tensor is read in place and an I32 one widened
    /// into per-thread scratch (kept), so a steady-state call allocates nothing.</summary>
    private static ReadOnlySpan<long> Hash(DeviceTensor h, string name, int len, int d, ref long[]? scratch)
    {
        Check.DTypeIs(h.DType, name, "I64|I32", h.DType.IsIndex());
        if (h.Shape.Length != 1 || h.Shape[0] != len)
            throw new ArgumentException($"{Check.D(name)} must be [{len}], got {Shape.Format(h.Shape)}.", name);
        var bytes = RaggedPooling.HostBytes(h, out _);
        ReadOnlySpan<long> v;
        if (h.DType == DType.I64) v = MemoryMarshal.Cast<byte, long>(bytes);
        else
        {
            var ints = MemoryMarshal.Cast<byte, int>(bytes);
            if (scratch is null || scratch.Length < ints.Length) scratch = new long[ints.Length];
            for (int i = 0; i < ints.Length; i++) scratch[i] = ints[i];
            v = scratch.AsSpan(0, ints.Length);
        }
        for (int i = 0; i < v.Length; i++)
            if (v[i] < 0 || v[i] >= d) throw new ArgumentException($"{Check.D(name)}[{i}] = {v[i]} is outside [0, d) = [0, {d}).", name);
        return v;
    }

    [ThreadStatic] private static long[]? _hxScratch, _hyScratch;

    private static void Arg(Device device, [System.Diagnostics.CodeAnalysis.NotNull] DeviceTensor? t, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        Check.SameDevice(device, name, t);
    }

    private static void Sign(DeviceTensor t, string name, int len)
    {
        Check.DTypeIs(t.DType, name, "F32", t.DType == DType.F32);
        if (t.Shape.Length != 1 || t.Shape[0] != len)
            throw new ArgumentException($"{Check.D(name)} must be [{len}], got {Shape.Format(t.Shape)}.", name);
    }
}
