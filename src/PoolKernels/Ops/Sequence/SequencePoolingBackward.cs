using PoolKernels.Kernels;
using PoolKernels.Kernels.Sequence;

namespace PoolKernels;

public static partial class SequencePooling
{
    /// <summary>
    /// <c>sequence_pool_backward</c> on host tensors: the gradient of <c>sequence_pool</c> (same inputs and options) for
    /// dOut = dL/d out [B, dims] F32. Returns d_hidden [B,T,D] F32 and, exactly when <see cref="SequencePoolOptions.PGroups"/>
    /// is given, d_p_groups [G] F32 (else null). See the DeviceTensor overload for the rules.
    /// </summary>
    /// <exception cref="ArgumentException">As <c>sequence_pool</c>, or dOut is not [B, dims] F32.</exception>
    public static (HostTensor DHidden, HostTensor? DPGroups) SequencePoolBackward(this Device device, HostTensor hidden,
        HostTensor attentionMask, HostTensor dOut, SequencePoolOptions options, HostTensor? prefixLen = null)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(options);
        Check.Rank(hidden.Shape, 3, nameof(hidden), "[B,T,D]");
        options.Validate(hidden.Shape[2]);
        CheckHostPrefix(prefixLen);
        using var scope = new HostScope(device);
        var dh = scope.Output(DType.F32, hidden.ShapeArray);
        var dp = options.PGroupsArray.Length == 0 ? null : scope.Output(DType.F32, options.PGroupsArray.Length);
        device.SequencePoolBackward(scope.Bind(hidden), scope.Bind(attentionMask), scope.Bind(dOut), dh, options,
            scope.BindOptional(prefixLen), dp);
        return (scope.Result(dh), dp is null ? null : scope.Result(dp));
    }

    /// <summary>
    /// <c>sequence_pool_backward</c> on device-resident tensors: hidden [B,T,D] F32|F16|BF16, attentionMask [B,T]
    /// I64|I32|U8|BOOL, dOut [B,dims] F32, prefixLen null or [B] I64|I32 (as <c>sequence_pool</c>); writes dHidden [B,T,D]
    /// F32 and dPGroups [G] F32, which must be given exactly when <see cref="SequencePoolOptions.PGroups"/> is.
    /// <para>The gradient of out = normalize?(concat_modes(...)[:dims]): the normalization's gradient
    /// (g = dOut/n − y·(y·dOut)/n³ with n = ‖y‖ > 1e-12, else dOut/1e-12, as F.normalize's clamp_min), features past dims
    /// get 0, and each mode routes g back over V_b: cls / last_token to the first / last kept position, max to the first maximal one (a
    /// NaN counts as maximal), mean g/|V|, mean_sqrt_len g/√|V|, weighted_mean g·(t+1)/Σ(t+1), gem g·(c/y)^(p−1)/|V| with
    /// c = max(x, eps) where x >= eps (0 where clamped). d_p_groups[k] = Σ_b Σ_{d in group k} g·dy/dp with
    /// dy/dp = y·(−ln A/p² + Σc^p·ln c/(p·Σc^p)), A = Σc^p/|V|. Positions outside V_b, and every position of an empty V_b, get 0.
    /// The result is deterministic (the same bits on every run and thread count). prefixLen values are not read on the host
    /// (an entry &lt;= 0 counts as 0, one past the kept tokens gives an empty set).</para>
    /// </summary>
    public static void SequencePoolBackward(this Device device, DeviceTensor hidden, DeviceTensor attentionMask, DeviceTensor dOut,
        DeviceTensor dHidden, SequencePoolOptions options, DeviceTensor? prefixLen = null, DeviceTensor? dPGroups = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(attentionMask);
        ArgumentNullException.ThrowIfNull(dOut);
        ArgumentNullException.ThrowIfNull(dHidden);
        ArgumentNullException.ThrowIfNull(options);
        Check.SameDevice(device, nameof(hidden), hidden);
        Check.SameDevice(device, nameof(attentionMask), attentionMask);
        Check.SameDevice(device, nameof(dOut), dOut);
        Check.SameDevice(device, nameof(dHidden), dHidden);
        Check.SameDevice(device, nameof(prefixLen), prefixLen);
        Check.SameDevice(device, nameof(dPGroups), dPGroups);
        Check.Rank(hidden.Shape, 3, nameof(hidden), "[B,T,D]");
        Check.DTypeIs(hidden.DType, nameof(hidden), "F32|F16|BF16", hidden.DType.IsFloatInput());
        Check.DTypeIs(attentionMask.DType, nameof(attentionMask), "I64|I32|U8|BOOL", attentionMask.DType.IsMask());
        Check.DTypeIs(dOut.DType, nameof(dOut), "F32", dOut.DType == DType.F32);
        Check.DTypeIs(dHidden.DType, nameof(dHidden), "F32", dHidden.DType == DType.F32);
        int b = hidden.Shape[0], t = hidden.Shape[1], d = hidden.Shape[2];
        if (prefixLen is not null)
        {
            Check.DTypeIs(prefixLen.DType, nameof(prefixLen), "I64|I32", prefixLen.DType.IsIndex());
            Check.ShapeIs(prefixLen.Shape, [b], nameof(prefixLen), "[B]");
        }
        CheckMaskShape(attentionMask.Shape, b, t, hidden.Shape);
        int dims = options.Validate(d);
        Check.ShapeIs(dOut.Shape, [b, dims], nameof(dOut), "[B,dims]");
        Validate(b, t, d, hidden.Count, attentionMask.Count, prefixLen is null ? 0 : b, default, (long)b * dims, options);
        Check.ShapeIs(dHidden.Shape, hidden.Shape, nameof(dHidden), "[B,T,D]");
        var pg = options.PGroupsArray;
        PoolBackward.CheckDPGroups(dPGroups, pg.Length, nameof(dPGroups));
        int modes = 0;
        for (int i = 0; i < options.Modes.Count; i++) modes |= (int)options.Modes[i] << (4 * i);
        var q = new PoolBackwardParams
        {
            Batch = b,
            Len = t,
            Dim = d,
            Dims = dims,
            ModeCount = options.Modes.Count,
            Modes = modes,
            P = options.P,
            Eps = options.Eps,
            GroupSize = pg.Length == 0 ? 0 : d / pg.Length,
            Groups = pg.Length,
            MaskSize = attentionMask.DType.Size(),
            PrefixSize = prefixLen is null ? 0 : prefixLen.DType.Size(),
            Normalize = options.Normalize ? 1 : 0,
            StrideB = (long)t * d,
            StrideT = d,
            StrideD = 1,
        };
        var plan = new PoolBackward.Plan(In.Of(hidden), hidden.DType, In.Of(attentionMask), In.Of(prefixLen), In.Of(dOut),
            Out.Of(dHidden), Out.Of(dPGroups), pg, q);
        Dispatch.Run(device, ref plan);
    }
}

