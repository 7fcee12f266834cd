using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using PoolKernels.Kernels.Sequence;

namespace PoolKernels;

/// <summary>Options of <c>sequence_pool</c>: the modes (concatenated in order), GeM power and clamp,
/// Matryoshka truncation and L2 normalization.</summary>
public sealed record SequencePoolOptions
{
    /// <summary>The modes, concatenated in this order (at most 8).</summary>
    public IReadOnlyList<SequencePoolMode> Modes { get; init; }
    /// <summary>GeM power p (> 0). Default 3.</summary>
    public float P { get; init; } = 3f;
    /// <summary>GeM clamp: x is replaced by max(x, eps). Default 1e-6.</summary>
    public float Eps { get; init; } = 1e-6f;
    /// <summary>Keep the first <c>Dims</c> features of the concatenation (Matryoshka); -1 keeps all.</summary>
    public int Dims { get; init; } = -1;
    /// <summary>Divide each output row by max(‖row‖₂, 1e-12).</summary>
    public bool Normalize { get; init; }

    /// <summary>Options for the given modes.</summary>
    public SequencePoolOptions(params SequencePoolMode[] modes) => Modes = modes;

    /// <summary>Prints the modes by their docs/operations.md names: <c>SequencePoolOptions { Modes = [mean, max], P = 3, ... }</c>
    /// (the generated record printer would show the list's type name).</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("Modes = [");
        if (Modes is not null)
            for (int i = 0; i < Modes.Count; i++) builder.Append(i == 0 ? "" : ", ").Append(Name(Modes[i]));
        builder.Append(']');
        builder.Append(System.Globalization.CultureInfo.InvariantCulture, $", P = {P}, Eps = {Eps}, Dims = {Dims}, Normalize = {Normalize}");
        return true;
    }

    /// <summary>Parses a mode list such as "mean" or "cls,mean,max" (names as in docs/operations.md: cls, last_token,
    /// mean, mean_sqrt_len, weighted_mean, max, gem).</summary>
    public static SequencePoolOptions Parse(string modes) => new(ParseModes(modes));

    /// <summary>Parses a comma-separated mode list.</summary>
    public static SequencePoolMode[] ParseModes(string modes)
    {
        ArgumentNullException.ThrowIfNull(modes);
        return modes.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(ParseMode).ToArray();
    }

    /// <summary>Parses one mode name.</summary>
    public static SequencePoolMode ParseMode(string name) => name switch
    {
        "cls" => SequencePoolMode.Cls,
        "last_token" or "lasttoken" => SequencePoolMode.LastToken,
        "mean" => SequencePoolMode.Mean,
        "mean_sqrt_len" or "mean_sqrt_len_tokens" => SequencePoolMode.MeanSqrtLen,
        "weighted_mean" or "weightedmean" => SequencePoolMode.WeightedMean,
        "max" => SequencePoolMode.Max,
        "gem" => SequencePoolMode.Gem,
        _ => throw new ArgumentException($"Unknown sequence pooling mode '{name}'; expected cls, last_token, mean, mean_sqrt_len, weighted_mean, max or gem.", "mode"),
    };

    /// <summary>The docs/operations.md name of a mode.</summary>
    public static string Name(SequencePoolMode m) => m switch
    {
        SequencePoolMode.Cls => "cls", SequencePoolMode.LastToken => "last_token", SequencePoolMode.Mean => "mean",
        SequencePoolMode.MeanSqrtLen => "mean_sqrt_len", SequencePoolMode.WeightedMean => "weighted_mean",
        SequencePoolMode.Max => "max", _ => "gem",
    };

    /// <summary>The output width for features of width <paramref name="dim"/>: modes × dim, or <see cref="Dims"/>.</summary>
    /// <exception cref="ArgumentException">The options are invalid for that width.</exception>
    public int OutputWidth(int dim) => Validate(dim);

    /// <summary>Validates the options against a feature width and returns the output width.</summary>
    internal int Validate(int dim)
    {
        if (Modes is null || Modes.Count == 0) throw new ArgumentException("mode must name at least one pooling mode.", "mode");
        if (Modes.Count > 8) throw new ArgumentException($"mode lists {Modes.Count} modes; at most 8 are supported.", "mode");
        bool gem = false;
        for (int i = 0; i < Modes.Count; i++)
        {
            var m = Modes[i];
            if (m < SequencePoolMode.Cls || m > SequencePoolMode.Gem) throw new ArgumentException($"mode {(int)m} is not a sequence pooling mode.", "mode");
            gem |= m == SequencePoolMode.Gem;
        }
        if (gem && !(P > 0 && float.IsFinite(P))) throw new ArgumentException($"p must be a finite number > 0, got {P}.", "p");
        if (float.IsNaN(Eps)) throw new ArgumentException("eps must not be NaN.", "eps");
        long full = (long)Modes.Count * dim;
        if (Dims == -1) return checked((int)full);
        if (Dims < 1 || Dims > full) throw new ArgumentException($"dims must be -1 (all) or in [1, {full}] for {Modes.Count} mode(s) × D = {dim}, got {Dims}.", "dims");
        return Dims;
    }
}

