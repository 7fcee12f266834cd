using ILGPU;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Sequence;

namespace PoolKernels;

/// <summary>Options of <c>sequence_pool</c>: the modes (concatenated in order), GeM power (or Group GeM powers) and clamp,
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
    /// <summary>Group GeM (GGeM, Ko et al. 2022), docs/operations.md <c>p_groups [G]</c>: G powers, each finite and > 0,
    /// with G dividing D. Feature d of the gem block uses p = PGroups[d / (D/G)] instead of <see cref="P"/> (group g covers
    /// features [g·D/G, (g+1)·D/G)); the other modes of a mode list ignore it, and so does a list without gem (the values
    /// are checked all the same). G = 1 is
    /// GeM with one learnable p. Empty (the default) = off. Copied on init.</summary>
    public ReadOnlyMemory<float> PGroups { get => _pGroups; init => _pGroups = value.ToArray(); }

    private float[] _pGroups = [];

    /// <summary>The GGeM powers (empty = off), as the kernels take them.</summary>
    internal float[] PGroupsArray => _pGroups;

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
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        builder.Append(inv, $", P = {P}, Eps = {Eps}, Dims = {Dims}, Normalize = {Normalize}");
        if (_pGroups.Length != 0) builder.Append(", PGroups = [").AppendJoin(", ", _pGroups.Select(x => x.ToString(inv))).Append(']');
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
        _ => throw new ArgumentException($"Unknown sequence pooling mode '{name}'; expected cls, last_token, mean, mean_sqrt_len, "
            + $"weighted_mean, max or gem.", "mode"),
    };

    /// <summary>The docs/operations.md name of a mode.</summary>
    public static string Name(SequencePoolMode m) => m switch
    {
        SequencePoolMode.Cls => "cls",
        SequencePoolMode.LastToken => "last_token",
        SequencePoolMode.Mean => "mean",
        SequencePoolMode.MeanSqrtLen => "mean_sqrt_len",
        SequencePoolMode.WeightedMean => "weighted_mean",
        SequencePoolMode.Max => "max",
        _ => "gem",
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
            if (m < SequencePoolMode.Cls || m > SequencePoolMode.Gem)
                throw new ArgumentException($"mode {(int)m} is not a sequence pooling mode.", "mode");
            gem |= m == SequencePoolMode.Gem;
        }
        if (gem && !(P > 0 && float.IsFinite(P))) throw new ArgumentException($"p must be a finite number > 0, got {P}.", "p");
        if (float.IsNaN(Eps)) throw new ArgumentException("eps must not be NaN.", "eps");
        if (_pGroups.Length != 0) PGroupsCheck.Validate(_pGroups, dim, "D", "hidden [B,T,D]", nameof(PGroups));
        long full = (long)Modes.Count * dim;
        if (Dims == -1) return checked((int)full);
        if (Dims < 1 || Dims > full)
            throw new ArgumentException($"dims must be -1 (all) or in [1, {full}] for {Modes.Count} mode(s) × D = {dim}, got {Dims}.",
            "dims");
        return Dims;
    }
}

