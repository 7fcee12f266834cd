using PoolKernels.Kernels.Spatial;
using static PoolKernels.SpatialArgs;

namespace PoolKernels;

public static partial class SpatialPooling
{
    /// <summary>
    /// <c>spatial_pool_backward</c> on host tensors: the gradient of <c>spatial_pool</c> (same x, options and valid) for
    /// dOut = dL/d out [B,C] F32. Returns d_x (x's shape and layout, F32) and, exactly when
    /// <see cref="SpatialPoolOptions.PGroups"/> is given, d_p_groups [G] F32 (else null). See the DeviceTensor overload.
    /// </summary>
    /// <exception cref="ArgumentException">As <c>spatial_pool</c>, or dOut is not [B,C] F32.</exception>
    public static (HostTensor DX, HostTensor? DPGroups) SpatialPoolBackward(this Device device, HostTensor x, HostTensor dOut,
        SpatialPoolOptions? options = null, HostTensor? valid = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        options ??= new();
        using var scope = new HostScope(device);
        var dx = scope.Output(DType.F32, x.ShapeArray);
        var dp = options.PGroupsArray.Length == 0 ? null : scope.Output(DType.F32, options.PGroupsArray.Length);
        device.SpatialPoolBackward(scope.Bind(x), scope.Bind(dOut), dx, options, scope.BindOptional(valid), dp);
        return (scope.Result(dx), dp is null ? null : scope.Result(dp));
    }

    /// <summary>
    /// <c>spatial_pool_backward</c> on device tensors: x [B,C,H,W] (or [B,H,W,C] with <see cref="SpatialPoolOptions.Nhwc"/>)
    /// F32, dOut [B,C] F32, valid null or [B,H,W] I64|I32|U8|BOOL; writes dX (x's shape, F32) and dPGroups [G] F32, which
    /// must be given exactly when <see cref="SpatialPoolOptions.PGroups"/> is.
    /// <para>Over the valid cells V of each (b,c), with g = dL/dy (through the normalization when asked, as
    /// <c>sequence_pool_backward</c>): avg gives g/|V| to every valid cell; max gives g to the first maximal cell in
    /// row-major (h, w) order (a NaN counts as maximal); gem gives g·(c/y)^(p−1)/|V| with c = max(x, eps) where x >= eps,
    /// and d_p_groups[k] = Σ_b Σ_{c in group k} g·dy/dp (0 for avg and max). Invalid cells, and every cell of an empty V,
    /// get 0. Deterministic: the same bits on every run and thread count.</para>
    /// </summary>
    public static void SpatialPoolBackward(this Device device, DeviceTensor x, DeviceTensor dOut, DeviceTensor dX,
        SpatialPoolOptions options, DeviceTensor? valid = null, DeviceTensor? dPGroups = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(dOut);
        ArgumentNullException.ThrowIfNull(dX);
        ArgumentNullException.ThrowIfNull(options);
        Devices(device, "x", x, nameof(dOut), dOut, nameof(dX), dX, "valid", valid);
        Check.SameDevice(device, nameof(dPGroups), dPGroups);
        F32(x, "x");
        Check.Rank(x.Shape, 4, "x", options.Nhwc ? "[B,H,W,C]" : "[B,C,H,W]");
        int b = x.Shape[0], c, h, w;
        if (options.Nhwc) { h = x.Shape[1]; w = x.Shape[2]; c = x.Shape[3]; }
        else { c = x.Shape[1]; h = x.Shape[2]; w = x.Shape[3]; }
        if (valid is not null) { MaskDType(valid, "valid"); Shaped(valid, "valid", "[B,H,W]", b, h, w); }
        ValidateSpatial(options, c, options.Nhwc ? "x [B,H,W,C]" : "x [B,C,H,W]");
        Check.DTypeIs(dOut.DType, nameof(dOut), "F32", dOut.DType == DType.F32);
        Check.ShapeIs(dOut.Shape, [b, c], nameof(dOut), "[B,C]");
        Check.DTypeIs(dX.DType, nameof(dX), "F32", dX.DType == DType.F32);
        Check.ShapeIs(dX.Shape, x.Shape, nameof(dX), options.Nhwc ? "[B,H,W,C]" : "[B,C,H,W]");
        var pg = options.PGroupsArray;
        PoolBackward.CheckDPGroups(dPGroups, pg.Length, nameof(dPGroups));
        var q = SpatialPoolBackwardParams.Of(b, c, h, w, options.Nhwc, options.Mode, options.P, options.Eps, options.Normalize, pg.Length,
            valid is null ? 0 : valid.DType.Size());
        var plan = new PoolBackward.Plan(In.Of(x), DType.F32, In.Of(valid), default, In.Of(dOut), Out.Of(dX), Out.Of(dPGroups), pg, q);
        Dispatch.Run(device, ref plan);
    }
}