/// <summary>The plan and checks shared by <c>sequence_pool_backward</c> and <c>spatial_pool_backward</c> (one kernel set:
/// spatial is the same math over H·W cells with its layout's strides).</summary>
internal static class PoolBackward
{
    /// <summary>dPGroups must be [G] F32 when p_groups is given (G > 0) and absent otherwise.</summary>
    public static void CheckDPGroups(DeviceTensor? dPGroups, int groups, string name)
    {
        if (groups == 0)
        {
            if (dPGroups is not null)
                throw new ArgumentException("d_p_groups exists only when p_groups is given (options.PGroups is empty).", name);
            return;
        }
        if (dPGroups is null) throw new ArgumentException($"d_p_groups [G] = [{groups}] must be given when p_groups is.", name);
        Check.DTypeIs(dPGroups.DType, name, "F32", dPGroups.DType == DType.F32);
        Check.ShapeIs(dPGroups.Shape, [groups], name, "[G]");
    }

    /// <summary>A validated backward call: x (F32|F16|BF16) with its strides in <paramref name="q"/>, mask and prefix as raw
    /// bytes (absent = none), dOut [B, Dims], dx of x's layout, dPGroups [G] when <paramref name="pGroups"/> is not empty.</summary>
    internal ref struct Plan(In x, DType xType, In mask, In prefix, In dOut, Out dx, Out dPGroups, float[] pGroups,
        PoolBackwardParams q) : IPlan, ITypedRunner
    {
        private readonly In _x = x, _mask = mask, _prefix = prefix, _dOut = dOut;
        private readonly Out _dx = dx, _dp = dPGroups;
        private CpuDevice? _simd;

        public void Reference() { _simd = null; TypeDispatch.Run(ref this, xType, DType.F32, DType.F32); }

        public void Simd(CpuDevice cpu) { _simd = cpu; TypeDispatch.Run(ref this, xType, DType.F32, DType.F32); }

        public readonly void Run<T, T2, T3>() where T : unmanaged where T2 : unmanaged where T3 : unmanaged
        {
            if (_simd is { } cpu)
                SequencePoolBackwardSimd.Run(_x.As<T>(), _mask.Host, _prefix.Host, _dOut.As<float>(), pGroups, _dx.As<float>(),
                    _dp.As<float>(), q, cpu.Pool);
            else
                SequencePoolBackwardReference.Run(_x.As<T>(), _mask.Host, _prefix.Host, _dOut.As<float>(), pGroups, _dx.As<float>(),
                    _dp.As<float>(), q);
        }

        public readonly void Ilgpu(IlgpuScope s)
        {
            var dx = s.Out<float>(_dx);
            var dp = pGroups.Length == 0 ? s.Dummy.Cast<float>() : s.Out<float>(_dp);
            long rows = (long)q.Batch * q.Dims;
            var y = q.Normalize != 0 ? s.Temp<float>(rows) : s.Dummy.Cast<float>();
            var g = q.Normalize != 0 ? s.Temp<float>(rows) : s.Dummy.Cast<float>();
            var gp = pGroups.Length != 0 ? s.Temp<float>((long)q.Batch * q.Dim) : s.Dummy.Cast<float>();
            Launcher(xType)(s.Accelerator, s.Stream, s.In<byte>(_x), s.In<byte>(_mask), s.In<byte>(_prefix), s.Constant(pGroups),
                s.In<float>(_dOut), dx, dp, y, g, gp, q);
            s.Download(dx, _dx);
            if (pGroups.Length != 0) s.Download(dp, _dp);
        }
    }

    private static PoolBackwardLaunch Launcher(DType x) => x switch
    {
        DType.F32 => SequencePoolBackwardIlgpu.Launch<float, F32Reader>,
        DType.F16 => SequencePoolBackwardIlgpu.Launch<ushort, F16Reader>,
        _ => SequencePoolBackwardIlgpu.Launch<ushort, Bf16Reader>,
    };
}
