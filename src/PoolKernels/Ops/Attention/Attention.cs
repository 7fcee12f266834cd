using System.Runtime.InteropServices;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Attention;

namespace PoolKernels;

/// <summary>Memory layout of sdpa's q, k, v and out.</summary>
public enum SdpaLayout
{
    /// <summary>[B, H, T, E] (PyTorch's scaled_dot_product_attention).</summary>
    Bhtd,
    /// <summary>[B, T, H, E] (flash-attention, the output of a QKV projection).</summary>
    Bthd,
}

/// <summary>The sizes of an sdpa call given as spans: q [B,Hq,Tq,E], k [B,Hkv,Tk,E], v [B,Hkv,Tk,Ev] (or the bthd order).</summary>
/// <param name="Batch">B.</param>
/// <param name="Hq">Query heads.</param>
/// <param name="Hkv">Key/value heads (Hq % Hkv == 0).</param>
/// <param name="Tq">Query rows.</param>
/// <param name="Tk">Key rows.</param>
/// <param name="E">Head dim of q and k.</param>
/// <param name="Ev">Head dim of v and out.</param>
public readonly record struct SdpaDims(int Batch, int Hq, int Hkv, int Tq, int Tk, int E, int Ev);

/// <summary>Parameters of <c>sdpa</c> and <c>sdpa_varlen</c> (docs/operations.md "Masked attention").</summary>
public sealed record SdpaOptions
{
    /// <summary>none, top_left (j &lt;= i) or bottom_right (j &lt;= i + Tk - Tq).</summary>
    public SdpaCausal Causal { get; init; }
    /// <summary>Multiplier of q·k; null = 1/√E (1 when E = 0).</summary>
    public float? Scale { get; init; }
    /// <summary>Keys more than this far left of the diagonal i + o are not allowed; -1 = unbounded.</summary>
    public int WindowLeft { get; init; } = -1;
    /// <summary>Keys more than this far right of the diagonal i + o are not allowed; -1 = unbounded.</summary>
    public int WindowRight { get; init; } = -1;
    /// <summary>bhtd or bthd (sdpa only; sdpa_varlen is always [N, H, E]).</summary>
    public SdpaLayout Layout { get; init; }

    /// <summary>Score soft-capping (Gemma 2, FlashAttention's <c>softcap</c>): s = softcap·tanh(s/softcap) on the scaled
    /// score, before any mask or ALiBi; 0 (the default) turns it off; must be finite and >= 0.</summary>
    public float Softcap { get; init; }
    /// <summary>ALiBi slopes, Hq values (one per query head) or B·Hq (row-major [B,Hq]); empty (the default) = no ALiBi.
    /// Adds -slope·|i + o - j| to the score of query i and key j (o = Tk - Tq for bottom_right, else 0). Copied on init.</summary>
    public ReadOnlyMemory<float> AlibiSlopes { get => _alibi; init { _alibi = value.ToArray(); _mods = null; } }
    /// <summary>Attention sinks, Hq finite logits (one per query head) that join each softmax denominator and attend to
    /// nothing: out_i = Σ_j e^{s_ij}·v_j / (e^{sink} + Σ_j e^{s_ij}), lse_i = ln(e^{sink} + Σ_j e^{s_ij}); a row with no
    /// allowed key gives out 0 and lse = sink. Empty (the default) = no sinks. Copied on init.</summary>
    public ReadOnlyMemory<float> Sinks { get => _sinks; init { _sinks = value.ToArray(); _mods = null; } }

    private float[] _alibi = [], _sinks = [];
    private float[]? _mods;

