using System.Runtime.InteropServices;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Attention;

namespace PoolKernels;

/// <summary>
/// <c>sdpa_backward</c> and <c>sdpa_varlen_backward</c> (docs/operations.md "Gradients and training"): the gradients d_q,
/// d_k, d_v (F32, shaped as q, k, v) of the float32 forward <c>sdpa</c> / <c>sdpa_varlen</c> for a given d_out (F32, shaped
/// as out). Every mask, causal, window, GQA and layout form of the forward is taken; the score modifiers (softcap,
/// alibi_slopes, sinks) are not (rejected). An additive attn_mask gets no gradient. With s_ij = scale·q_i·k_j + bias_ij over
/// the allowed keys, P_ij = e^{s_ij - lse_i}, dP_ij = dO_i·v_j, D_i = Σ_j P_ij·dP_ij (= rowsum(dO_i ∘ out_i)) and
/// dS_ij = P_ij·(dP_ij - D_i): dQ_i = scale·Σ_j dS_ij·k_j, dK_j = scale·Σ_i dS_ij·q_i, dV_j = Σ_i P_ij·dO_i, the sums over
/// i running over the query heads that share k_j's head (GQA). A query row with no allowed key gives d_q = 0 and adds
/// nothing to d_k or d_v; a key no query sees gets 0.
/// <para>Memory O(T), FlashAttention-2 style: lse is recomputed inside the op (it is not an input) and kept with D
/// (2·B·Hq·Tq floats); P is recomputed, no Tq×Tk matrix exists. Deterministic: every output row is written by one
/// thread in a fixed order (query heads of a group in order, then rows ascending), so the bits do not depend on the run
/// or the thread count; the float backends differ from the reference (double) in the last bits.</para>
/// </summary>
public static partial class Attention
{
    // ---------------------------------------------------------------- sdpa_backward

    /// <summary><c>sdpa_backward</c> on host tensors: the inputs and options of <see cref="Sdpa(Device, HostTensor, HostTensor,
    /// HostTensor, HostTensor?, HostTensor?, SdpaOptions?)"/> plus <paramref name="dOut"/> (F32, out's shape); returns d_q,
    /// d_k, d_v (F32, the shapes of q, k, v).</summary>
    /// <exception cref="ArgumentException">A shape, dtype or option is invalid, or a score modifier is given (ParamName: q, k,
    /// v, dOut, attn_mask, key_padding_mask, causal, scale, window_left, window_right, layout, options).</exception>
    public static (HostTensor DQ, HostTensor DK, HostTensor DV) SdpaBackward(this Device device, HostTensor q, HostTensor k, HostTensor v,
        HostTensor dOut, HostTensor? attnMask = null, HostTensor? keyPaddingMask = null, SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(dOut);
        options ??= SdpaOptions.Default;
        var plan = PlanSdpa(q.Shape, q.DType, k.Shape, k.DType, v.Shape, v.DType, attnMask?.ShapeArray, attnMask?.DType,
            keyPaddingMask?.ShapeArray, keyPaddingMask?.DType, options);
        CheckBackward(plan, dOut.Shape, dOut.DType);
        using var scope = new HostScope(device);
        var dq = scope.Output(DType.F32, q.ShapeArray);
        var dk = scope.Output(DType.F32, k.ShapeArray);
        var dv = scope.Output(DType.F32, v.ShapeArray);
        device.SdpaBackward(scope.Bind(q), scope.Bind(k), scope.Bind(v), scope.Bind(dOut), dq, dk, dv, scope.BindOptional(attnMask),
            scope.BindOptional(keyPaddingMask), options);
        return (scope.Result(dq), scope.Result(dk), scope.Result(dv));
    }