/// <summary>The checks of the Group GeM input p_groups [G], shared by sequence_pool (G divides D) and spatial_pool
/// (G divides C).</summary>
internal static class PGroupsCheck
{
    /// <summary>Throws an ArgumentException (ParamName <paramref name="param"/>) unless G = pGroups.Length divides
    /// <paramref name="width"/> and every entry is finite and > 0. Messages are built only on failure.</summary>
    public static void Validate(float[] pGroups, int width, string widthName, string of, string param)
    {
        int g = pGroups.Length;
        if (width % g != 0)
            throw new ArgumentException($"p_groups [G] = [{g}]: G must divide {widthName} = {width} of {of} (group g covers the "
                + $"{widthName}/G features [g·{widthName}/G, (g+1)·{widthName}/G)).", param);
        for (int i = 0; i < g; i++)
            if (!(pGroups[i] > 0 && float.IsFinite(pGroups[i])))
                throw new ArgumentException($"p_groups [G] = [{g}]: p_groups[{i}] = {pGroups[i]} must be a finite number > 0.", param);
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
/// <para>Group GeM (<see cref="SequencePoolOptions.PGroups"/>, p_groups [G], G dividing D): feature d of the gem block uses
/// p = p_groups[d / (D/G)] in both the power and the root.</para>
/// Results of the float backends may differ from the reference in the last bits (float vs double accumulation).
/// </summary>
public static partial class SequencePooling
{
    /// <summary><c>sequence_pool</c> over host spans: hidden [B,T,D] (float, Half or BFloat16), attentionMask [B,T]
    /// (long, int, byte or bool; nonzero keeps), output [B, dims], prefixLen empty or [B] (>= 0).</summary>
    /// <exception cref="ArgumentException">A length does not match the shape, an element type is unsupported,
    /// a prefix is negative, or an option is invalid.</exception>
    public static void SequencePool<T, TMask>(this Device device, ReadOnlySpan<T> hidden, ReadOnlySpan<TMask> attentionMask,
        Span<float> output,
        int batch, int seqLen, int dim, SequencePoolOptions options, ReadOnlySpan<long> prefixLen = default)
        where T : unmanaged where TMask : unmanaged
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        Check.FloatInput<T>(nameof(hidden));
        Check.Mask<TMask>(nameof(attentionMask));
        int dims = Validate(batch, seqLen, dim, hidden.Length, attentionMask.Length, prefixLen.Length, prefixLen, output.Length, options);
        var plan = new Plan(In.Of(hidden), DTypes.Of<T>(), In.Of(attentionMask), DTypes.Of<TMask>(), In.Of(prefixLen), DType.I64,
            Out.Of(output),
            batch, seqLen, dim, dims, options, dims, 0);
        Dispatch.Run(device, ref plan);
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
        if (ms[0] != hs[0] || ms[1] != hs[1])
            throw new ArgumentException($"attentionMask {Shape.Format(ms)} does not match hidden {Shape.Format(hs)}.",
            nameof(attentionMask));
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
        foreach (var (name, arg) in (ReadOnlySpan<(string, DeviceTensor?)>)[(nameof(hidden), hidden), (nameof(attentionMask),
            attentionMask), (nameof(output), output), (nameof(prefixLen), prefixLen)])
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
        // prefixLen stays on the device: its values are not read here (every kernel treats an entry <= 0 as 0, and one past
        // the row's kept tokens gives an empty row), so no host round trip and no allocation
        int dims = Validate(b, t, d, hidden.Count, attentionMask.Count, prefixLen is null ? 0 : b, default, output.Count, options);
        Check.ShapeIs(output.Shape, [b, dims], nameof(output), "[B,dims]");
        var plan = new Plan(In.Of(hidden), hidden.DType, In.Of(attentionMask), attentionMask.DType, In.Of(prefixLen),
            prefixLen?.DType ?? DType.I64,
            Out.Of(output), b, t, d, dims, options, dims, 0);
        Dispatch.Run(device, ref plan);
    }

    /// <summary><c>sequence_pool</c> on host tensors of any supported dtype; returns a new [B, dims] F32 tensor.</summary>
    public static HostTensor SequencePool(this Device device, HostTensor hidden, HostTensor attentionMask, SequencePoolOptions options,
        HostTensor? prefixLen = null)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(options);
        Check.Rank(hidden.Shape, 3, nameof(hidden), "[B,T,D]");
        int dims = options.Validate(hidden.Shape[2]);
        CheckHostPrefix(prefixLen);
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, hidden.Shape[0], dims);
        device.SequencePool(scope.Bind(hidden), scope.Bind(attentionMask), o, options, prefixLen is null ? null : scope.Bind(prefixLen));
        return scope.Result(o);
    }

    /// <summary>Host prefix_len values are checked here (the DeviceTensor overloads do not read them): none may be negative.</summary>
    private static void CheckHostPrefix(HostTensor? prefixLen)
    {
        if (prefixLen is null || !prefixLen.DType.IsIndex()) return;
        var pv = prefixLen.ToInt64s();
        for (int i = 0; i < pv.Length; i++)
            if (pv[i] < 0) throw new ArgumentException($"prefix_len[{i}] = {pv[i]} is negative.", "prefixLen");
    }

    /// <summary><c>layer_pool</c> on host tensors: hiddenStates [L,B,T,D] F32|F16|BF16, attentionMask [B,T]; pools
    /// each chosen layer with <paramref name="mode"/> (last_token or mean, the sequence_pool rules) into [B, L', D],
    /// layer order as given. <paramref name="layers"/>: null for all, else indices in [-L, L) (negative counts from the end).</summary>
    public static HostTensor LayerPool(this Device device, HostTensor hiddenStates, HostTensor attentionMask, SequencePoolMode mode,
        IReadOnlyList<int>? layers = null)
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
        foreach (var (name, arg) in (ReadOnlySpan<(string, DeviceTensor?)>)[(nameof(hiddenStates), hiddenStates), (nameof(attentionMask),
            attentionMask), (nameof(output), output)])
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
            throw new ArgumentException($"output must be [B, L', D] = [{b}, {chosen}, {d}], got {Shape.Format(output.Shape)}.",
                nameof(output));
        if (b == 0 || d == 0) return;
        var options = mode == SequencePoolMode.Mean ? LayerMean : LayerLast;
        long layerBytes = (long)b * t * d * hiddenStates.DType.Size();
        using var batch = device.BeginBatch(); // one synchronization for all layers
        for (int i = 0; i < chosen; i++)
        {
            var plan = new Plan(In.Of(hiddenStates).Slice(Layer(layers, i, l) * layerBytes, layerBytes), hiddenStates.DType,
                In.Of(attentionMask),
                attentionMask.DType, default, DType.I64, Out.Of(output), b, t, d, d, options, chosen * d, (long)i * d);
            Dispatch.Run(device, ref plan);
        }
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
                throw new ArgumentException($"layers '{layers}' names more than {MaxParsedLayers} layers (range '{part}' alone has "
                    + $"{(long)z - a + 1}).", nameof(layers));
            for (long i = a; i <= z; i++) r.Add((int)i); // long: a range ending at int.MaxValue must end
        }
        return r.ToArray();

        static int ParseInt(string s) => int.TryParse(s, System.Globalization.NumberStyles.AllowLeadingSign,
            System.Globalization.CultureInfo.InvariantCulture, out int v)
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
            if (x < -l || x >= l) throw new ArgumentException($"layers[{i}] = {x} is outside [-{l}, {l}) for hidden_states with L = {l}.",
                nameof(layers));
        }
        return layers.Count;
    }

    /// <summary>The i-th chosen layer (negative indices count from the end).</summary>
    private static int Layer(IReadOnlyList<int>? layers, int i, int l) => layers is null ? i : layers[i] < 0 ? layers[i] + l : layers[i];

    private static readonly SequencePoolOptions LayerMean = new(SequencePoolMode.Mean), LayerLast = new(SequencePoolMode.LastToken);

    private static void CheckMaskShape(ReadOnlySpan<int> mask, int b, int t, ReadOnlySpan<int> hidden)
    {
        if (mask.Length != 2 || mask[0] != b || mask[1] != t)
            throw new ArgumentException($"attention_mask must be [B,T] = [{b}, {t}] for hidden {Shape.Format(hidden)}, got "
                + $"{Shape.Format(mask)}.", "attentionMask");
    }

    private static int Validate(int batch, int seqLen, int dim, long hiddenLen, long maskLen, int prefixCount, ReadOnlySpan<long> prefix,
        long outLen, SequencePoolOptions options)
    {
        Check.NonNegative(batch, nameof(batch));
        Check.NonNegative(seqLen, nameof(seqLen));
        Check.NonNegative(dim, nameof(dim));
        // Messages are built only on failure: the steady-state call allocates nothing.
        if (hiddenLen != (long)batch * seqLen * dim) Check.Length(hiddenLen, (long)batch * seqLen * dim, "hidden", Shape3(batch, seqLen,
            dim));
        if (maskLen != (long)batch * seqLen) Check.Length(maskLen, (long)batch * seqLen, "attentionMask", "[B,T] of " + Shape3(batch,
            seqLen, dim));
        if (prefixCount != 0)
        {
            if (prefixCount != batch) Check.Length(prefixCount, batch, "prefixLen", "[B] of " + Shape3(batch, seqLen, dim));
            for (int i = 0; i < prefix.Length; i++)
                if (prefix[i] < 0) throw new ArgumentException($"prefix_len[{i}] = {prefix[i]} is negative.", "prefixLen");
        }
        int dims = options.Validate(dim);
        if (outLen != (long)batch * dims) Check.Length(outLen, (long)batch * dims, "output", $"[B, dims] = [{batch}, {dims}]");
        return dims;

        static string Shape3(int b, int t, int d) => $"[B,T,D] = [{b}, {t}, {d}]";
    }

    /// <summary>A validated call: hidden [B,T,D], mask [B,T], prefix absent or [B]; output row b starts at element
    /// <c>outOffset + b·outStride</c>.</summary>
    private ref struct Plan(In hidden, DType hiddenType, In mask, DType maskType, In prefix, DType prefixType, Out output,
        int batch, int seqLen, int dim, int dims, SequencePoolOptions options, int outStride, long outOffset) : IPlan, ITypedRunner
    {
        private readonly In _hidden = hidden, _mask = mask, _prefix = prefix;
        private readonly Out _output = output;
        private CpuDevice? _simd;

        /// <summary>The same call writing into <paramref name="output"/> instead.</summary>
        internal readonly Plan Into(Out output) => new(_hidden, hiddenType, _mask, maskType, _prefix, prefixType, output, batch, seqLen,
            dim,
            dims, options, outStride, outOffset);

        public void Reference() { _simd = null; TypeDispatch.Run(ref this, hiddenType, maskType, prefixType); }

        public void Simd(CpuDevice cpu) { _simd = cpu; TypeDispatch.Run(ref this, hiddenType, maskType, prefixType); }

        public readonly void Run<T, TMask, TIdx>() where T : unmanaged where TMask : unmanaged where TIdx : unmanaged
        {
            if (batch == 0 || dims == 0) return;
            Span<SequencePoolMode> modes = stackalloc SequencePoolMode[options.Modes.Count];
            for (int i = 0; i < modes.Length; i++) modes[i] = options.Modes[i];
            var h = _hidden.As<T>(); var m = _mask.As<TMask>(); var p = _prefix.As<TIdx>();
            var o = _output.As<float>()[(int)outOffset..];
            var (pw, eps, norm) = (options.P, options.Eps, options.Normalize);
            ReadOnlySpan<float> pg = options.PGroupsArray;
            if (_simd is not { } cpu) SequencePoolReference.Run(h, m, p, o, batch, seqLen, dim, modes, pw, eps, dims, norm, outStride, pg);
            else
            {
                long bt = (long)batch * seqLen;
                int block = Tuning.Get(cpu, "sequence_pool", bt, dim, "block", SequencePoolSimd.DefaultBlock);
                int threads = Tuning.Get(cpu, "sequence_pool", bt, dim, "threads", cpu.Pool.Workers);
                SequencePoolSimd.Run(h, m, p, o, batch, seqLen, dim, modes, pw, eps, dims, norm, cpu.Pool, outStride, block, threads, pg);
            }
        }

        public readonly void Ilgpu(IlgpuScope s)
        {
            if (batch == 0 || dims == 0) return;
            var output = s.Out<float>(_output);
            LaunchInto(s, output.SubView(outOffset, (long)(batch - 1) * outStride + dims));
            s.Download(output, _output);
        }

        /// <summary>Enqueues the pooling kernel writing row b at <paramref name="output"/>[b·outStride] (not synchronized).</summary>
        internal readonly void LaunchInto(IlgpuScope s, ArrayView<float> output)
        {
            int modes = 0;
            for (int i = 0; i < options.Modes.Count; i++) modes |= (int)options.Modes[i] << (4 * i);
            var prm = new SequencePoolParams
            {
                Batch = batch,
                SeqLen = seqLen,
                Dim = dim,
                Dims = dims,
                OutStride = outStride,
                ModeCount = options.Modes.Count,
                Modes = modes,
                P = options.P,
                Eps = options.Eps,
                HasPrefix = _prefix.Given ? 1 : 0,
                GroupSize = options.PGroupsArray.Length == 0 ? 0 : dim / options.PGroupsArray.Length,
            };
            int group = s.Tune("sequence_pool", (long)batch * seqLen, dim, "group", 128);
            Launcher(hiddenType, maskType, prefixType)(s.Accelerator, s.Stream, s.In<byte>(_hidden), s.In<byte>(_mask), s.In<byte>(_prefix),
                s.Upload<float>(options.PGroupsArray), output, prm, options.Normalize, group);
        }
    }

    // The ILGPU launcher closed over the storage and reader types of the dtypes (a static method group: the compiler caches
    // each closed delegate; the kernel caches its compiled form per accelerator).
    private static SequencePoolLaunch Launcher(DType hidden, DType mask, DType prefix) => hidden switch
    {
        DType.F32 => Launcher<float, F32Reader>(mask, prefix),
        DType.F16 => Launcher<ushort, F16Reader>(mask, prefix),
        _ => Launcher<ushort, Bf16Reader>(mask, prefix),
    };

    private static SequencePoolLaunch Launcher<TRaw, TElem>(DType mask, DType prefix)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw> => mask switch
        {
            DType.I64 => Launcher<TRaw, TElem, long, I64Mask>(prefix),
            DType.I32 => Launcher<TRaw, TElem, int, I32Mask>(prefix),
            _ => Launcher<TRaw, TElem, byte, U8Mask>(prefix),
        };

    private static SequencePoolLaunch Launcher<TRaw, TElem, TMask, TMaskOp>(DType prefix)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw> where TMask : unmanaged where TMaskOp : struct,
            IMaskReader<TMask> =>
        prefix == DType.I32 ? SequencePoolIlgpu.Launch<TRaw, TElem, TMask, TMaskOp, int, I32Index>
            : SequencePoolIlgpu.Launch<TRaw, TElem, TMask, TMaskOp, long, I64Index>;
}
