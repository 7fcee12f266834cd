using ILGPU;
using ILGPU.Runtime;
using PoolKernels.Kernels.Spatial;
using static PoolKernels.SpatialArgs;

namespace PoolKernels;

public static partial class SpatialPooling
{
    // ---------------------------------------------------------------- regional_gem

    /// <summary>
    /// <c>regional_gem</c> (SuperGlobal R-GeM): x [B,C,H,W] F32, p > 0 (2.5), kernel odd > 0 (5). With xc = max(x, 0)
    /// (NaN stays NaN), out = 0.5·((1/k²) Σ over the k×k window of the reflect-padded xc of xc^p)^(1/p) + 0.5·xc, [B,C,H,W].
    /// The reflect padding (k/2 per side) must be smaller than H and W, as F.pad requires; it is an index map in the
    /// kernels, never a padded copy.
    /// </summary>
    public static HostTensor RegionalGem(this Device device, HostTensor x, float p = 2.5f, int kernel = 5)
    {
        ArgumentNullException.ThrowIfNull(x);
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape.ToArray());
        device.RegionalGem(scope.Bind(x), o, p, kernel);
        return scope.Result(o);
    }

    /// <summary><c>regional_gem</c> on device tensors; output [B,C,H,W] F32.</summary>
    public static void RegionalGem(this Device device, DeviceTensor x, DeviceTensor output, float p = 2.5f, int kernel = 5)
    {
        Devices(device, "x", x, "output", output);
        F32(x, "x");
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        PositiveFinite(p, "p");
        int b = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
        if (kernel <= 0 || kernel % 2 == 0) throw new ArgumentException($"kernel must be odd and > 0, got {kernel}.", "kernel");
        int pad = kernel / 2;
        if (pad > 0 && (long)b * c * h * w > 0 && (pad >= h || pad >= w))
            throw new ArgumentException($"kernel {kernel} needs reflect padding {pad}, which must be smaller than H and W of x "
                + $"{Shape.Format(x.Shape)}.", "kernel");
        Output(output, b, c, h, w);
        var plan = new RegionalGemPlan(x, output, b, c, h, w, p, kernel);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct RegionalGemPlan(DeviceTensor x, DeviceTensor output, int b, int c, int h, int w, float p, int kernel) : IPlan
    {
        public void Reference() => RegionalGemReference.Run(F(x), FOut(output), b, c, h, w, p, kernel);

        public void Simd(CpuDevice cpu) => RegionalGemSimd.Run(F(x), FOut(output), b, c, h, w, p, kernel, cpu.Pool);

        public void Ilgpu(IlgpuScope s) =>
            RegionalGemIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(x), s.View<float>(output), checked((int)x.Count), h, w, p,
                kernel);
    }

    // ---------------------------------------------------------------- scale_gem

    /// <summary>
    /// <c>scale_gem</c> (SuperGlobal multi-scale GeM): x [S,B,D] F32 → [B,D]. p = +inf (the default): the elementwise
    /// max over s of normalize(x_s) (v / max(‖v‖₂, 1e-12)). Finite p > 0: γ = the minimum of every entry of x (all scales,
    /// rows and dims, as SuperGlobal's code), out = ((1/S) Σ_s (x_s − γ)^p)^(1/p) + γ. S = 0 gives 0. NaN propagates.
    /// </summary>
    public static HostTensor ScaleGem(this Device device, HostTensor x, float p = float.PositiveInfinity)
    {
        ArgumentNullException.ThrowIfNull(x);
        Check.Rank(x.Shape, 3, "x", "[S,B,D]");
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape[1], x.Shape[2]);
        device.ScaleGem(scope.Bind(x), o, p);
        return scope.Result(o);
    }

    /// <summary><c>scale_gem</c> on device tensors; output [B,D] F32.</summary>
    public static void ScaleGem(this Device device, DeviceTensor x, DeviceTensor output, float p = float.PositiveInfinity)
    {
        Devices(device, "x", x, "output", output);
        F32(x, "x");
        Check.Rank(x.Shape, 3, "x", "[S,B,D]");
        if (!(p > 0)) throw new ArgumentException($"p must be > 0 (or inf), got {p}.", "p");
        int s = x.Shape[0], b = x.Shape[1], d = x.Shape[2];
        Output(output, b, d);
        var plan = new ScaleGemPlan(x, output, s, b, d, p);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct ScaleGemPlan(DeviceTensor x, DeviceTensor output, int scales, int b, int d, float p) : IPlan
    {
        public void Reference() => ScaleGemReference.Run(F(x), FOut(output), scales, b, d, p);

        public void Simd(CpuDevice cpu) => ScaleGemSimd.Run(F(x), FOut(output), scales, b, d, p, cpu.Pool);

        public void Ilgpu(IlgpuScope s)
        {
            // S = 0 gives 0: the output may be a reused buffer, so clear it
            if (scales == 0) s.View<float>(output).MemSetToZero(s.Stream);
            else ScaleGemIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(x), s.View<float>(output), scales, b, d, p, s.Temp<float>);
        }
    }

    // ---------------------------------------------------------------- mask_pool

    /// <summary>Parses binary_logits | soft | gated | sigmoid_normalized.</summary>
    public static MaskType ParseMaskType(string name) => name switch
    {
        "binary_logits" => MaskType.BinaryLogits,
        "soft" => MaskType.Soft,
        "gated" => MaskType.Gated,
        "sigmoid_normalized" => MaskType.SigmoidNormalized,
        _ => throw new ArgumentException($"Unknown mask_type '{name}'; expected binary_logits, soft, gated or sigmoid_normalized.",
            nameof(name)),
    };

    /// <summary>
    /// <c>mask_pool</c> (FC-CLIP / Mask-Adapter): x [B,C,H,W] F32, masks [B,Q,Hm,Wm] F32 → [B,Q,C]. Masks of another size
    /// are first resized bilinearly to H×W (F.interpolate, align_corners=False; computed inside the kernel, no resized
    /// copy). Weights: binary_logits 1[m>0]; soft m; gated m·1[m>threshold]; sigmoid_normalized σ(m) (docs/operations.md: use
    /// eps = 0). out[b,q,:] = Σ_hw x·w / (Σ_hw w + eps); a zero denominator (an empty mask with eps = 0) gives 0.
    /// </summary>
    public static HostTensor MaskPool(this Device device, HostTensor x, HostTensor masks, MaskType maskType, float threshold = 0.5f,
        float eps = 1e-8f)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(masks);
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        Check.Rank(masks.Shape, 4, "masks", "[B,Q,Hm,Wm]");
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape[0], masks.Shape[1], x.Shape[1]);
        device.MaskPool(scope.Bind(x), scope.Bind(masks), o, maskType, threshold, eps);
        return scope.Result(o);
    }

    /// <summary><c>mask_pool</c> on device tensors; output [B,Q,C] F32.</summary>
    public static void MaskPool(this Device device, DeviceTensor x, DeviceTensor masks, DeviceTensor output, MaskType maskType,
        float threshold = 0.5f, float eps = 1e-8f)
    {
        Devices(device, "x", x, "masks", masks, "output", output);
        F32(x, "x"); F32(masks, "masks");
        Check.Rank(x.Shape, 4, "x", "[B,C,H,W]");
        Check.Rank(masks.Shape, 4, "masks", "[B,Q,Hm,Wm]");
        int b = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3], q = masks.Shape[1], mh = masks.Shape[2], mw = masks.Shape[3];
        if (masks.Shape[0] != b)
            throw new ArgumentException($"masks {Shape.Format(masks.Shape)} must have B = {b} rows like x {Shape.Format(x.Shape)}.",
            "masks");
        if ((long)h * w > 0 && (long)mh * mw == 0 && (long)b * q > 0)
            throw new ArgumentException($"masks {Shape.Format(masks.Shape)} are empty and cannot be resized to x's {h}×{w}.", "masks");
        if (maskType < MaskType.BinaryLogits || maskType > MaskType.SigmoidNormalized)
            throw new ArgumentException($"mask_type {(int)maskType} is unknown.", nameof(maskType));
        if (!(eps >= 0) || float.IsInfinity(eps)) throw new ArgumentException($"eps must be a finite number >= 0, got {eps}.", "eps");
        if (float.IsNaN(threshold)) throw new ArgumentException("threshold must not be NaN.", "threshold");
        Output(output, b, q, c);
        var plan = new MaskPoolPlan(x, masks, output, new MaskPoolParams
        {
            Batch = b,
            Channels = c,
            H = h,
            W = w,
            Queries = q,
            MH = mh,
            MW = mw,
            Type = (int)maskType,
            Threshold = threshold,
            Eps = eps,
        });
        Dispatch.Run(device, ref plan);
    }

    private readonly struct MaskPoolPlan(DeviceTensor x, DeviceTensor masks, DeviceTensor output, MaskPoolParams q) : IPlan
    {
        public void Reference() =>
            MaskPoolReference.Run(F(x), F(masks), FOut(output), q.Batch, q.Channels, q.H, q.W, q.Queries, q.MH, q.MW, (MaskType)q.Type,
                q.Threshold, q.Eps);

        public void Simd(CpuDevice cpu) =>
            MaskPoolSimd.Run(F(x), F(masks), FOut(output), q.Batch, q.Channels, q.H, q.W, q.Queries, q.MH, q.MW, (MaskType)q.Type,
                q.Threshold, q.Eps,
                cpu.Pool);

        public void Ilgpu(IlgpuScope s) => MaskPoolIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(x), s.View<float>(masks),
            s.View<float>(output), q, s.Temp<float>);
    }

    // ---------------------------------------------------------------- spatiotemporal_pool

    /// <summary>
    /// <c>spatiotemporal_pool</c> (Video-ChatGPT / RACCooN): x [B,F,N,D] F32 (frames × patches) → out [B,F+N,D]: the
    /// per-frame means over patches, then the per-patch means over frames. With regionMasks [B,R,F,N] I64|I32|U8|BOOL
    /// also regions [B,R,D] = the mean of x over the kept (f,n) (an empty region gives 0); null otherwise.
    /// </summary>
    public static (HostTensor Out, HostTensor? Regions) SpatioTemporalPool(this Device device, HostTensor x, HostTensor? regionMasks = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        Check.Rank(x.Shape, 4, "x", "[B,F,N,D]");
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape[0], x.Shape[1] + x.Shape[2], x.Shape[3]);
        var r = regionMasks is null ? null : scope.Output(DType.F32, x.Shape[0], regionMasks.Shape.Length == 4 ? regionMasks.Shape[1] : 0,
            x.Shape[3]);
        device.SpatioTemporalPool(scope.Bind(x), o, scope.BindOptional(regionMasks), r);
        return (scope.Result(o), r is null ? null : scope.Result(r));
    }

    /// <summary><c>spatiotemporal_pool</c> on device tensors; output [B,F+N,D] F32, regions [B,R,D] F32 when regionMasks is
    /// given.</summary>
    public static void SpatioTemporalPool(this Device device, DeviceTensor x, DeviceTensor output, DeviceTensor? regionMasks = null,
        DeviceTensor? regions = null)
    {
        Devices(device, "x", x, "output", output, nameof(regionMasks), regionMasks, "regions", regions);
        F32(x, "x");
        Check.Rank(x.Shape, 4, "x", "[B,F,N,D]");
        int b = x.Shape[0], f = x.Shape[1], n = x.Shape[2], d = x.Shape[3], r = 0;
        if (regionMasks is not null)
        {
            MaskDType(regionMasks, nameof(regionMasks));
            Check.Rank(regionMasks.Shape, 4, nameof(regionMasks), "[B,R,F,N]");
            r = regionMasks.Shape[1];
            Shaped(regionMasks, nameof(regionMasks), "[B,R,F,N]", b, r, f, n);
            if (regions is null) throw new ArgumentException("regions output is required when region_masks is given.", "regions");
            Check.DTypeIs(regions.DType, "regions", "F32", regions.DType == DType.F32);
            Shaped(regions, "regions", "[B,R,D]", b, r, d);
        }
        Output(output, b, f + n, d);
        var plan = new SpatioTemporalPlan(x, regionMasks, output, regions, b, f, n, d, r);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct SpatioTemporalPlan(DeviceTensor x, DeviceTensor? masks, DeviceTensor output, DeviceTensor? regions,
        int b, int f, int n, int d, int r) : IPlan
    {
        private int MaskSize => masks is null ? 0 : masks.DType.Size();

        public void Reference() => SpatioTemporalPoolReference.Run(F(x), masks is null ? default : masks.Host.Span, MaskSize, FOut(output),
            regions is null ? default : FOut(regions), b, f, n, d, r);

        public void Simd(CpuDevice cpu) => SpatioTemporalPoolSimd.Run(F(x), masks is null ? default : masks.Host.Span, MaskSize,
            FOut(output),
            regions is null ? default : FOut(regions), b, f, n, d, r, cpu.Pool);

        public void Ilgpu(IlgpuScope s) => SpatioTemporalPoolIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(x), s.View<byte>(masks),
            s.View<float>(output), s.View<float>(regions), b, f, n, d, r, MaskSize);
    }
}