    /// <summary><c>sdpa_backward</c> on device-resident tensors: dQ, dK, dV (F32, the shapes of q, k, v, on
    /// <paramref name="device"/>) are overwritten. On simd a steady-state call allocates nothing.</summary>
    public static void SdpaBackward(this Device device, DeviceTensor q, DeviceTensor k, DeviceTensor v, DeviceTensor dOut, DeviceTensor dQ,
        DeviceTensor dK, DeviceTensor dV, DeviceTensor? attnMask = null, DeviceTensor? keyPaddingMask = null, SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(dOut); ArgumentNullException.ThrowIfNull(dQ); ArgumentNullException.ThrowIfNull(dK);
        ArgumentNullException.ThrowIfNull(dV);
        options ??= SdpaOptions.Default;
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[("q", q), ("k", k), ("v", v), (nameof(dOut), dOut),
            (nameof(dQ), dQ), (nameof(dK), dK), (nameof(dV), dV), ("attn_mask", attnMask), ("key_padding_mask", keyPaddingMask)])
            Check.SameDevice(device, name, t);
        var plan = PlanSdpa(q.Shape, q.DType, k.Shape, k.DType, v.Shape, v.DType, attnMask?.ShapeArray, attnMask?.DType,
            keyPaddingMask?.ShapeArray, keyPaddingMask?.DType, options);
        CheckBackward(plan, dOut.Shape, dOut.DType);
        CheckGradients(q, k, v, dQ, dK, dV);
        var call = new BackwardCall(plan.P, q.DType, In.Of(q), In.Of(k), In.Of(v), In.Of(attnMask), attnMask?.DType ?? DType.U8,
            In.Of(keyPaddingMask), keyPaddingMask?.DType ?? DType.U8, default, default, DType.I64, In.Of(dOut), Out.Of(dQ), Out.Of(dK),
                Out.Of(dV));
        Dispatch.Run(device, ref call);
    }

    // ---------------------------------------------------------------- sdpa_varlen_backward

    /// <summary><c>sdpa_varlen_backward</c> on host tensors: the inputs and options of <c>sdpa_varlen</c> plus
    /// <paramref name="dOut"/> [Nq,Hq,Ev] F32; returns d_q [Nq,Hq,E], d_k [Nk,Hkv,E], d_v [Nk,Hkv,Ev] (F32).</summary>
    /// <exception cref="ArgumentException">A shape, dtype, offset or option is invalid, or a score modifier is given.</exception>
    public static (HostTensor DQ, HostTensor DK, HostTensor DV) SdpaVarlenBackward(this Device device, HostTensor q, HostTensor k,
        HostTensor v,
        HostTensor cuSeqlensQ, HostTensor cuSeqlensK, HostTensor dOut, SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(cuSeqlensQ); ArgumentNullException.ThrowIfNull(cuSeqlensK);
        ArgumentNullException.ThrowIfNull(dOut);
        options ??= SdpaOptions.Default;
        var plan = PlanVarlen(q.Shape, q.DType, k.Shape, k.DType, v.Shape, v.DType, cuSeqlensQ, cuSeqlensK, options);
        CheckBackward(plan, dOut.Shape, dOut.DType);
        using var scope = new HostScope(device);
        var dq = scope.Output(DType.F32, q.ShapeArray);
        var dk = scope.Output(DType.F32, k.ShapeArray);
        var dv = scope.Output(DType.F32, v.ShapeArray);
        device.SdpaVarlenBackward(scope.Bind(q), scope.Bind(k), scope.Bind(v), scope.Bind(cuSeqlensQ), scope.Bind(cuSeqlensK),
            scope.Bind(dOut), dq, dk, dv, options);
        return (scope.Result(dq), scope.Result(dk), scope.Result(dv));
    }

    /// <summary><c>sdpa_varlen_backward</c> on device-resident tensors (cu_seqlens are read on the host to be validated, as
    /// the forward); dQ, dK, dV (F32, the shapes of q, k, v) are overwritten.</summary>
    public static void SdpaVarlenBackward(this Device device, DeviceTensor q, DeviceTensor k, DeviceTensor v, DeviceTensor cuSeqlensQ,
        DeviceTensor cuSeqlensK, DeviceTensor dOut, DeviceTensor dQ, DeviceTensor dK, DeviceTensor dV, SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(k); ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(cuSeqlensQ); ArgumentNullException.ThrowIfNull(cuSeqlensK);
        ArgumentNullException.ThrowIfNull(dOut); ArgumentNullException.ThrowIfNull(dQ); ArgumentNullException.ThrowIfNull(dK);
        ArgumentNullException.ThrowIfNull(dV);
        options ??= SdpaOptions.Default;
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[("q", q), ("k", k), ("v", v), ("cu_seqlens_q", cuSeqlensQ),
            ("cu_seqlens_k", cuSeqlensK), (nameof(dOut), dOut), (nameof(dQ), dQ), (nameof(dK), dK), (nameof(dV), dV)])
            Check.SameDevice(device, name, t);
        var cuQ = RaggedPooling.HostBytes(cuSeqlensQ, out _);
        var cuK = RaggedPooling.HostBytes(cuSeqlensK, out _);
        var plan = PlanVarlen(q.Shape, q.DType, k.Shape, k.DType, v.Shape, v.DType, cuQ, cuSeqlensQ.DType, cuSeqlensQ.Shape,
            cuK, cuSeqlensK.DType, cuSeqlensK.Shape, options);
        CheckBackward(plan, dOut.Shape, dOut.DType);
        CheckGradients(q, k, v, dQ, dK, dV);
        if (cuSeqlensQ.DType == cuSeqlensK.DType)
        {
            var call = new BackwardCall(plan.P, q.DType, In.Of(q), In.Of(k), In.Of(v), default, DType.U8, default, DType.U8,
                In.Of(cuSeqlensQ), In.Of(cuSeqlensK), cuSeqlensQ.DType, In.Of(dOut), Out.Of(dQ), Out.Of(dK), Out.Of(dV));
            Dispatch.Run(device, ref call);
            return;
        }
        // mixed I32/I64 offsets: both widened to I64 (B+1 values each)
        long[] wq = WidenOffsets(cuQ, cuSeqlensQ.DType), wk = WidenOffsets(cuK, cuSeqlensK.DType);
        var wide = new BackwardCall(plan.P, q.DType, In.Of(q), In.Of(k), In.Of(v), default, DType.U8, default, DType.U8, In.Of<long>(wq),
            In.Of<long>(wk), DType.I64, In.Of(dOut), Out.Of(dQ), Out.Of(dK), Out.Of(dV));
        Dispatch.Run(device, ref wide);
    }

    private static long[] WidenOffsets(ReadOnlySpan<byte> b, DType t) => t == DType.I64 ? MemoryMarshal.Cast<byte, long>(b).ToArray()
        : Array.ConvertAll(MemoryMarshal.Cast<byte, int>(b).ToArray(), x => (long)x);

    // ---------------------------------------------------------------- validation

    /// <summary>Rejects the score modifiers and checks d_out (F32, out's shape), without allocating.</summary>
    private static void CheckBackward(Plan plan, ReadOnlySpan<int> dOutShape, DType dOutType)
    {
        var p = plan.P;
        if (p.ModifiesScores || p.HasSinks != 0)
            throw new ArgumentException(
                "sdpa_backward does not differentiate the score modifiers (softcap, alibi_slopes, sinks): leave them unset.",
                "options");
        Check.DTypeIs(dOutType, "dOut", "F32", dOutType == DType.F32);
        ReadOnlySpan<int> outShape = p.Varlen != 0 ? [plan.Rows, p.Hq, p.Ev] : plan.Bhtd ? [p.Batch, p.Hq, p.Tq, p.Ev] : [p.Batch,
            p.Tq, p.Hq, p.Ev];
        if (!dOutShape.SequenceEqual(outShape))
            throw new ArgumentException($"dOut must have out's shape {Shape.Format(outShape)}, got {Shape.Format(dOutShape)}.", "dOut");
    }

    private static void CheckGradients(DeviceTensor q, DeviceTensor k, DeviceTensor v, DeviceTensor dQ, DeviceTensor dK, DeviceTensor dV)
    {
        foreach (var (name, g, x) in (ReadOnlySpan<(string, DeviceTensor, DeviceTensor)>)[(nameof(dQ), dQ, q), (nameof(dK), dK, k),
            (nameof(dV), dV, v)])
        {
            Check.DTypeIs(g.DType, name, "F32", g.DType == DType.F32);
            if (!g.Shape.SequenceEqual(x.Shape))
                throw new ArgumentException($"{name} must have its input's shape {Shape.Format(x.Shape)}, got {Shape.Format(g.Shape)}.",
                    name);
        }
    }

    // ---------------------------------------------------------------- dispatch

    /// <summary>A validated sdpa_backward / sdpa_varlen_backward call (the forward's <see cref="Call"/> plus d_out and the three
    /// gradients).</summary>
    private ref struct BackwardCall(SdpaParams p, DType qt, In q, In k, In v, In mask, DType maskT, In keyPadding, DType keyPaddingT,
        In cuQ, In cuK, DType cuT, In dOut, Out dq, Out dk, Out dv) : IPlan, ITypedRunner
    {
        private readonly In _q = q, _k = k, _v = v, _mask = mask, _kpm = keyPadding, _cuQ = cuQ, _cuK = cuK, _dOut = dOut;
        private readonly Out _dq = dq, _dk = dk, _dv = dv;
        private readonly SdpaParams _p = p;
        private CpuDevice? _simd;

        public void Reference() { _simd = null; Types(); }

        public void Simd(CpuDevice cpu) { _simd = cpu; Types(); }

        private void Types()
        {
            if (_p.Varlen != 0) TypeDispatch.Run(ref this, qt, cuT, cuT);
            else TypeDispatch.Run(ref this, qt, maskT, keyPaddingT);
        }

        public readonly void Run<T1, T2, T3>() where T1 : unmanaged where T2 : unmanaged where T3 : unmanaged
        {
            if (_p.Varlen != 0) Cpu<T1, byte, byte, T2>(_cuQ.As<T2>(), _cuK.As<T2>());
            else Cpu<T1, T2, T3, long>(default, default);
        }

        private readonly void Cpu<T, TBias, TMask, TIdx>(ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK)
            where T : unmanaged where TBias : unmanaged where TMask : unmanaged where TIdx : unmanaged
        {
            ReadOnlySpan<T> q = _q.As<T>(), k = _k.As<T>(), v = _v.As<T>();
            Span<float> dq = _dq.As<float>(), dk = _dk.As<float>(), dv = _dv.As<float>();
            if (_simd is { } cpu)
                SdpaBackwardSimd.Run(q, k, v, _mask.As<TBias>(), _kpm.As<TMask>(), cuQ, cuK, _dOut.As<float>(), dq, dk, dv, _p, cpu.Pool);
            else SdpaBackwardReference.Run(q, k, v, _mask.As<TBias>(), _kpm.As<TMask>(), cuQ, cuK, _dOut.As<float>(), dq, dk, dv, _p);
        }

        public readonly void Ilgpu(IlgpuScope s)
        {
            var dq = s.Out<float>(_dq);
            var dk = s.Out<float>(_dk);
            var dv = s.Out<float>(_dv);
            long stats = Math.Max(1L, (long)_p.Batch * _p.Hq * _p.Tq);
            BackwardLauncher(qt, maskT, keyPaddingT, cuT)(s.Accelerator, s.Stream, s.In<byte>(_q), s.In<byte>(_k), s.In<byte>(_v),
                s.In<byte>(_mask), s.In<byte>(_kpm), s.In<byte>(_cuQ), s.In<byte>(_cuK), s.In<float>(_dOut), dq, dk, dv,
                s.Temp<float>(stats), s.Temp<float>(stats), _p);
            s.Download(dq, _dq);
            s.Download(dk, _dk);
            s.Download(dv, _dv);
        }
    }

    // The backward's ILGPU launcher closed over the dtypes' storage and reader types, as the forward's Launcher.
    private static SdpaBackwardLaunch BackwardLauncher(DType q, DType bias, DType mask, DType index) => q switch
    {
        DType.F32 => BackwardLauncher<float, F32Reader>(bias, mask, index),
        DType.F16 => BackwardLauncher<ushort, F16Reader>(bias, mask, index),
        _ => BackwardLauncher<ushort, Bf16Reader>(bias, mask, index),
    };

    private static SdpaBackwardLaunch BackwardLauncher<TRaw, TElem>(DType bias, DType mask, DType index)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw> => bias switch
        {
            DType.F32 => BackwardLauncher<TRaw, TElem, float, F32Reader>(mask, index),
            DType.F16 => BackwardLauncher<TRaw, TElem, ushort, F16Reader>(mask, index),
            DType.BF16 => BackwardLauncher<TRaw, TElem, ushort, Bf16Reader>(mask, index),
            _ => BackwardLauncher<TRaw, TElem, byte, BoolBias>(mask, index),
        };

    private static SdpaBackwardLaunch BackwardLauncher<TRaw, TElem, TBRaw, TBias>(DType mask, DType index)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw> where TBRaw : unmanaged where TBias : struct,
            IElementReader<TBRaw> => mask switch
            {
                DType.I64 => BackwardLauncher<TRaw, TElem, TBRaw, TBias, long, I64Mask>(index),
                DType.I32 => BackwardLauncher<TRaw, TElem, TBRaw, TBias, int, I32Mask>(index),
                _ => BackwardLauncher<TRaw, TElem, TBRaw, TBias, byte, U8Mask>(index),
            };

    private static SdpaBackwardLaunch BackwardLauncher<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp>(DType index)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw> where TBRaw : unmanaged where TBias : struct,
            IElementReader<TBRaw>
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask> =>
        index == DType.I32 ? SdpaBackwardIlgpu.Launch<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, int, I32Index>
            : SdpaBackwardIlgpu.Launch<TRaw, TElem, TBRaw, TBias, TMask, TMaskOp, long, I64Index>;
}
