using PoolKernels.Kernels.Spatial;
using static PoolKernels.SpatialArgs;

namespace PoolKernels;

/// <summary>Options of <c>spatial_pool</c>.</summary>
public sealed record SpatialPoolOptions
{
    /// <summary>avg, max or gem. Default avg.</summary>
    public SpatialPoolMode Mode { get; init; } = SpatialPoolMode.Avg;
    /// <summary>GeM power (> 0). Default 3 (SuperGlobal's GeM+ uses 4.6).</summary>
    public float P { get; init; } = 3f;
    /// <summary>GeM clamp: x is replaced by max(x, eps). Default 1e-6.</summary>
    public float Eps { get; init; } = 1e-6f;
    /// <summary>Divide each output row by max(‖row‖₂, 1e-12).</summary>
    public bool Normalize { get; init; }
    /// <summary>x is [B,H,W,C] (layout=nhwc) instead of [B,C,H,W].</summary>
    public bool Nhwc { get; init; }
    /// <summary>Group GeM (GGeM), docs/operations.md <c>p_groups [G]</c>: G powers, each finite and > 0, with G dividing C.
    /// Channel c of gem uses p = PGroups[c / (C/G)] instead of <see cref="P"/>; avg and max ignore it (the values are
    /// checked all the same). Empty (the default) = off. Copied on init.</summary>
    public ReadOnlyMemory<float> PGroups { get => _pGroups; init => _pGroups = value.ToArray(); }

    private float[] _pGroups = [];

    /// <summary>The GGeM powers (empty = off), as the kernels take them.</summary>
    internal float[] PGroupsArray => _pGroups;

    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        builder.Append(inv, $"Mode = {Mode}, P = {P}, Eps = {Eps}, Normalize = {Normalize}, Nhwc = {Nhwc}");
        if (_pGroups.Length != 0) builder.Append(", PGroups = [").AppendJoin(", ", _pGroups.Select(x => x.ToString(inv))).Append(']');
        return true;
    }

    /// <summary>Parses avg | max | gem.</summary>
    public static SpatialPoolMode ParseMode(string mode) => mode switch
    {
        "avg" or "mean" => SpatialPoolMode.Avg,
        "max" => SpatialPoolMode.Max,
        "gem" => SpatialPoolMode.Gem,
        _ => throw new ArgumentException($"Unknown spatial_pool mode '{mode}'; expected avg, max or gem.", "mode"),
    };

    /// <summary>Parses nchw | nhwc (true for nhwc).</summary>
    public static bool ParseLayout(string layout) => layout switch
    {
        "nchw" => false,
        "nhwc" => true,
        _ => throw new ArgumentException($"Unknown layout '{layout}'; expected nchw or nhwc.", "layout"),
    };
}

/// <summary>Options of <c>pool2d</c> (PyTorch's avg_pool2d / max_pool2d / lp_pool2d; min = -max(-x)).</summary>
public sealed record Pool2dOptions
{
    /// <summary>avg, max, min or lp.</summary>
    public Pool2dMode Mode { get; init; } = Pool2dMode.Max;
    /// <summary>Window (kh, kw), each > 0.</summary>
    public (int H, int W) Kernel { get; init; } = (2, 2);
    /// <summary>Stride (each > 0); null = the kernel.</summary>
    public (int H, int W)? Stride { get; init; }
    /// <summary>Padding per side (>= 0). With zeros at most half the kernel (PyTorch's rule); with reflect smaller than the
    /// input.</summary>
    public (int H, int W) Padding { get; init; } = (0, 0);
    /// <summary>Dilation (max/min only; avg and lp need 1).</summary>
    public (int H, int W) Dilation { get; init; } = (1, 1);
    /// <summary>Ceil instead of floor in the output size (the last window must start inside the input or left padding).</summary>
    public bool CeilMode { get; init; }
    /// <summary>avg divides by the window including implicit zero padding (true) or by its cells inside the input.</summary>
    public bool CountIncludePad { get; init; } = true;
    /// <summary>lp power (> 0).</summary>
    public float P { get; init; } = 2f;
    /// <summary>zeros (implicit padding: ignored by max/min, counted by avg per CountIncludePad), replicate or reflect
    /// (the input is padded first and the padded cells count as data).</summary>
    public string PaddingMode { get; init; } = "zeros";