    /// <summary>The kernels' modifier buffer: alibi slopes, then sinks (built once per options object).</summary>
    internal float[] Mods => _mods ??= [.. _alibi, .. _sinks];

    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        builder.Append(inv, $"Causal = {Causal}, Scale = {Scale?.ToString(inv) ?? "1/sqrt(E)"}, WindowLeft = {WindowLeft}, ");
        builder.Append(inv, $"WindowRight = {WindowRight}, Layout = {Layout}, Softcap = {Softcap}");
        builder.Append(", AlibiSlopes = [").AppendJoin(", ", _alibi.Select(x => x.ToString(inv))).Append(']');
        builder.Append(", Sinks = [").AppendJoin(", ", _sinks.Select(x => x.ToString(inv))).Append(']');
        return true;
    }

    /// <summary>Checks the modifiers against a call's batch and query heads and sets them in <paramref name="p"/>.</summary>
    internal void ApplyModifiers(ref SdpaParams p, int batch, int hq)
    {
        if (!(Softcap >= 0 && float.IsFinite(Softcap)))
            throw new ArgumentException($"softcap must be finite and >= 0 (0 = off), got {Softcap}.", nameof(Softcap));
        if (_alibi.Length != 0)
        {
            if (_alibi.Length != hq && _alibi.Length != (long)batch * hq)
                throw new ArgumentException($"alibi_slopes must have Hq = {hq} or B·Hq = {(long)batch * hq} values ([Hq] or [B,Hq]), got "
                    + $"{_alibi.Length}.",
                    nameof(AlibiSlopes));
            foreach (var x in _alibi)
                if (!float.IsFinite(x)) throw new ArgumentException($"alibi_slopes must be finite, got {x}.", nameof(AlibiSlopes));
            p.HasAlibi = 1; p.AlibiBatch = _alibi.Length == hq ? 0 : hq;
        }
        if (_sinks.Length != 0)
        {
            if (_sinks.Length != hq) throw new ArgumentException($"sinks must have Hq = {hq} values, got {_sinks.Length}.", nameof(Sinks));
            foreach (var x in _sinks)
                if (!float.IsFinite(x)) throw new ArgumentException($"sinks must be finite, got {x}.", nameof(Sinks));
            p.HasSinks = 1; p.SinkBase = _alibi.Length;
        }
        p.Softcap = Softcap;
    }

    internal static readonly SdpaOptions Default = new();

    /// <summary>Parses docs/operations.md's causal names: none, top_left, bottom_right.</summary>
    public static SdpaCausal ParseCausal(string text) => text switch
    {
        "none" or "" or "false" => SdpaCausal.None,
        "top_left" => SdpaCausal.TopLeft,
        "bottom_right" => SdpaCausal.BottomRight,
        _ => throw new ArgumentException($"Unknown causal mode '{text}'; expected none, top_left or bottom_right.", nameof(text)),
    };

    /// <summary>Parses bhtd / bthd.</summary>
    public static SdpaLayout ParseLayout(string text) => text switch
    {
        "bhtd" => SdpaLayout.Bhtd,
        "bthd" => SdpaLayout.Bthd,
        _ => throw new ArgumentException($"Unknown layout '{text}'; expected bhtd or bthd.", nameof(text)),
    };

    internal void Validate(int e)
    {
        if (Causal is < SdpaCausal.None or > SdpaCausal.BottomRight)
            throw new ArgumentException($"causal {(int)Causal} is not a causal mode.", nameof(Causal));
        if (Layout is < SdpaLayout.Bhtd or > SdpaLayout.Bthd) throw new ArgumentException($"layout {(int)Layout} is not a layout.",
            nameof(Layout));
        if (WindowLeft < -1) throw new ArgumentException($"window_left must be -1 (unbounded) or >= 0, got {WindowLeft}.",
            nameof(WindowLeft));
        if (WindowRight < -1) throw new ArgumentException($"window_right must be -1 (unbounded) or >= 0, got {WindowRight}.",
            nameof(WindowRight));
        if (Scale is { } s && !float.IsFinite(s)) throw new ArgumentException($"scale must be finite, got {s}.", nameof(Scale));
    }

    internal float ScaleFor(int e) => Scale ?? (e == 0 ? 1f : (float)(1.0 / Math.Sqrt(e)));
}

/// <summary>
/// Masked scaled-dot-product attention, forward, on every backend (docs/operations.md "Masked attention").
/// <para>For query row i of head h: out_i = Σ_j softmax_j(scale·q_i·k_j + bias_ij)·v_j over the allowed keys j, and
/// lse_i = ln Σ_j exp(scale·q_i·k_j + bias_ij) (natural log). Key j is allowed iff every mask given allows it:
/// attn_mask [B|1, Hq|1, Tq, Tk] BOOL/U8 true (or F32/F16/BF16 added to the score; -inf = not allowed),
/// key_padding_mask [B, Tk] (I64/I32/U8/BOOL, nonzero keeps), and with o = 0 (none, top_left) or Tk - Tq
/// (bottom_right): j &lt;= i + o when causal, and i + o - window_left &lt;= j &lt;= i + o + window_right for the bounds that
/// are not -1 (windows apply with causal none too). A row with no allowed key gives out 0 and lse -inf (not NaN).</para>
/// <para>GQA/MQA: Hq must be a multiple of Hkv; query head h reads key/value head h / (Hq/Hkv). q, k, v share one dtype
/// (F32, F16 or BF16) and accumulate in float32 (double on <c>reference</c>). No backend materializes the Tq×Tk score
/// matrix: all use an online (running max, running sum) softmax over key tiles, skipping tiles that causal or window
/// bounds remove. Results of the float backends differ from the reference in the last bits.</para>
/// <para><c>sdpa_varlen</c> is the same over packed sequences: q [Nq,Hq,E], k [Nk,Hkv,E], v [Nk,Hkv,Ev] with sequence b at rows
/// cu_seqlens[b] .. cu_seqlens[b+1]-1; the bottom_right offset is per sequence (Tk_b - Tq_b).</para>
/// </summary>
public static partial class Attention
{
    // ---------------------------------------------------------------- sdpa: host tensors

