using System.Runtime.InteropServices;
using PoolKernels.Kernels.Training;

namespace PoolKernels;

/// <summary>Similarity of <c>info_nce</c>.</summary>
public enum InfoNceSimilarity
{
    /// <summary>Cosine similarity (rows normalized with eps 1e-12, as F.normalize): sentence-transformers' default.</summary>
    Cosine,
    /// <summary>Plain dot product.</summary>
    Dot,
}

/// <summary>Hyper-parameters of <c>adamw_step</c> (torch.optim.AdamW's defaults).</summary>
public sealed record AdamWOptions
{
    /// <summary>Learning rate (> 0, finite). Default 1e-3.</summary>
    public float Lr { get; init; } = 1e-3f;
    /// <summary>β1 in [0, 1). Default 0.9.</summary>
    public float Beta1 { get; init; } = 0.9f;
    /// <summary>β2 in [0, 1). Default 0.999.</summary>
    public float Beta2 { get; init; } = 0.999f;
    /// <summary>Added to the bias-corrected √v (> 0). Default 1e-8.</summary>
    public float Eps { get; init; } = 1e-8f;
    /// <summary>Decoupled weight decay (>= 0): param·(1 − lr·wd) before the update. Default 0.01.</summary>
    public float WeightDecay { get; init; } = 0.01f;

    internal AdamWParams Params(long step)
    {
        if (!(Lr > 0 && float.IsFinite(Lr))) throw new ArgumentException($"lr must be finite and > 0, got {Lr}.", nameof(Lr));
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentException($"beta1 must be in [0, 1), got {Beta1}.", nameof(Beta1));
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentException($"beta2 must be in [0, 1), got {Beta2}.", nameof(Beta2));
        if (!(Eps > 0 && float.IsFinite(Eps))) throw new ArgumentException($"eps must be finite and > 0, got {Eps}.", nameof(Eps));
        if (!(WeightDecay >= 0 && float.IsFinite(WeightDecay)))
            throw new ArgumentException($"weight_decay must be finite and >= 0, got {WeightDecay}.", nameof(WeightDecay));
        if (step < 1) throw new ArgumentException($"step must be >= 1 (this step's number, 1 for the first), got {step}.", nameof(step));
        return new AdamWParams
        {
            Lr = Lr,
            Beta1 = Beta1,
            Beta2 = Beta2,
            Eps = Eps,
            WeightDecay = WeightDecay,
            Bc1 = (float)(1 - Math.Pow(Beta1, step)),
            Bc2Sqrt = (float)Math.Sqrt(1 - Math.Pow(Beta2, step)),
        };
    }
}

/// <summary>
/// Training building blocks on every backend (docs/operations.md "Gradients and training"): <c>info_nce</c>, the
/// in-batch-negatives contrastive loss with its gradients, and <c>adamw_step</c>, one AdamW update in place.
/// </summary>
public static class Training
{
    // ---------------------------------------------------------------- info_nce