    /// <summary>Parses avg | max | min | lp.</summary>
    public static Pool2dMode ParseMode(string mode) => mode switch
    {
        "avg" or "mean" => Pool2dMode.Avg,
        "max" => Pool2dMode.Max,
        "min" => Pool2dMode.Min,
        "lp" => Pool2dMode.Lp,
        _ => throw new ArgumentException($"Unknown pool2d mode '{mode}'; expected avg, max, min or lp.", "mode"),
    };

    /// <summary>Validates against an input [B,C,H,W] and resolves the kernel geometry.</summary>
    internal Pool2dParams Resolve(int batch, int channels, int h, int w)
    {
        if (Mode < Pool2dMode.Avg || Mode > Pool2dMode.Lp) throw new ArgumentException($"mode {(int)Mode} is not a pool2d mode.", "mode");
        var (kh, kw) = Kernel;
        var (sh, sw) = Stride ?? Kernel;
        var (ph, pw) = Padding;
        var (dh, dw) = Dilation;
        if (kh <= 0 || kw <= 0) throw new ArgumentException($"kernel must be > 0, got ({kh}, {kw}).", "kernel");
        if (sh <= 0 || sw <= 0) throw new ArgumentException($"stride must be > 0, got ({sh}, {sw}).", "stride");
        if (ph < 0 || pw < 0) throw new ArgumentException($"padding must be >= 0, got ({ph}, {pw}).", "padding");
        if (dh <= 0 || dw <= 0) throw new ArgumentException($"dilation must be > 0, got ({dh}, {dw}).", "dilation");
        if (Mode is Pool2dMode.Avg or Pool2dMode.Lp && (dh != 1 || dw != 1))
            throw new ArgumentException($"dilation ({dh}, {dw}) is only supported by max and min (PyTorch's avg/lp pooling have none).",
                "dilation");
        if (Mode == Pool2dMode.Lp) PositiveFinite(P, "p");
        int padMode = PaddingMode switch
        {
            "zeros" or "" => PadIndex.Zeros,
            "replicate" => PadIndex.Replicate,
            "reflect" => PadIndex.Reflect,
            _ => throw new ArgumentException($"Unknown padding_mode '{PaddingMode}'; expected zeros, replicate or reflect.",
                nameof(PaddingMode)),
        };
        // Messages are built only on failure: a valid call allocates nothing here.
        string Xs() => $"x [B,C,H,W] = [{batch}, {channels}, {h}, {w}]";
        if (padMode == PadIndex.Zeros && (ph > kh / 2 || pw > kw / 2))
            throw new ArgumentException($"padding ({ph}, {pw}) must be at most half the kernel ({kh}, {kw}) with zero padding.", "padding");
        if (padMode == PadIndex.Reflect && (ph >= h || pw >= w))
            throw new ArgumentException($"reflect padding ({ph}, {pw}) must be smaller than the input size (H, W) = ({h}, {w}) of {Xs()}.",
                "padding");
        if (padMode == PadIndex.Replicate && (ph > 0 || pw > 0) && (h == 0 || w == 0))
            throw new ArgumentException($"replicate padding needs a non-empty input, got {Xs()}.", "x");
        bool zeros = padMode == PadIndex.Zeros;
        // The kernels index the padded axes and windows in int: every coordinate they form must fit.
        if ((long)h + 2L * ph > int.MaxValue || (long)w + 2L * pw > int.MaxValue)
            throw new ArgumentException($"padding ({ph}, {pw}) makes the padded input of {Xs()} larger than {int.MaxValue} cells per axis.",
                "padding");
        int dataH = zeros ? h : h + 2 * ph, dataW = zeros ? w : w + 2 * pw, impH = zeros ? ph : 0, impW = zeros ? pw : 0;
        long oh = Pool2dParams.OutputSize(dataH, kh, impH, sh, dh, CeilMode), ow = Pool2dParams.OutputSize(dataW, kw, impW, sw, dw,
            CeilMode);
        if (oh <= 0 || ow <= 0)
            throw new ArgumentException($"kernel ({kh}, {kw}) with dilation ({dh}, {dw}) and padding ({ph}, {pw}) gives an empty output "
                + $"({oh}, {ow}) for {Xs()}.", "kernel");
        if ((oh - 1) * sh + (long)(kh - 1) * dh + 1 > int.MaxValue - (long)ph || (ow - 1) * sw + (long)(kw - 1) * dw
            + 1 > int.MaxValue - (long)pw)
            throw new ArgumentException($"kernel ({kh}, {kw}) with stride ({sh}, {sw}) and dilation ({dh}, {dw}) spans more than "
                + $"{int.MaxValue} cells for {Xs()}.", "kernel");
        return new Pool2dParams
        {
            Batch = batch,
            Channels = channels,
            H = h,
            W = w,
            OutH = (int)oh,
            OutW = (int)ow,
            KH = kh,
            KW = kw,
            SH = sh,
            SW = sw,
            DH = dh,
            DW = dw,
            PH = ph,
            PW = pw,
            DataH = dataH,
            DataW = dataW,
            ImpH = impH,
            ImpW = impW,
            Mode = (int)Mode,
            PadMode = padMode,
            CountIncludePad = CountIncludePad ? 1 : 0,
            P = P,
        };
    }
}