    /// <summary><c>sdpa</c> on host tensors; returns out (q's layout, last dim Ev) and lse [B,Hq,Tq], both F32.</summary>
    /// <exception cref="ArgumentException">A shape, dtype or option is invalid (ParamName: q, k, v, attn_mask,
    /// key_padding_mask, causal, scale, window_left, window_right, layout).</exception>
    public static (HostTensor Out, HostTensor Lse) Sdpa(this Device device, HostTensor q, HostTensor k, HostTensor v,
        HostTensor? attnMask = null,
        HostTensor? keyPaddingMask = null, SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        options ??= SdpaOptions.Default;
        var plan = PlanSdpa(q.Shape, q.DType, k.Shape, k.DType, v.Shape, v.DType, attnMask?.ShapeArray, attnMask?.DType,
            keyPaddingMask?.ShapeArray, keyPaddingMask?.DType, options);
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, plan.OutShape);
        var l = scope.Output(DType.F32, plan.LseShape);
        device.Sdpa(scope.Bind(q), scope.Bind(k), scope.Bind(v), o, l, scope.BindOptional(attnMask), scope.BindOptional(keyPaddingMask),
            options);
        return (scope.Result(o), scope.Result(l));
    }

    // ---------------------------------------------------------------- sdpa: device tensors

    /// <summary><c>sdpa</c> on device-resident tensors (chains without host copies). output has q's layout with last dim Ev,
    /// lse is [B,Hq,Tq]; both F32 and on <paramref name="device"/>.</summary>
    public static void Sdpa(this Device device, DeviceTensor q, DeviceTensor k, DeviceTensor v, DeviceTensor output, DeviceTensor lse,
        DeviceTensor? attnMask = null, DeviceTensor? keyPaddingMask = null, SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(output); ArgumentNullException.ThrowIfNull(lse);
        options ??= SdpaOptions.Default;
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[("q", q), ("k", k), ("v", v), ("out", output), ("lse", lse),
            ("attn_mask", attnMask), ("key_padding_mask", keyPaddingMask)])
            Check.SameDevice(device, name, t);
        var plan = PlanSdpa(q.Shape, q.DType, k.Shape, k.DType, v.Shape, v.DType, attnMask?.ShapeArray, attnMask?.DType,
            keyPaddingMask?.ShapeArray, keyPaddingMask?.DType, options);
        CheckOutputs(output, lse, plan);
        var call = new Call(plan.P, q.DType, In.Of(q), In.Of(k), In.Of(v), In.Of(attnMask), attnMask?.DType ?? DType.U8,
            In.Of(keyPaddingMask),
            keyPaddingMask?.DType ?? DType.U8, default, default, DType.I64, Out.Of(output), Out.Of(lse), options.Mods);
        Dispatch.Run(device, ref call);
    }

    // ---------------------------------------------------------------- sdpa: spans

    /// <summary><c>sdpa</c> over host spans without masks (causal/window bounds still apply): q, k, v dense in
    /// <see cref="SdpaOptions.Layout"/> order with the sizes of <paramref name="dims"/>; output likewise with Ev, lse [B,Hq,Tq].
    /// On reference and simd nothing is allocated in steady state.</summary>
    public static void Sdpa<T>(this Device device, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, Span<float> output,
        Span<float> lse,
        SdpaDims dims, SdpaOptions? options = null) where T : unmanaged =>
        device.Sdpa<T, byte>(q, k, v, default, output, lse, dims, options, hasKeyPadding: false);

    /// <summary><c>sdpa</c> over host spans with a key_padding_mask [B, Tk] (long, int, byte or bool; nonzero keeps).</summary>
    public static void Sdpa<T, TMask>(this Device device, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
        ReadOnlySpan<TMask> keyPaddingMask,
        Span<float> output, Span<float> lse, SdpaDims dims, SdpaOptions? options = null) where T : unmanaged where TMask : unmanaged =>
        device.Sdpa(q, k, v, keyPaddingMask, output, lse, dims, options, hasKeyPadding: true);

    private static void Sdpa<T, TMask>(this Device device, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
        ReadOnlySpan<TMask> keyPaddingMask,
        Span<float> output, Span<float> lse, SdpaDims dims, SdpaOptions? options, bool hasKeyPadding) where T : unmanaged where TMask
            : unmanaged
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= SdpaOptions.Default;
        Check.FloatInput<T>("q");
        if (hasKeyPadding) Check.Mask<TMask>(nameof(keyPaddingMask));
        var (b, hq, hkv, tq, tk, e, ev) = dims;
        if ((b | hq | hkv | tq | tk | e | ev) < 0) throw new ArgumentException($"dims must be >= 0, got {dims}.", nameof(dims));
        options.Validate(e);
        var p = MakeParams(b, hq, hkv, tq, tk, e, ev, options);
        if (q.Length != (long)b * hq * tq * e) Check.Length(q.Length, (long)b * hq * tq * e, "q", "[B,Hq,Tq,E]");
        if (k.Length != (long)b * hkv * tk * e) Check.Length(k.Length, (long)b * hkv * tk * e, "k", "[B,Hkv,Tk,E]");
        if (v.Length != (long)b * hkv * tk * ev) Check.Length(v.Length, (long)b * hkv * tk * ev, "v", "[B,Hkv,Tk,Ev]");
        if (hasKeyPadding && keyPaddingMask.Length != (long)b * tk) Check.Length(keyPaddingMask.Length, (long)b * tk,
            nameof(keyPaddingMask), "[B,Tk]");
        if (output.Length != (long)b * hq * tq * ev) Check.Length(output.Length, (long)b * hq * tq * ev, nameof(output), "[B,Hq,Tq,Ev]");
        if (lse.Length != (long)b * hq * tq) Check.Length(lse.Length, (long)b * hq * tq, "lse", "[B,Hq,Tq]");
        p.HasKeyPadding = hasKeyPadding ? 1 : 0;
        var call = new Call(p, DTypes.Of<T>(), In.Of(q), In.Of(k), In.Of(v), default, DType.U8, In.Of(keyPaddingMask),
            hasKeyPadding ? DTypes.Of<TMask>() : DType.U8, default, default, DType.I64, Out.Of(output), Out.Of(lse), options.Mods);
        Dispatch.Run(device, ref call);
    }

    // ---------------------------------------------------------------- sdpa_varlen

    /// <summary><c>sdpa_varlen</c> on host tensors: q [Nq,Hq,E], k [Nk,Hkv,E], v [Nk,Hkv,Ev] (one float dtype),
    /// cu_seqlens_q/k [B+1] (I64|I32, starting at 0, non-decreasing, ending at Nq/Nk). Returns out [Nq,Hq,Ev] and lse [Nq,Hq].
    /// Layout is ignored. A sequence with no keys gives out 0 and lse -inf.</summary>
    public static (HostTensor Out, HostTensor Lse) SdpaVarlen(this Device device, HostTensor q, HostTensor k, HostTensor v,
        HostTensor cuSeqlensQ, HostTensor cuSeqlensK,
        SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(cuSeqlensQ); ArgumentNullException.ThrowIfNull(cuSeqlensK);
        options ??= SdpaOptions.Default;
        var plan = PlanVarlen(q.Shape, q.DType, k.Shape, k.DType, v.Shape, v.DType, cuSeqlensQ, cuSeqlensK, options);
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, plan.OutShape);
        var l = scope.Output(DType.F32, plan.LseShape);
        RunVarlen(device, plan, scope.Bind(q), scope.Bind(k), scope.Bind(v), cuSeqlensQ.Data.Span, cuSeqlensQ.DType, cuSeqlensK.Data.Span,
            cuSeqlensK.DType, o, l, options.Mods);
        return (scope.Result(o), scope.Result(l));
    }

    /// <summary><c>sdpa_varlen</c> on device-resident tensors; output [Nq,Hq,Ev] and lse [Nq,Hq] F32.</summary>
    public static void SdpaVarlen(this Device device, DeviceTensor q, DeviceTensor k, DeviceTensor v, DeviceTensor cuSeqlensQ,
        DeviceTensor cuSeqlensK,
        DeviceTensor output, DeviceTensor lse, SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(cuSeqlensQ); ArgumentNullException.ThrowIfNull(cuSeqlensK);
        ArgumentNullException.ThrowIfNull(output); ArgumentNullException.ThrowIfNull(lse);
        options ??= SdpaOptions.Default;
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[("q", q), ("k", k), ("v", v), ("cu_seqlens_q", cuSeqlensQ),
            ("cu_seqlens_k", cuSeqlensK), ("out", output), ("lse", lse)])
            Check.SameDevice(device, name, t);
        // cu_seqlens decide the grid (the longest sequence) and are validated: read on the host (a copy from an accelerator)
        var cuQ = RaggedPooling.HostBytes(cuSeqlensQ, out _);
        var cuK = RaggedPooling.HostBytes(cuSeqlensK, out _);
        var plan = PlanVarlen(q.Shape, q.DType, k.Shape, k.DType, v.Shape, v.DType, cuQ, cuSeqlensQ.DType, cuSeqlensQ.Shape,
            cuK, cuSeqlensK.DType, cuSeqlensK.Shape, options);
        CheckOutputs(output, lse, plan);
        if (cuSeqlensQ.DType == cuSeqlensK.DType)
        {
            // one index type: the kernels read the tensors in place
            var call = new Call(plan.P, q.DType, In.Of(q), In.Of(k), In.Of(v), default, DType.U8, default, DType.U8, In.Of(cuSeqlensQ),
                In.Of(cuSeqlensK),
                cuSeqlensQ.DType, Out.Of(output), Out.Of(lse), options.Mods);
            Dispatch.Run(device, ref call);
        }
        else RunVarlen(device, plan, q, k, v, cuQ, cuSeqlensQ.DType, cuK, cuSeqlensK.DType, output, lse, options.Mods);
    }

    /// <summary>Runs sdpa_varlen with validated cu_seqlens given as host bytes (one index type per kernel: mixed I64/I32
    /// offsets are widened to I64, B+1 values each).</summary>
    private static void RunVarlen(Device device, Plan plan, DeviceTensor q, DeviceTensor k, DeviceTensor v, ReadOnlySpan<byte> cuQ,
        DType cuQt,
        ReadOnlySpan<byte> cuK, DType cuKt, DeviceTensor output, DeviceTensor lse, float[] mods)
    {
        long[]? wq = null, wk = null;
        if (cuQt != cuKt) { wq = Widen(cuQ, cuQt); wk = Widen(cuK, cuKt); }
        var call = new Call(plan.P, q.DType, In.Of(q), In.Of(k), In.Of(v), default, DType.U8, default, DType.U8,
            wq is null ? In.Of(cuQ) : In.Of<long>(wq), wk is null ? In.Of(cuK) : In.Of<long>(wk), wq is null ? cuQt : DType.I64,
            Out.Of(output), Out.Of(lse), mods);
        Dispatch.Run(device, ref call);

        static long[] Widen(ReadOnlySpan<byte> b, DType t) => t == DType.I64 ? MemoryMarshal.Cast<byte, long>(b).ToArray()
            : Array.ConvertAll(MemoryMarshal.Cast<byte, int>(b).ToArray(), x => (long)x);
    }

    // ---------------------------------------------------------------- validation

    /// <summary>A validated call. The output shapes are arrays made on demand (the host overloads allocate outputs anyway);
    /// <see cref="CheckOutputs"/> compares without allocating.</summary>
    internal readonly record struct Plan(SdpaParams P, bool Bhtd, int MaxTq, int Rows = 0)
    {
        public int[] OutShape => P.Varlen != 0 ? [Rows, P.Hq, P.Ev] : Bhtd ? [P.Batch, P.Hq, P.Tq, P.Ev] : [P.Batch, P.Tq, P.Hq, P.Ev];
        public int[] LseShape => P.Varlen != 0 ? [Rows, P.Hq] : [P.Batch, P.Hq, P.Tq];
    }

    private static void CheckOutputs(DeviceTensor output, DeviceTensor lse, Plan plan)
    {
        Check.DTypeIs(output.DType, nameof(output), "F32", output.DType == DType.F32);
        Check.DTypeIs(lse.DType, "lse", "F32", lse.DType == DType.F32);
        var p = plan.P;
        ReadOnlySpan<int> outShape = p.Varlen != 0 ? [plan.Rows, p.Hq, p.Ev] : plan.Bhtd ? [p.Batch, p.Hq, p.Tq, p.Ev] : [p.Batch, p.Tq,
            p.Hq, p.Ev];
        ReadOnlySpan<int> lseShape = p.Varlen != 0 ? [plan.Rows, p.Hq] : [p.Batch, p.Hq, p.Tq];
        if (!output.Shape.SequenceEqual(outShape))
            throw new ArgumentException($"out must be {Shape.Format(plan.OutShape)}, got {Shape.Format(output.Shape)}.", nameof(output));
        if (!lse.Shape.SequenceEqual(lseShape))
            throw new ArgumentException($"lse must be {Shape.Format(plan.LseShape)}, got {Shape.Format(lse.Shape)}.", "lse");
    }

    private static void CheckFloat(DType t, string name) => Check.DTypeIs(t, name, "F32|F16|BF16", t.IsFloatInput());

    private static SdpaParams MakeParams(int b, int hq, int hkv, int tq, int tk, int e, int ev, SdpaOptions options, bool bthd = false)
    {
        if (hkv == 0 ? hq != 0 : hq % hkv != 0)
            throw new ArgumentException($"GQA needs Hq to be a multiple of Hkv; got Hq = {hq}, Hkv = {hkv}.", "k");
        bool bhtd = !bthd && options.Layout == SdpaLayout.Bhtd;
        var p = new SdpaParams
        {
            Batch = b,
            Hq = hq,
            Hkv = hkv,
            E = e,
            Ev = ev,
            Tq = tq,
            Tk = tk,
            Causal = (int)options.Causal,
            WindowLeft = options.WindowLeft,
            WindowRight = options.WindowRight,
            Scale = options.ScaleFor(e),
            QBatch = (long)hq * tq * e,
            KBatch = (long)hkv * tk * e,
            VBatch = (long)hkv * tk * ev,
            OBatch = (long)hq * tq * ev,
            LBatch = (long)hq * tq,
            LHead = tq,
            LRow = 1,
        };
        options.ApplyModifiers(ref p, b, hq);
        if (bhtd)
        {
            p.QHead = (long)tq * e; p.QRow = e; p.KHead = (long)tk * e; p.KRow = e; p.VHead = (long)tk * ev; p.VRow = ev; p.OHead
                = (long)tq * ev; p.ORow = ev;
        }
        else
        {
            p.QHead = e; p.QRow = (long)hq * e; p.KHead = e; p.KRow = (long)hkv * e; p.VHead = ev; p.VRow = (long)hkv * ev; p.OHead
                = ev; p.ORow = (long)hq * ev;
        }
        return p;
    }

    internal static Plan PlanSdpa(ReadOnlySpan<int> qs, DType qt, ReadOnlySpan<int> ks, DType kt, ReadOnlySpan<int> vs, DType vt, int[]? ms,
        DType? mt, int[]? ps, DType? pt, SdpaOptions options)
    {
        bool bhtd = options.Layout == SdpaLayout.Bhtd;
        string lay = bhtd ? "[B,H,T,E]" : "[B,T,H,E]";
        Check.Rank(qs, 4, "q", lay); Check.Rank(ks, 4, "k", lay); Check.Rank(vs, 4, "v", lay);
        CheckFloat(qt, "q");
        if (kt != qt) throw new ArgumentException($"k has dtype {kt.Name()} but q has {qt.Name()}; q, k and v must share one dtype.", "k");
        if (vt != qt) throw new ArgumentException($"v has dtype {vt.Name()} but q has {qt.Name()}; q, k and v must share one dtype.", "v");
        int hi = bhtd ? 1 : 2, ti = bhtd ? 2 : 1;
        int b = qs[0], hq = qs[hi], tq = qs[ti], e = qs[3];
        int hkv = ks[hi], tk = ks[ti], ev = vs[3];
        static string Fmt(ReadOnlySpan<int> qs, ReadOnlySpan<int> ks, ReadOnlySpan<int> vs, bool bhtd) =>
            $"q {Shape.Format(qs)}, k {Shape.Format(ks)}, v {Shape.Format(vs)} ({(bhtd ? "bhtd" : "bthd")})"; // only for messages
        if (ks[0] != b) throw new ArgumentException($"k's batch differs from q's: {Fmt(qs, ks, vs, bhtd)}.", "k");
        if (ks[3] != e) throw new ArgumentException($"k's head dim differs from q's: {Fmt(qs, ks, vs, bhtd)}.", "k");
        if (vs[0] != b || vs[hi] != hkv || vs[ti] != tk)
            throw new ArgumentException($"v must match k in batch, heads and length: {Fmt(qs, ks, vs, bhtd)}.", "v");
        options.Validate(e);
        var p = MakeParams(b, hq, hkv, tq, tk, e, ev, options);
        if (ms is not null)
        {
            var m = mt!.Value;
            Check.DTypeIs(m, "attnMask", "BOOL|U8 (true = attend) or F32|F16|BF16 (additive)",
                m is DType.Bool or DType.U8 || m.IsFloatInput());
            if (ms.Length != 4 || (ms[0] != b && ms[0] != 1) || (ms[1] != hq && ms[1] != 1) || ms[2] != tq || ms[3] != tk)
                throw new ArgumentException($"attn_mask must be [B|1, Hq|1, Tq, Tk] = [{b}|1, {hq}|1, {tq}, {tk}], got {Shape.Format(ms)}.",
                    "attnMask");
            p.HasAttnMask = 1;
            p.MaskHead = ms[1] == 1 ? 0 : (long)tq * tk;
            p.MaskBatch = ms[0] == 1 ? 0 : (long)ms[1] * tq * tk;
        }
        if (ps is not null)
        {
            Check.DTypeIs(pt!.Value, "keyPaddingMask", "I64|I32|U8|BOOL", pt.Value.IsMask());
            if (ps.Length != 2 || ps[0] != b || ps[1] != tk)
                throw new ArgumentException($"key_padding_mask must be [B, Tk] = [{b}, {tk}], got {Shape.Format(ps)}.", "keyPaddingMask");
            p.HasKeyPadding = 1;
        }
        return new Plan(p, bhtd, tq);
    }

    internal static Plan PlanVarlen(ReadOnlySpan<int> qs, DType qt, ReadOnlySpan<int> ks, DType kt, ReadOnlySpan<int> vs, DType vt,
        HostTensor cuQ, HostTensor cuK, SdpaOptions options) =>
        PlanVarlen(qs, qt, ks, kt, vs, vt, cuQ.Data.Span, cuQ.DType, cuQ.Shape, cuK.Data.Span, cuK.DType, cuK.Shape, options);

    internal static Plan PlanVarlen(ReadOnlySpan<int> qs, DType qt, ReadOnlySpan<int> ks, DType kt, ReadOnlySpan<int> vs, DType vt,
        ReadOnlySpan<byte> cuQ, DType cuQt, ReadOnlySpan<int> cuQs,
        ReadOnlySpan<byte> cuK, DType cuKt, ReadOnlySpan<int> cuKs, SdpaOptions options)
    {
        Check.Rank(qs, 3, "q", "[Nq,Hq,E]"); Check.Rank(ks, 3, "k", "[Nk,Hkv,E]"); Check.Rank(vs, 3, "v", "[Nk,Hkv,Ev]");
        CheckFloat(qt, "q");
        if (kt != qt) throw new ArgumentException($"k has dtype {kt.Name()} but q has {qt.Name()}; q, k and v must share one dtype.", "k");
        if (vt != qt) throw new ArgumentException($"v has dtype {vt.Name()} but q has {qt.Name()}; q, k and v must share one dtype.", "v");
        int nq = qs[0], hq = qs[1], e = qs[2], nk = ks[0], hkv = ks[1], ev = vs[2];
        static string Fmt(ReadOnlySpan<int> qs, ReadOnlySpan<int> ks, ReadOnlySpan<int> vs) =>
            $"q {Shape.Format(qs)}, k {Shape.Format(ks)}, v {Shape.Format(vs)}"; // only for messages
        if (ks[2] != e) throw new ArgumentException($"k's head dim differs from q's: {Fmt(qs, ks, vs)}.", "k");
        if (vs[0] != nk || vs[1] != hkv) throw new ArgumentException($"v must match k in rows and heads: {Fmt(qs, ks, vs)}.", "v");
        options.Validate(e);
        int maxTq = Offsets(cuQ, cuQt, cuQs, "cuSeqlensQ", nq), maxTk = Offsets(cuK, cuKt, cuKs, "cuSeqlensK", nk);
        if (cuKs[0] != cuQs[0])
            throw new ArgumentException($"cu_seqlens_k has {cuKs[0]} entries but cu_seqlens_q has {cuQs[0]}; both are [B+1].",
                "cuSeqlensK");
        var p = MakeParams(cuQs[0] - 1, hq, hkv, maxTq, maxTk, e, ev, options, bthd: true);
        p.Varlen = 1;
        p.LRow = hq; p.LHead = 1; p.LBatch = 0;
        return new Plan(p, false, maxTq, nq);
    }

    /// <summary>Validates cu_seqlens (I64|I32 [B+1], 0 first, non-decreasing, last = rows) read in place; returns the
    /// longest sequence.</summary>
    private static int Offsets(ReadOnlySpan<byte> bytes, DType dt, ReadOnlySpan<int> shape, string name, int rows)
    {
        if (dt == DType.I64) return Offsets(MemoryMarshal.Cast<byte, long>(bytes), dt, shape, name, rows);
        if (dt == DType.I32) return Offsets(MemoryMarshal.Cast<byte, int>(bytes), dt, shape, name, rows);
        Check.DTypeIs(dt, name, "I64|I32", false);
        return 0;
    }

    private static int Offsets<T>(ReadOnlySpan<T> o, DType dt, ReadOnlySpan<int> shape, string name, int rows) where T : unmanaged
    {
        static long At(ReadOnlySpan<T> o, int i) => PoolKernels.Kernels.Elements.ToInt64(o[i]);
        Check.DTypeIs(dt, name, "I64|I32", dt.IsIndex());
        if (shape.Length != 1 || shape[0] < 1)
            throw new ArgumentException($"{Check.D(name)} must be [B+1] with B >= 0, got {Shape.Format(shape)}.", name);
        if (At(o, 0) != 0) throw new ArgumentException($"{Check.D(name)}[0] must be 0, got {At(o, 0)}.", name);
        long longest = 0;
        for (int i = 1; i < shape[0]; i++)
        {
            if (At(o, i) < At(o, i - 1))
                throw new ArgumentException($"{Check.D(name)} must be non-decreasing: [{i - 1}] = {At(o, i - 1)} > [{i}] = {At(o, i)}.",
                name);
            longest = Math.Max(longest, At(o, i) - At(o, i - 1));
        }
        if (At(o, shape[0] - 1) != rows)
            throw new ArgumentException($"{Check.D(name)}'s last entry must be the row count {rows}, got {At(o, shape[0] - 1)}.", name);
        return (int)longest;
    }

    // ---------------------------------------------------------------- dispatch

    /// <summary>A validated sdpa / sdpa_varlen call: q, k, v of one float dtype; the optional attn_mask (bool or additive),
    /// key_padding_mask and, for varlen, cu_seqlens_q/k of one index type.</summary>
    private ref struct Call(SdpaParams p, DType qt, In q, In k, In v, In mask, DType maskT, In keyPadding, DType keyPaddingT,
        In cuQ, In cuK, DType cuT, Out output, Out lse, float[] mods) : IPlan, ITypedRunner
    {
        private readonly In _q = q, _k = k, _v = v, _mask = mask, _kpm = keyPadding, _cuQ = cuQ, _cuK = cuK;
        private readonly float[] _mods = mods; // alibi slopes, then sinks (SdpaOptions.Mods)
        private readonly Out _out = output, _lse = lse;
        private readonly SdpaParams _p = p;
        private CpuDevice? _simd;

        public void Reference() { _simd = null; Types(); }

        public void Simd(CpuDevice cpu) { _simd = cpu; Types(); }

        private void Types()
        {
            if (_p.Varlen != 0 || _p.Paged != 0) TypeDispatch.Run(ref this, qt, cuT, cuT); // paged: seq_lens, block_table
            else TypeDispatch.Run(ref this, qt, maskT, keyPaddingT);
        }

        public readonly void Run<T1, T2, T3>() where T1 : unmanaged where T2 : unmanaged where T3 : unmanaged
        {
            if (_p.Varlen != 0 || _p.Paged != 0) Cpu<T1, byte, byte, T2>(_cuQ.As<T2>(), _cuK.As<T2>()); // T2 = T3 = the offsets' type
            else Cpu<T1, T2, T3, long>(default, default);
        }

        private readonly void Cpu<T, TBias, TMask, TIdx>(ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK)
            where T : unmanaged where TBias : unmanaged where TMask : unmanaged where TIdx : unmanaged
        {
            ReadOnlySpan<T> q = _q.As<T>(), k = _k.As<T>(), v = _v.As<T>();
            Span<float> o = _out.As<float>(), l = _lse.As<float>();
            if (_simd is { } cpu) SdpaSimd.Run(q, k, v, _mask.As<TBias>(), _kpm.As<TMask>(), cuQ, cuK, _mods, o, l, _p, cpu.Pool);
            else SdpaReference.Run(q, k, v, _mask.As<TBias>(), _kpm.As<TMask>(), cuQ, cuK, _mods, o, l, _p);
        }

        public readonly void Ilgpu(IlgpuScope s)
        {
            var o = s.Out<float>(_out);
            var l = s.Out<float>(_lse);
            Launcher(qt, maskT, keyPaddingT, cuT)(s.Accelerator, s.Stream, s.In<byte>(_q), s.In<byte>(_k), s.In<byte>(_v),
                s.In<byte>(_mask),
                s.In<byte>(_kpm), s.In<byte>(_cuQ), s.In<byte>(_cuK), s.Constant(_mods), o, l, _p);
            s.Download(o, _out);
            s.Download(l, _lse);
        }
    }

    /// <summary>Runs a validated sdpa_paged call: seq_lens and block_table travel where sdpa_varlen's cu_seqlens do (one
    /// index type per kernel: mixed I32/I64 tables and lengths are widened to I64 on the host).</summary>
    private static void RunPaged(Device device, Plan plan, DType qt, In q, In kCache, In vCache, ReadOnlySpan<byte> table, DType tableT,
        ReadOnlySpan<byte> lens, DType lensT, In tableIn, In lensIn, Out output, Out lse, float[] mods)
    {
        if (tableT == lensT)
        {
            var call = new Call(plan.P, qt, q, kCache, vCache, default, DType.U8, default, DType.U8, lensIn, tableIn, tableT, output, lse,
                mods);
            Dispatch.Run(device, ref call);
            return;
        }
        long[] wl = Widen(lens, lensT), wt = Widen(table, tableT);
        var wide = new Call(plan.P, qt, q, kCache, vCache, default, DType.U8, default, DType.U8, In.Of<long>(wl), In.Of<long>(wt),
            DType.I64, output,
            lse, mods);
        Dispatch.Run(device, ref wide);

        static long[] Widen(ReadOnlySpan<byte> b, DType t) => t == DType.I64 ? MemoryMarshal.Cast<byte, long>(b).ToArray()
            : Array.ConvertAll(MemoryMarshal.Cast<byte, int>(b).ToArray(), x => (long)x);
    }

    // The ILGPU launcher closed over the dtypes' storage and reader types (cached static method groups; the kernel caches
    // its compiled form per accelerator). attn_mask: BOOL/U8 select keys, a float dtype is added to the score.
    private static SdpaLaunch Launcher(DType q, DType bias, DType mask, DType index) => q switch
    {
        DType.F32 => Launcher<float, F32Reader>(bias, mask, index),
        DType.F16 => Launcher<ushort, F16Reader>(bias, mask, index),
        _ => Launcher<ushort, Bf16Reader>(bias, mask, index),
    };

    private static SdpaLaunch Launcher<TRaw, TElem>(DType bias, DType mask, DType index)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw> => bias switch
        {
            DType.F32 => Launcher<TRaw, TElem, float, F32Reader>(mask, index),
            DType.F16 => Launcher<TRaw, TElem, ushort, F16Reader>(mask, index),
            DType.BF16 => Launcher<TRaw, TElem, ushort, Bf16Reader>(mask, index),
            _ => Launcher<TRaw, TElem, byte, BoolBias>(mask, index),
        };

    private static SdpaLaunch Launcher<TRaw, TElem, TBRaw, TBias>(DType mask, DType index)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw> where TBRaw : unmanaged where TBias : struct,
            IElementReader<TBRaw> => mask switch
            {
                DType.I64 => Launcher<TRaw, TElem, TBRaw, TBias, long, I64Mask>(index),
                DType.I32 => Launcher<TRaw, TElem, TBRaw, TBias, int, I32Mask>(index),
                _ => Launcher<TRaw, TElem, TBRaw, TBias, byte, U8Mask>(index),
            };

    private static SdpaLaunch Launcher<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp>(DType index)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw> where TBRaw : unmanaged where TBias : struct,
            IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask> =>
        index == DType.I32 ? SdpaIlgpu.Launch<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, int, I32Index>
            : SdpaIlgpu.Launch<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, long, I64Index>;
}