    /// <summary><c>info_nce</c> (sentence-transformers MultipleNegativesRankingLoss) on host tensors: anchors [B,D] and
    /// candidates [N,D] F32 with N >= B (candidate b is anchor b's positive, every other candidate its negative; hard
    /// negatives follow the positives). loss = mean_b(logsumexp_j(scale·sim(a_b, c_j)) − scale·sim(a_b, c_b)). Returns loss
    /// [1] and the gradients d_anchors [B,D], d_candidates [N,D] of that loss. Memory O(B·N) for the batch's logits.</summary>
    /// <exception cref="ArgumentException">Shapes or dtypes are invalid, N &lt; B, or scale is not finite.</exception>
    public static (HostTensor Loss, HostTensor DAnchors, HostTensor DCandidates) InfoNce(this Device device, HostTensor anchors,
        HostTensor candidates,
        float scale = 20f, InfoNceSimilarity similarity = InfoNceSimilarity.Cosine)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(anchors); ArgumentNullException.ThrowIfNull(candidates);
        var (b, n, d) = CheckInfoNce(anchors.Shape, anchors.DType, candidates.Shape, candidates.DType, scale, similarity);
        using var scope = new HostScope(device);
        var l = scope.Output(DType.F32, 1);
        var da = scope.Output(DType.F32, b, d);
        var dc = scope.Output(DType.F32, n, d);
        device.InfoNce(scope.Bind(anchors), scope.Bind(candidates), l, da, dc, scale, similarity);
        return (scope.Result(l), scope.Result(da), scope.Result(dc));
    }

    /// <summary><c>info_nce</c> on device-resident tensors: loss [1], dAnchors [B,D], dCandidates [N,D], all F32.</summary>
    public static void InfoNce(this Device device, DeviceTensor anchors, DeviceTensor candidates, DeviceTensor loss, DeviceTensor dAnchors,
        DeviceTensor dCandidates, float scale = 20f, InfoNceSimilarity similarity = InfoNceSimilarity.Cosine)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(anchors); ArgumentNullException.ThrowIfNull(candidates); ArgumentNullException.ThrowIfNull(loss);
        ArgumentNullException.ThrowIfNull(dAnchors); ArgumentNullException.ThrowIfNull(dCandidates);
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[ (nameof(anchors), anchors), (nameof(candidates), candidates),
            (nameof(loss), loss), (nameof(dAnchors), dAnchors), (nameof(dCandidates), dCandidates) ])
            Check.SameDevice(device, name, t);
        var (b, n, d) = CheckInfoNce(anchors.Shape, anchors.DType, candidates.Shape, candidates.DType, scale, similarity);
        Output(loss, nameof(loss), [1], "[1]");
        Output(dAnchors, nameof(dAnchors), [b, d], "[B,D]");
        Output(dCandidates, nameof(dCandidates), [n, d], "[N,D]");
        var plan = new InfoNcePlan(anchors, candidates, loss, dAnchors, dCandidates, b, n, d, scale,
            similarity == InfoNceSimilarity.Cosine);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>A validated info_nce call on device-resident tensors.</summary>
    private readonly struct InfoNcePlan(DeviceTensor a, DeviceTensor c, DeviceTensor loss, DeviceTensor da, DeviceTensor dc, int b, int n,
        int d,
        float scale, bool cosine) : IPlan
    {
        public void Reference() =>
            InfoNceReference.Run(F(a.Host.Span), F(c.Host.Span), b, n, d, scale, cosine, FW(loss.Host.Span), FW(da.Host.Span),
                FW(dc.Host.Span));

        public void Simd(CpuDevice cpu) => InfoNceSimd.Run(F(a.Host.Span), F(c.Host.Span), b, n, d, scale, cosine, FW(loss.Host.Span),
            FW(da.Host.Span), FW(dc.Host.Span), cpu.Pool);

        public void Ilgpu(IlgpuScope s) => InfoNceIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(a), s.View<float>(c),
            s.View<float>(loss),
            s.View<float>(da), s.View<float>(dc), s.Temp<float>(b + n), s.Temp<float>((long)b * n), s.Temp<float>((long)(b + n) * d),
            s.Temp<float>(b), b, n, d, scale, cosine);
    }

    private static void Output(DeviceTensor t, string name, ReadOnlySpan<int> shape, string layout)
    {
        Check.DTypeIs(t.DType, name, "F32", t.DType == DType.F32);
        Check.ShapeIs(t.Shape, shape, name, layout);
    }

    private static ReadOnlySpan<float> F(Span<byte> s) => MemoryMarshal.Cast<byte, float>(s);
    private static Span<float> FW(Span<byte> s) => MemoryMarshal.Cast<byte, float>(s);

    private static (int B, int N, int D) CheckInfoNce(ReadOnlySpan<int> a, DType at, ReadOnlySpan<int> c, DType ct, float scale,
        InfoNceSimilarity similarity)
    {
        Check.DTypeIs(at, "anchors", "F32", at == DType.F32);
        Check.DTypeIs(ct, "candidates", "F32", ct == DType.F32);
        Check.Rank(a, 2, "anchors", "[B,D]");
        Check.Rank(c, 2, "candidates", "[N,D]");
        if (c[1] != a[1]) throw new ArgumentException($"candidates {Shape.Format(c)} must have the anchors' width D = {a[1]}.",
            "candidates");
        if (c[0] < a[0])
            throw new ArgumentException($"candidates must hold at least one per anchor (N >= B = {a[0]}), got N = {c[0]}.", "candidates");
        if (!float.IsFinite(scale)) throw new ArgumentException($"scale must be finite, got {scale}.", nameof(scale));
        if (similarity is not (InfoNceSimilarity.Cosine or InfoNceSimilarity.Dot))
            throw new ArgumentException($"similarity {(int)similarity} is not cosine or dot.", nameof(similarity));
        return (a[0], c[0], a[1]);
    }

    /// <summary>Parses docs/operations.md's similarity names: cosine, dot.</summary>
    public static InfoNceSimilarity ParseSimilarity(string text) => text switch
    {
        "cosine" => InfoNceSimilarity.Cosine,
        "dot" => InfoNceSimilarity.Dot,
        _ => throw new ArgumentException($"Unknown similarity '{text}'; expected cosine or dot.", "similarity"),
    };

    // ---------------------------------------------------------------- adamw_step

    /// <summary><c>adamw_step</c> in place on host tensors: one torch.optim.AdamW step (single-tensor, no amsgrad) for
    /// param, with its gradient and moments exp_avg, exp_avg_sq (all F32, one shape); <paramref name="step"/> is this step's
    /// number t >= 1 (t = 1 with zero moments starts the optimizer).</summary>
    /// <exception cref="ArgumentException">Shapes differ, a dtype is not F32, step &lt; 1, or a hyper-parameter is out of
    /// range.</exception>
    public static void AdamWStep(this Device device, HostTensor param, HostTensor grad, HostTensor expAvg, HostTensor expAvgSq, long step,
        AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(param); ArgumentNullException.ThrowIfNull(grad);
        ArgumentNullException.ThrowIfNull(expAvg); ArgumentNullException.ThrowIfNull(expAvgSq);
        using var scope = new HostScope(device);
        DeviceTensor x = scope.Bind(param), m = scope.Bind(expAvg), v = scope.Bind(expAvgSq);
        device.AdamWStep(x, scope.Bind(grad), m, v, step, options);
        HostScope.WriteBack(x, param); HostScope.WriteBack(m, expAvg); HostScope.WriteBack(v, expAvgSq);
    }

    /// <summary><c>adamw_step</c> in place on device-resident tensors (the optimizer state stays on the device).</summary>
    public static void AdamWStep(this Device device, DeviceTensor param, DeviceTensor grad, DeviceTensor expAvg, DeviceTensor expAvgSq,
        long step,
        AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(param); ArgumentNullException.ThrowIfNull(grad);
        ArgumentNullException.ThrowIfNull(expAvg); ArgumentNullException.ThrowIfNull(expAvgSq);
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[ (nameof(param), param), (nameof(grad), grad), (nameof(expAvg),
            expAvg),
            (nameof(expAvgSq), expAvgSq) ])
            Check.SameDevice(device, name, t);
        var p = (options ?? Default).Params(step);
        Check.DTypeIs(param.DType, nameof(param), "F32", param.DType == DType.F32);
        Output(grad, nameof(grad), param.Shape, "param's shape");
        Output(expAvg, nameof(expAvg), param.Shape, "param's shape");
        Output(expAvgSq, nameof(expAvgSq), param.Shape, "param's shape");
        var plan = new AdamWPlan(Out.Of(param), In.Of(grad), Out.Of(expAvg), Out.Of(expAvgSq), p);
        Dispatch.Run(device, ref plan);
    }

    /// <summary><c>adamw_step</c> in place over host spans of one length. On reference and simd nothing is allocated.</summary>
    public static void AdamWStep(this Device device, Span<float> param, ReadOnlySpan<float> grad, Span<float> expAvg, Span<float> expAvgSq,
        long step,
        AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        var p = (options ?? Default).Params(step);
        int n = param.Length;
        if (grad.Length != n) Check.Length(grad.Length, n, nameof(grad), "param's length");
        if (expAvg.Length != n) Check.Length(expAvg.Length, n, nameof(expAvg), "param's length");
        if (expAvgSq.Length != n) Check.Length(expAvgSq.Length, n, nameof(expAvgSq), "param's length");
        var plan = new AdamWPlan(Out.Of(param), In.Of(grad), Out.Of(expAvg), Out.Of(expAvgSq), p);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>A validated adamw_step: param, exp_avg and exp_avg_sq updated in place (host spans or device tensors).</summary>
    private readonly ref struct AdamWPlan(Out param, In grad, Out m, Out v, AdamWParams p) : IPlan
    {
        private readonly Out _x = param, _m = m, _v = v;
        private readonly In _g = grad;

        public void Reference() => AdamWReference.Run(_x.As<float>(), _g.As<float>(), _m.As<float>(), _v.As<float>(), p);

        public void Simd(CpuDevice cpu) => AdamWSimd.Run(_x.As<float>(), _g.As<float>(), _m.As<float>(), _v.As<float>(), p, cpu.Pool);

        public void Ilgpu(IlgpuScope s)
        {
            // in place: a host span is uploaded, stepped and copied back; a device tensor is stepped where it is
            var x = InOut(s, _x); var m = InOut(s, _m); var v = InOut(s, _v);
            AdamWIlgpu.Launch(s.Accelerator, s.Stream, x, s.In<float>(_g), m, v, p, _g.Tensor?.Count is { } c
                ? checked((int)c) : _g.Host.Length / 4);
            s.Download(x, _x); s.Download(m, _m); s.Download(v, _v);
        }

        private static ILGPU.ArrayView<float> InOut(IlgpuScope s, in Out o) =>
            o.Tensor is not null ? s.Out<float>(o) : s.Upload<float>(o.As<float>());
    }

    private static readonly AdamWOptions Default = new();
}