/// <summary>
/// Sequence pooling (token states → one vector per sequence) and layer pooling, on every backend.
/// <para><c>sequence_pool</c>: for batch row b, V_b = the positions t with attention_mask[b,t] != 0, in order,
/// minus the first prefix_len[b] of them (instruction tokens, as sentence-transformers include_prompt=False).
/// Modes: cls = first of V_b; last_token = last of V_b (right, left and ragged padding alike); mean = Σx/|V|;
/// mean_sqrt_len = Σx/√|V|; weighted_mean = Σ(t+1)·x_t / Σ(t+1) with t the absolute position; max (NaN
/// propagates); gem = ((1/|V|) Σ max(x,eps)^p)^(1/p). The modes are concatenated in the order given (one pass
/// over hidden), cut to the first dims features, then divided by max(‖v‖₂, 1e-12) when normalize is set.
/// An empty V_b gives a zero row for every mode (and normalize leaves it zero).</para>
/// Results of the float backends may differ from the reference in the last bits (float vs double accumulation).
/// </summary>
public static class SequencePooling
{
    /// <summary><c>sequence_pool</c> over host spans: hidden [B,T,D] (float, Half or BFloat16), attentionMask [B,T]
    /// (long, int, byte or bool; nonzero keeps), output [B, dims], prefixLen empty or [B] (>= 0).</summary>
    /// <exception cref="ArgumentException">A length does not match the shape, an element type is unsupported,
    /// a prefix is negative, or an option is invalid.</exception>
    public static void SequencePool<T, TMask>(this Device device, ReadOnlySpan<T> hidden, ReadOnlySpan<TMask> attentionMask, Span<float> output,
        int batch, int seqLen, int dim, SequencePoolOptions options, ReadOnlySpan<long> prefixLen = default)
        where T : unmanaged where TMask : unmanaged
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        Check.FloatInput<T>(nameof(hidden));
        Check.Mask<TMask>(nameof(attentionMask));
        int dims = Validate(batch, seqLen, dim, hidden.Length, attentionMask.Length, prefixLen.Length, prefixLen, output.Length, options);
        switch (device)
        {
            case CpuDevice cpu:
                RunCpu(cpu, hidden, attentionMask, prefixLen, output, batch, seqLen, dim, dims, options, dims);
                break;
            case IlgpuDevice g:
                using (var h = g.Upload(hidden, batch, seqLen, dim))
                using (var m = g.Upload(attentionMask, batch, seqLen))
                using (var p = prefixLen.IsEmpty ? null : g.Upload(prefixLen, batch))
                using (var o = g.Allocate(DType.F32, batch, dims))
                {
                    RunIlgpu(g, h, m, p, o, batch, seqLen, dim, dims, options, 0, dims, 0);
                    o.CopyTo(output);
                }
                break;
        }
    }

    /// <summary><c>sequence_pool</c> over tensor spans: hidden [B,T,D], attentionMask [B,T], output [B,dims];
    /// dense row-major spans only.</summary>
    public static void SequencePool<T, TMask>(this Device device, ReadOnlyTensorSpan<T> hidden, ReadOnlyTensorSpan<TMask> attentionMask,
        TensorSpan<float> output, SequencePoolOptions options) where T : unmanaged where TMask : unmanaged
    {
        var h = Check.Dense(hidden, nameof(hidden), out var hs);
        var m = Check.Dense(attentionMask, nameof(attentionMask), out var ms);
        var o = Check.Dense(output, nameof(output), out var os);
        Check.Rank(hs, 3, nameof(hidden), "[B,T,D]");
        Check.Rank(ms, 2, nameof(attentionMask), "[B,T]");
        Check.Rank(os, 2, nameof(output), "[B,dims]");
        if (ms[0] != hs[0] || ms[1] != hs[1]) throw new ArgumentException($"attentionMask {Shape.Format(ms)} does not match hidden {Shape.Format(hs)}.", nameof(attentionMask));
        ArgumentNullException.ThrowIfNull(options);
        Check.ShapeIs(os, [hs[0], options.Validate(hs[2])], nameof(output), "[B,dims]");
        device.SequencePool(h, m, o, hs[0], hs[1], hs[2], options);
    }

    /// <summary><c>sequence_pool</c> on device-resident tensors: hidden [B,T,D] F32|F16|BF16, attentionMask [B,T]
    /// I64|I32|U8|BOOL, output [B,dims] F32, prefixLen null or [B] I64|I32. All must live on <paramref name="device"/>.</summary>
    public static void SequencePool(this Device device, DeviceTensor hidden, DeviceTensor attentionMask, DeviceTensor output,
        SequencePoolOptions options, DeviceTensor? prefixLen = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(attentionMask);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(options);
        foreach (var (name, arg) in (ReadOnlySpan<(string, DeviceTensor?)>)[ (nameof(hidden), hidden), (nameof(attentionMask), attentionMask), (nameof(output), output), (nameof(prefixLen), prefixLen) ])
            Check.SameDevice(device, name, arg);
        Check.Rank(hidden.Shape, 3, nameof(hidden), "[B,T,D]");
        Check.DTypeIs(hidden.DType, nameof(hidden), "F32|F16|BF16", hidden.DType.IsFloatInput());
        Check.DTypeIs(attentionMask.DType, nameof(attentionMask), "I64|I32|U8|BOOL", attentionMask.DType.IsMask());
        Check.DTypeIs(output.DType, nameof(output), "F32", output.DType == DType.F32);
        int b = hidden.Shape[0], t = hidden.Shape[1], d = hidden.Shape[2];
        if (prefixLen is not null)
        {
            Check.DTypeIs(prefixLen.DType, nameof(prefixLen), "I64|I32", prefixLen.DType.IsIndex());
            Check.ShapeIs(prefixLen.Shape, [b], nameof(prefixLen), "[B]");
        }
        CheckMaskShape(attentionMask.Shape, b, t, hidden.Shape);
        long[] prefixValues = prefixLen is null ? [] : prefixLen.ToTensor().ToInt64s();
        int dims = Validate(b, t, d, hidden.Count, attentionMask.Count, prefixValues.Length, prefixValues, output.Count, options);
        Check.ShapeIs(output.Shape, [b, dims], nameof(output), "[B,dims]");
        Run(device, hidden, attentionMask, prefixLen, output, b, t, d, dims, options, 0, dims, 0);
    }

    /// <summary><c>sequence_pool</c> on host tensors of any supported dtype; returns a new [B, dims] F32 tensor.</summary>
    public static HostTensor SequencePool(this Device device, HostTensor hidden, HostTensor attentionMask, SequencePoolOptions options, HostTensor? prefixLen = null)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(options);
        Check.Rank(hidden.Shape, 3, nameof(hidden), "[B,T,D]");
        int dims = options.Validate(hidden.Shape[2]);
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, hidden.Shape[0], dims);
        device.SequencePool(scope.Bind(hidden), scope.Bind(attentionMask), o, options, prefixLen is null ? null : scope.Bind(prefixLen));
        return scope.Result(o);
    }

    /// <summary><c>layer_pool</c> on host tensors: hiddenStates [L,B,T,D] F32|F16|BF16, attentionMask [B,T]; pools
    /// each chosen layer with <paramref name="mode"/> (last_token or mean, the sequence_pool rules) into [B, L', D],
    /// layer order as given. <paramref name="layers"/>: null for all, else indices in [-L, L) (negative counts from the end).</summary>
    public static HostTensor LayerPool(this Device device, HostTensor hiddenStates, HostTensor attentionMask, SequencePoolMode mode, IReadOnlyList<int>? layers = null)
    {
        ArgumentNullException.ThrowIfNull(hiddenStates);
        Check.Rank(hiddenStates.Shape, 4, nameof(hiddenStates), "[L,B,T,D]");
        using var scope = new HostScope(device);
        int lp = layers?.Count ?? hiddenStates.Shape[0];
        var o = scope.Output(DType.F32, hiddenStates.Shape[1], lp, hiddenStates.Shape[3]);
        device.LayerPool(scope.Bind(hiddenStates), scope.Bind(attentionMask), o, mode, layers);
        return scope.Result(o);
    }

    /// <summary><c>layer_pool</c> on device-resident tensors: output [B, L', D] F32. See
    /// <see cref="LayerPool(Device, HostTensor, HostTensor, SequencePoolMode, IReadOnlyList{int}?)"/>.</summary>
    public static void LayerPool(this Device device, DeviceTensor hiddenStates, DeviceTensor attentionMask, DeviceTensor output,
        SequencePoolMode mode, IReadOnlyList<int>? layers = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(hiddenStates);
        ArgumentNullException.ThrowIfNull(attentionMask);
        ArgumentNullException.ThrowIfNull(output);
        foreach (var (name, arg) in (ReadOnlySpan<(string, DeviceTensor?)>)[ (nameof(hiddenStates), hiddenStates), (nameof(attentionMask), attentionMask), (nameof(output), output) ])
            Check.SameDevice(device, name, arg);
        Check.Rank(hiddenStates.Shape, 4, nameof(hiddenStates), "[L,B,T,D]");
        Check.DTypeIs(hiddenStates.DType, nameof(hiddenStates), "F32|F16|BF16", hiddenStates.DType.IsFloatInput());
        Check.DTypeIs(attentionMask.DType, nameof(attentionMask), "I64|I32|U8|BOOL", attentionMask.DType.IsMask());
        Check.DTypeIs(output.DType, nameof(output), "F32", output.DType == DType.F32);
        if (mode is not (SequencePoolMode.LastToken or SequencePoolMode.Mean))
            throw new ArgumentException($"layer_pool mode must be last_token or mean, got {SequencePoolOptions.Name(mode)}.", nameof(mode));
        int l = hiddenStates.Shape[0], b = hiddenStates.Shape[1], t = hiddenStates.Shape[2], d = hiddenStates.Shape[3];
        CheckMaskShape(attentionMask.Shape, b, t, hiddenStates.Shape);
        int chosen = CheckLayers(layers, l);
        if (output.Shape.Length != 3 || output.Shape[0] != b || output.Shape[1] != chosen || output.Shape[2] != d)
            throw new ArgumentException($"output must be [B, L', D] = [{b}, {chosen}, {d}], got {Shape.Format(output.Shape)}.", nameof(output));
        if (b == 0 || d == 0) return;
        var options = mode == SequencePoolMode.Mean ? LayerMean : LayerLast;
        long layerElems = (long)b * t * d;
        for (int i = 0; i < chosen; i++)
            Run(device, hiddenStates, attentionMask, null, output, b, t, d, d, options, Layer(layers, i, l) * layerElems, chosen * d, (long)i * d);
    }

    /// <summary>Parses a layer selection: "" or "all" for every layer, a comma list "0,3,-1", or a range "a..b"
    /// (both ends included), or a mix ("0,4..7"). At most <see cref="MaxParsedLayers"/> entries in all (the layers are
    /// checked against L when the selection is used).</summary>
    /// <exception cref="ArgumentException">An entry is not an integer, a range ends before it starts, or the selection
    /// names more than <see cref="MaxParsedLayers"/> layers (ParamName "layers").</exception>
    public static int[]? ParseLayers(string? layers)
    {
        if (string.IsNullOrWhiteSpace(layers) || layers == "all") return null;
        var r = new List<int>();
        foreach (var part in layers.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int dots = part.IndexOf("..", StringComparison.Ordinal);
            if (dots < 0) { r.Add(ParseInt(part)); continue; }
            int a = ParseInt(part[..dots]), z = ParseInt(part[(dots + 2)..]);
            if (z < a) throw new ArgumentException($"layers range '{part}' is empty (end before start).", nameof(layers));
            if ((long)z - a + 1 > MaxParsedLayers - r.Count)
                throw new ArgumentException($"layers '{layers}' names more than {MaxParsedLayers} layers (range '{part}' alone has {(long)z - a + 1}).", nameof(layers));
            for (long i = a; i <= z; i++) r.Add((int)i); // long: a range ending at int.MaxValue must end
        }
        return r.ToArray();

        static int ParseInt(string s) => int.TryParse(s, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out int v)
            ? v : throw new ArgumentException($"layers entry '{s}' is not an integer.", nameof(layers));
    }

    /// <summary>The most layers <see cref="ParseLayers"/> accepts (models have a few hundred at most).</summary>
    public const int MaxParsedLayers = 4096;

    /// <summary>Validates the layer selection; returns how many layers it picks (all L when null).</summary>
    private static int CheckLayers(IReadOnlyList<int>? layers, int l)
    {
        if (layers is null) return l;
        if (layers.Count == 0) throw new ArgumentException("layers must name at least one layer.", nameof(layers));
        for (int i = 0; i < layers.Count; i++)
        {
            int x = layers[i];
            if (x < -l || x >= l) throw new ArgumentException($"layers[{i}] = {x} is outside [-{l}, {l}) for hidden_states with L = {l}.", nameof(layers));
        }
        return layers.Count;
    }

    /// <summary>The i-th chosen layer (negative indices count from the end).</summary>
    private static int Layer(IReadOnlyList<int>? layers, int i, int l) => layers is null ? i : layers[i] < 0 ? layers[i] + l : layers[i];

    private static readonly SequencePoolOptions LayerMean = new(SequencePoolMode.Mean), LayerLast = new(SequencePoolMode.LastToken);

    private static void CheckMaskShape(ReadOnlySpan<int> mask, int b, int t, ReadOnlySpan<int> hidden)
    {
        if (mask.Length != 2 || mask[0] != b || mask[1] != t)
            throw new ArgumentException($"attention_mask must be [B,T] = [{b}, {t}] for hidden {Shape.Format(hidden)}, got {Shape.Format(mask)}.", "attention_mask");
    }

    private static int Validate(int batch, int seqLen, int dim, long hiddenLen, long maskLen, int prefixCount, ReadOnlySpan<long> prefix, long outLen, SequencePoolOptions options)
    {
        Check.NonNegative(batch, nameof(batch));
        Check.NonNegative(seqLen, nameof(seqLen));
        Check.NonNegative(dim, nameof(dim));
        // Messages are built only on failure: the steady-state call allocates nothing.
        if (hiddenLen != (long)batch * seqLen * dim) Check.Length(hiddenLen, (long)batch * seqLen * dim, "hidden", Shape3(batch, seqLen, dim));
        if (maskLen != (long)batch * seqLen) Check.Length(maskLen, (long)batch * seqLen, "attention_mask", "[B,T] of " + Shape3(batch, seqLen, dim));
        if (prefixCount != 0)
        {
            if (prefixCount != batch) Check.Length(prefixCount, batch, "prefix_len", "[B] of " + Shape3(batch, seqLen, dim));
            for (int i = 0; i < prefix.Length; i++)
                if (prefix[i] < 0) throw new ArgumentException($"prefix_len[{i}] = {prefix[i]} is negative.", "prefix_len");
        }
        int dims = options.Validate(dim);
        if (outLen != (long)batch * dims) Check.Length(outLen, (long)batch * dims, "output", $"[B, dims] = [{batch}, {dims}]");
        return dims;

        static string Shape3(int b, int t, int d) => $"[B,T,D] = [{b}, {t}, {d}]";
    }

    private static void RunCpu<T, TMask, TIdx>(CpuDevice cpu, ReadOnlySpan<T> hidden, ReadOnlySpan<TMask> mask, ReadOnlySpan<TIdx> prefix,
        Span<float> output, int batch, int seqLen, int dim, int dims, SequencePoolOptions o, int outStride)
        where T : unmanaged where TMask : unmanaged where TIdx : unmanaged
    {
        Span<SequencePoolMode> modes = stackalloc SequencePoolMode[o.Modes.Count];
        for (int i = 0; i < modes.Length; i++) modes[i] = o.Modes[i];
        if (cpu.Kind == BackendKind.Reference)
            SequencePoolReference.Run(hidden, mask, prefix, output, batch, seqLen, dim, modes, o.P, o.Eps, dims, o.Normalize, outStride);
        else
        {
            long bt = (long)batch * seqLen;
            int block = Tuning.Get(cpu, "sequence_pool", bt, dim, "block", SequencePoolSimd.DefaultBlock);
            int threads = Tuning.Get(cpu, "sequence_pool", bt, dim, "threads", cpu.Pool.Workers);
            SequencePoolSimd.Run(hidden, mask, prefix, output, batch, seqLen, dim, modes, o.P, o.Eps, dims, o.Normalize, cpu.Pool, outStride, block, threads);
        }
    }

    /// <summary>Runs on validated device tensors. hidden starts at element <paramref name="hiddenOffset"/>; output row b
    /// starts at element <paramref name="outOffset"/> + b·<paramref name="outStride"/>.</summary>
    private static void Run(Device device, DeviceTensor hidden, DeviceTensor mask, DeviceTensor? prefix, DeviceTensor output,
        int batch, int seqLen, int dim, int dims, SequencePoolOptions options, long hiddenOffset, int outStride, long outOffset)
    {
        if (device is IlgpuDevice g) { RunIlgpu(g, hidden, mask, prefix, output, batch, seqLen, dim, dims, options, hiddenOffset, outStride, outOffset); return; }
        int es = hidden.DType.Size();
        var runner = new CpuRunner
        {
            Cpu = (CpuDevice)device,
            Hidden = hidden.Host.Span.Slice((int)(hiddenOffset * es), (int)((long)batch * seqLen * dim * es)),
            Mask = mask.Host.Span,
            Prefix = prefix is null ? default : prefix.Host.Span,
            Output = MemoryMarshal.Cast<byte, float>(output.Host.Span)[(int)outOffset..],
            Batch = batch, SeqLen = seqLen, Dim = dim, Dims = dims, Options = options, OutStride = outStride,
        };
        TypeDispatch.Run(ref runner, hidden.DType, mask.DType, prefix?.DType ?? DType.I64);
    }

    private ref struct CpuRunner : ITypedRunner
    {
        public CpuDevice Cpu;
        public ReadOnlySpan<byte> Hidden, Mask, Prefix;
        public Span<float> Output;
        public int Batch, SeqLen, Dim, Dims, OutStride;
        public SequencePoolOptions Options;

        public readonly void Run<T, TMask, TIdx>() where T : unmanaged where TMask : unmanaged where TIdx : unmanaged =>
            RunCpu(Cpu, MemoryMarshal.Cast<byte, T>(Hidden), MemoryMarshal.Cast<byte, TMask>(Mask), MemoryMarshal.Cast<byte, TIdx>(Prefix),
                Output, Batch, SeqLen, Dim, Dims, Options, OutStride);
    }

    private static readonly System.Reflection.MethodInfo LaunchDefinition = typeof(SequencePoolIlgpu).GetMethod(nameof(SequencePoolIlgpu.Launch))!;

    private static void RunIlgpu(IlgpuDevice g, DeviceTensor hidden, DeviceTensor mask, DeviceTensor? prefix, DeviceTensor output,
        int batch, int seqLen, int dim, int dims, SequencePoolOptions o, long hiddenOffset, int outStride, long outOffset)
    {
        if (batch == 0 || dims == 0) return;
        int modes = 0;
        for (int i = 0; i < o.Modes.Count; i++) modes |= (int)o.Modes[i] << (4 * i);
        var prm = new SequencePoolParams
        {
            Batch = batch, SeqLen = seqLen, Dim = dim, Dims = dims, OutStride = outStride, ModeCount = o.Modes.Count, Modes = modes,
            P = o.P, Eps = o.Eps, HasPrefix = prefix is null ? 0 : 1,
        };
        var launch = IlgpuTypes.Get<SequencePoolLaunch>(LaunchDefinition, IlgpuTypes.Element(hidden.DType), IlgpuTypes.Mask(mask.DType),
            IlgpuTypes.Index(prefix?.DType ?? DType.I64));
        int es = hidden.DType.Size();
        lock (g.Gate)
        {
            var hv = g.Bytes(hidden, hiddenOffset * es, (long)batch * seqLen * dim * es);
            var outView = output.ViewAs<float>().SubView(outOffset, (long)(batch - 1) * outStride + dims);
            ArrayView<byte> pv = prefix is null ? g.Dummy.View : g.Bytes(prefix);
            int group = Tuning.Get(g, "sequence_pool", (long)batch * seqLen, dim, "group", 128);
            launch(g.Accelerator, g.Accelerator.DefaultStream, hv, g.Bytes(mask), pv, outView, prm, o.Normalize, group);
            g.Accelerator.Synchronize();
        }
    }
}