/// <summary>
/// Spatial and region pooling (docs/operations.md "Spatial and region pooling") on every backend. Inputs are F32.
/// Float backends may differ from the reference in the last bits (float vs double accumulation).
/// </summary>
public static partial class SpatialPooling
{
    // ---------------------------------------------------------------- spatial_pool

    /// <summary>
    /// <c>spatial_pool</c>: x [B,C,H,W] (or [B,H,W,C] with <see cref="SpatialPoolOptions.Nhwc"/>) F32, valid null or
    /// [B,H,W] I64|I32|U8|BOOL (nonzero keeps). For each (b,c) over the valid cells V: avg = Σx/|V|; max (NaN
    /// propagates); gem = ((1/|V|) Σ max(x,eps)^p)^(1/p) (the sequence_pool formula). An empty V gives 0. With
    /// normalize each row is divided by max(‖row‖₂, 1e-12) (fused: the rows are normalized right after pooling).
    /// Group GeM (<see cref="SpatialPoolOptions.PGroups"/>, p_groups [G], G dividing C): channel c of gem uses
    /// p = p_groups[c / (C/G)] in both the power and the root. Returns [B,C] F32.
    /// </summary>
    public static HostTensor SpatialPool(this Device device, HostTensor x, SpatialPoolOptions? options = null, HostTensor? valid = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        options ??= new();
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape[0], options.Nhwc ? x.Shape[3] : x.Shape[1]);
        device.SpatialPool(scope.Bind(x), o, options, scope.BindOptional(valid));
        return scope.Result(o);
    }

    /// <summary><c>spatial_pool</c> on device tensors: writes output [B,C] F32 (see the host overload).</summary>
    public static void SpatialPool(this Device device, DeviceTensor x, DeviceTensor output, SpatialPoolOptions options,
        DeviceTensor? valid = null)
    {
        Devices(device, "x", x, "output", output, "valid", valid);
        ArgumentNullException.ThrowIfNull(options);
        F32(x, "x");
        Check.Rank(x.Shape, 4, "x", options.Nhwc ? "[B,H,W,C]" : "[B,C,H,W]");
        int b = x.Shape[0], c, h, w;
        if (options.Nhwc) { h = x.Shape[1]; w = x.Shape[2]; c = x.Shape[3]; }
        else { c = x.Shape[1]; h = x.Shape[2]; w = x.Shape[3]; }
        if (valid is not null) { MaskDType(valid, "valid"); Shaped(valid, "valid", "[B,H,W]", b, h, w); }
        ValidateSpatial(options, c, options.Nhwc ? "x [B,H,W,C]" : "x [B,C,H,W]");
        Output(output, b, c);
        var plan = new SpatialPlan(In.Of(x), In.Of(valid), valid is null ? 0 : valid.DType.Size(), Out.Of(output), b, c, h, w, options);
        Dispatch.Run(device, ref plan);
    }

    /// <summary><c>spatial_pool</c> over host spans: x [B,C,H,W] (or [B,H,W,C]), output [B,C]; no valid mask.</summary>
    public static void SpatialPool(this Device device, ReadOnlySpan<float> x, Span<float> output, int batch, int channels, int height,
        int width, SpatialPoolOptions options)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        Check.NonNegative(batch, "batch"); Check.NonNegative(channels, "channels"); Check.NonNegative(height,
            "height"); Check.NonNegative(width, "width");
        // exactly the checks of the other overloads (this one used to skip mode and eps on simd)
        ValidateSpatial(options, channels, options.Nhwc ? "x [B,H,W,C]" : "x [B,C,H,W]");
        if (x.Length != (long)batch * channels * height * width) Check.Length(x.Length, (long)batch * channels * height * width, "x",
            $"[B,C,H,W] = [{batch}, {channels}, {height}, {width}]");
        if (output.Length != (long)batch * channels) Check.Length(output.Length, (long)batch * channels, "output",
            $"[B,C] = [{batch}, {channels}]");
        var plan = new SpatialPlan(In.Of(x), default, 0, Out.Of(output), batch, channels, height, width, options);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>A validated spatial_pool call: x [B,C,H,W] or [B,H,W,C], valid absent or [B,H,W] (mask bytes of
    /// <c>maskSize</c> each), output [B,C].</summary>
    private readonly ref struct SpatialPlan(In x, In valid, int maskSize, Out output, int b, int c, int h, int w,
        SpatialPoolOptions o) : IPlan
    {
        private readonly In _x = x, _valid = valid;
        private readonly Out _out = output;

        public void Reference() =>
            SpatialPoolReference.Run(_x.As<float>(), _valid.Host, maskSize, _out.As<float>(), b, c, h, w, o.Nhwc, o.Mode, o.P, o.Eps,
                o.Normalize, o.PGroupsArray);

        public void Simd(CpuDevice cpu) =>
            SpatialPoolSimd.Run(_x.As<float>(), _valid.Host, maskSize, _out.As<float>(), b, c, h, w, o.Nhwc, o.Mode, o.P, o.Eps,
                o.Normalize, cpu.Pool, o.PGroupsArray);

        public void Ilgpu(IlgpuScope s)
        {
            var prm = new SpatialPoolParams
            {
                Batch = b,
                Channels = c,
                HW = h * w,
                Nhwc = o.Nhwc ? 1 : 0,
                MaskSize = maskSize,
                Mode = (int)o.Mode,
                P = o.P,
                Eps = o.Eps,
                GroupSize = o.Mode == SpatialPoolMode.Gem && o.PGroupsArray.Length != 0 ? c / o.PGroupsArray.Length : 0,
            };
            var output = s.Out<float>(_out);
            SpatialPoolIlgpu.Launch(s.Accelerator, s.Stream, s.In<float>(_x), s.In<byte>(_valid),
                prm.GroupSize > 0 ? s.Upload<float>(o.PGroupsArray) : s.Dummy.Cast<float>(), output, prm, o.Normalize);
            s.Download(output, _out);
        }
    }

    private static void ValidateSpatial(SpatialPoolOptions options, int channels, string x)
    {
        if (options.Mode < SpatialPoolMode.Avg || options.Mode > SpatialPoolMode.Gem)
            throw new ArgumentException($"mode {(int)options.Mode} is not a spatial_pool mode.", "mode");
        if (options.Mode == SpatialPoolMode.Gem) PositiveFinite(options.P, "p");
        if (float.IsNaN(options.Eps)) throw new ArgumentException("eps must not be NaN.", "eps");
        if (options.PGroupsArray.Length != 0) PGroupsCheck.Validate(options.PGroupsArray, channels, "C", x, nameof(options.PGroups));
    }

    // ---------------------------------------------------------------- pool2d

    /// <summary>
    /// <c>pool2d</c>: x [B,C,H,W] F32 → [B,C,Ho,Wo] with PyTorch's output size rules (floor, or ceil with the last window
    /// starting inside the input or left padding), avg_pool2d's divisor (count_include_pad), max_pool2d's -inf implicit
    /// padding and dilation, lp_pool2d = (Σ_window x^p)^(1/p) (implicit zero padding adds 0; PyTorch's lp has no padding,
    /// this is the natural extension), min = -max(-x). padding_mode replicate/reflect pads the input first (as F.pad; the
    /// padded cells count as data) without a padded copy. A window with no input cell gives 0.
    /// </summary>
    public static HostTensor Pool2d(this Device device, HostTensor x, Pool2dOptions options)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(options);
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        var q = options.Resolve(x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]);
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, q.Batch, q.Channels, q.OutH, q.OutW);
        device.Pool2d(scope.Bind(x), o, options);
        return scope.Result(o);
    }

    /// <summary>The output shape [B,C,Ho,Wo] of <c>pool2d</c> on x (validates the options).</summary>
    public static int[] Pool2dShape(ReadOnlySpan<int> x, Pool2dOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Check.Rank(x, 4, "x", "[B,C,H,W]");
        var q = options.Resolve(x[0], x[1], x[2], x[3]);
        return [q.Batch, q.Channels, q.OutH, q.OutW];
    }

    /// <summary><c>pool2d</c> on device tensors (see the host overload); output must be [B,C,Ho,Wo] F32.</summary>
    public static void Pool2d(this Device device, DeviceTensor x, DeviceTensor output, Pool2dOptions options)
    {
        Devices(device, "x", x, "output", output);
        ArgumentNullException.ThrowIfNull(options);
        F32(x, "x");
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        var q = options.Resolve(x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]);
        Output(output, q.Batch, q.Channels, q.OutH, q.OutW);
        var plan = new Pool2dPlan(In.Of(x), Out.Of(output), q);
        Dispatch.Run(device, ref plan);
    }

    /// <summary><c>pool2d</c> over host spans: x [B,C,H,W], output [B,C,Ho,Wo] (see <see cref="Pool2dShape"/>).</summary>
    public static void Pool2d(this Device device, ReadOnlySpan<float> x, Span<float> output, int batch, int channels, int height, int width,
        Pool2dOptions options)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        Check.NonNegative(batch, "batch"); Check.NonNegative(channels, "channels"); Check.NonNegative(height,
            "height"); Check.NonNegative(width, "width");
        if (x.Length != (long)batch * channels * height * width) Check.Length(x.Length, (long)batch * channels * height * width, "x",
            $"[B,C,H,W] = [{batch}, {channels}, {height}, {width}]");
        var q = options.Resolve(batch, channels, height, width);
        if (output.Length != (long)batch * channels * q.OutH * q.OutW)
            Check.Length(output.Length, (long)batch * channels * q.OutH * q.OutW, "output",
                $"[B,C,Ho,Wo] = [{batch}, {channels}, {q.OutH}, {q.OutW}]");
        var plan = new Pool2dPlan(In.Of(x), Out.Of(output), q);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>A validated pool2d call: x [B,C,H,W], output [B,C,Ho,Wo].</summary>
    private readonly ref struct Pool2dPlan(In x, Out output, Pool2dParams q) : IPlan
    {
        private readonly In _x = x;
        private readonly Out _out = output;

        public void Reference() => Pool2dReference.Run(_x.As<float>(), _out.As<float>(), q);

        public void Simd(CpuDevice cpu) => Pool2dSimd.Run(_x.As<float>(), _out.As<float>(), q, cpu.Pool, Pool2dItem(cpu, q));

        public void Ilgpu(IlgpuScope s)
        {
            var output = s.Out<float>(_out);
            Pool2dIlgpu.Launch(s.Accelerator, s.Stream, s.In<float>(_x), output, q);
            s.Download(output, _out);
        }
    }

    // ---------------------------------------------------------------- adaptive_pool2d / spp

    /// <summary>
    /// <c>adaptive_pool2d</c>: x [B,C,H,W] F32, mode avg|max (<see cref="Pool2dMode.Avg"/> / <see cref="Pool2dMode.Max"/>),
    /// output_size (oh, ow) → [B,C,oh,ow]; bin i covers [floor(i·H/oh), ceil((i+1)·H/oh)) (as PyTorch; bins may overlap
    /// and oh may exceed H). Max propagates NaN. An empty input (H or W = 0) gives 0.
    /// </summary>
    public static HostTensor AdaptivePool2d(this Device device, HostTensor x, Pool2dMode mode, (int H, int W) outputSize)
    {
        ArgumentNullException.ThrowIfNull(x);
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        AdaptiveMode(mode);
        AdaptiveStride(x.Shape[1], outputSize);
        if ((long)x.Shape[0] * x.Shape[1] * outputSize.H * outputSize.W > Array.MaxLength / sizeof(float))
            throw new ArgumentException($"output_size ({outputSize.H}, {outputSize.W}) makes the output of x {Shape.Format(x.Shape)} "
                + $"larger than a host tensor can be.", nameof(outputSize));
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape[0], x.Shape[1], outputSize.H, outputSize.W);
        device.AdaptivePool2d(scope.Bind(x), o, mode, outputSize);
        return scope.Result(o);
    }

    /// <summary><c>adaptive_pool2d</c> on device tensors; output [B,C,oh,ow] F32.</summary>
    public static void AdaptivePool2d(this Device device, DeviceTensor x, DeviceTensor output, Pool2dMode mode, (int H, int W) outputSize)
    {
        Devices(device, "x", x, "output", output);
        F32(x, "x");
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        AdaptiveMode(mode);
        int b = x.Shape[0], c = x.Shape[1];
        int stride = AdaptiveStride(c, outputSize);
        Output(output, b, c, outputSize.H, outputSize.W);
        RunAdaptive(device, x, output, [(outputSize.H, outputSize.W, 0)], mode, stride);
    }

    /// <summary>
    /// <c>spp</c>: x [B,C,H,W] F32, levels (e.g. 1,2,4), mode avg|max → [B, C·Σl²]: each level is adaptive_pool2d to
    /// l×l, its [C,l,l] block flattened row-major, levels concatenated in the order given (written in place: no
    /// per-level temporaries).
    /// </summary>
    public static HostTensor Spp(this Device device, HostTensor x, IReadOnlyList<int> levels, Pool2dMode mode = Pool2dMode.Max)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(levels);
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        int width = SppWidth(x.Shape[1], levels);
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape[0], width);
        device.Spp(scope.Bind(x), o, levels, mode);
        return scope.Result(o);
    }

    /// <summary><c>spp</c> on device tensors; output [B, C·Σl²] F32.</summary>
    public static void Spp(this Device device, DeviceTensor x, DeviceTensor output, IReadOnlyList<int> levels,
        Pool2dMode mode = Pool2dMode.Max)
    {
        Devices(device, "x", x, "output", output);
        ArgumentNullException.ThrowIfNull(levels);
        F32(x, "x");
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        AdaptiveMode(mode);
        int b = x.Shape[0], c = x.Shape[1];
        int width = SppWidth(c, levels);
        Output(output, b, width);
        Span<(int, int, int)> plan = levels.Count <= 32 ? stackalloc (int, int, int)[levels.Count] : new (int, int, int)[levels.Count];
        int offset = 0;
        for (int i = 0; i < plan.Length; i++) { plan[i] = (levels[i], levels[i], offset); offset += c * levels[i] * levels[i]; }
        RunAdaptive(device, x, output, plan, mode, width);
    }

    private static int SppWidth(int c, IReadOnlyList<int> levels)
    {
        if (levels.Count == 0) throw new ArgumentException("levels must name at least one level.", "levels");
        long w = 0;
        for (int i = 0; i < levels.Count; i++)
        {
            if (levels[i] <= 0) throw new ArgumentException($"levels[{i}] = {levels[i]} must be > 0.", "levels");
            long cells = (long)levels[i] * levels[i]; // < 2^62: no wrap; then bounded before multiplying by C
            if (cells > int.MaxValue || (w += cells * c) > int.MaxValue) throw new ArgumentException($"levels give C·Σl² > {int.MaxValue} "
                + $"features for C = {c} (the kernels index an output row in int).", "levels");
        }
        return (int)w;
    }

    /// <summary>The per-batch output stride C·oh·ow of adaptive_pool2d, checked to be > 0 per axis and to fit in int.</summary>
    private static int AdaptiveStride(int c, (int H, int W) outputSize)
    {
        if (outputSize.H <= 0 || outputSize.W <= 0)
            throw new ArgumentException($"output_size must be > 0, got ({outputSize.H}, {outputSize.W}).", nameof(outputSize));
        long bins = (long)outputSize.H * outputSize.W, s = bins * c; // bins < 2^62; s is only used once bins <= int.MaxValue
        if (bins > int.MaxValue || s > int.MaxValue)
            throw new ArgumentException($"output_size ({outputSize.H}, {outputSize.W}) gives C·oh·ow = {s} > {int.MaxValue} outputs per "
                + $"batch for C = {c}.", nameof(outputSize));
        return (int)s;
    }

    private static void AdaptiveMode(Pool2dMode mode)
    {
        if (mode is not (Pool2dMode.Avg or Pool2dMode.Max)) throw new ArgumentException($"mode {mode} is not avg or max.", "mode");
    }

    /// <summary>The simd work-item size of pool2d (tunable <c>item</c>, bucketed by planes × H·W).</summary>
    private static int Pool2dItem(CpuDevice cpu, in Pool2dParams q) =>
        Tuning.Get(cpu, "pool2d", (long)q.Batch * q.Channels, (long)q.H * q.W, "item", Pool2dSimd.DefaultItemFloats);

    private static void RunAdaptive(Device device, DeviceTensor x, DeviceTensor output, ReadOnlySpan<(int OH, int OW, int Offset)> levels,
        Pool2dMode mode, int outStride)
    {
        var plan = new AdaptivePlan(x, output, levels, mode, outStride);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>adaptive_pool2d / spp: one adaptive pooling per level, written at its offset of each output row.</summary>
    private readonly ref struct AdaptivePlan(DeviceTensor x, DeviceTensor output, ReadOnlySpan<(int OH, int OW, int Offset)> levels,
        Pool2dMode mode, int outStride) : IPlan
    {
        private readonly ReadOnlySpan<(int OH, int OW, int Offset)> _levels = levels;

        private AdaptivePoolParams Level(int i) => new()
        {
            Batch = x.Shape[0],
            Channels = x.Shape[1],
            H = x.Shape[2],
            W = x.Shape[3],
            OutH = _levels[i].OH,
            OutW = _levels[i].OW,
            OutStride = outStride,
            OutOffset = _levels[i].Offset,
            Mode = (int)mode,
        };

        public void Reference()
        {
            for (int i = 0; i < _levels.Length; i++) AdaptivePoolReference.Run(F(x), FOut(output), Level(i));
        }

        public void Simd(CpuDevice cpu)
        {
            for (int i = 0; i < _levels.Length; i++) Pool2dSimd.RunAdaptive(F(x), FOut(output), Level(i), cpu.Pool);
        }

        public void Ilgpu(IlgpuScope s)
        {
            for (int i = 0; i < _levels.Length; i++) Pool2dIlgpu.LaunchAdaptive(s.Accelerator, s.Stream, s.View<float>(x),
                s.View<float>(output), Level(i));
        }
    }
}
