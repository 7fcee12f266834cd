using System.Globalization;
using PoolKernels.IO;
using PoolKernels.Kernels.Sequence;

namespace PoolKernels;

/// <summary>Which network a <see cref="PoolingHead"/> call runs.</summary>
public enum LatentAttentionVariant
{
    /// <summary>Perceiver resampler (Tang &amp; Yang 2024's trainable pooling layer): the latents query the tokens.</summary>
    Resampler,
    /// <summary>NV-Embed latent attention: the tokens query the latents.</summary>
    NvEmbed,
}

/// <summary>
/// A trainable pooling head (docs/operations.md "Trainable pooling heads") on one device: the weights of
/// <c>latent_attention_pool</c> / <c>multi_layer_pool</c>, loaded once by their PyTorch state-dict names, converted to F32
/// once and kept on the device until <see cref="Dispose"/>.
/// <para>Shapes are inferred: D and R from <c>latents</c> [R, D]; dh = rows(to_q)/heads; the FF width F = rows(net.0)/2
/// (F = M·D for an FF multiplier M); <c>pos_emb.weight</c> [P, D] is optional (needed by <see cref="MultiLayer(HostTensor, bool)"/>,
/// which reads its first L rows). Missing, extra or mis-shaped tensors raise one <see cref="ArgumentException"/> that lists
/// all of them.</para>
/// <para>Each call: resampler X = LN0(hidden), Lt = LNctx(latents), Q = Lt·Wqᵀ, K|V = X·Wkvᵀ, O = MHA(Q, K, V)·Woutᵀ with
/// scale dh^-0.5 and heads split as b n (h d) → b h n d (keys masked by attention_mask when given; a row with no kept key
/// gives O = 0), Y = O + latents, Y += W2·GEGLU(W1·LN1(Y) + b1) + b2 (GEGLU(a‖g) = a ⊙ gelu(g), exact erf GELU), out = mean
/// over the R latents (taken before the FF's last Linear, which commutes with it: W2 then runs on B rows, not B·R), then
/// normalize. nvembed: Q = LN0(hidden)·Wqᵀ, K|V = LNctx(latents)·Wkvᵀ, Y = MHA·Woutᵀ + hidden, the
/// same FF block, out = mean over the tokens kept by attention_mask minus the first prefix_len of them (mask and prefix are
/// used only there, as NV-Embed), then normalize. multi_layer: X = layers + pos_emb[0..L-1], then the resampler, no mask.</para>
/// <para>What does not depend on the input is computed once per head: the resampler's queries LNctx(latents)·Wqᵀ and
/// nvembed's keys/values LNctx(latents)·Wkvᵀ (and, per batch size, their copies per batch row). Intermediate buffers are kept
/// per (variant, B, N) and reused. Calls on one head are serialized; use one head per thread for parallel calls.</para>
/// <para>The MHA is <see cref="Attention.Sdpa(Device, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor?,
/// DeviceTensor?, SdpaOptions?)"/> in the bthd layout; the GEMMs are <see cref="Heads.Linear(Device, DeviceTensor, DeviceTensor,
/// DeviceTensor?, DeviceTensor, DeviceTensor?)"/>'s kernels with W packed once at load on <c>simd</c>.</para>
/// </summary>
public sealed partial class PoolingHead : IDisposable
{
    /// <summary>State-dict names, in the order of docs/operations.md's table.</summary>
    public const string Latents = "latents", PosEmb = "pos_emb.weight",
        Norm0W = "cross_attend_blocks.0.norm.weight", Norm0B = "cross_attend_blocks.0.norm.bias",
        NormCtxW = "cross_attend_blocks.0.norm_context.weight", NormCtxB = "cross_attend_blocks.0.norm_context.bias",
        ToQ = "cross_attend_blocks.0.fn.to_q.weight", ToKv = "cross_attend_blocks.0.fn.to_kv.weight",
            ToOut = "cross_attend_blocks.0.fn.to_out.weight",
        Norm1W = "cross_attend_blocks.1.norm.weight", Norm1B = "cross_attend_blocks.1.norm.bias",
        Net0W = "cross_attend_blocks.1.fn.net.0.weight", Net0B = "cross_attend_blocks.1.fn.net.0.bias",
        Net2W = "cross_attend_blocks.1.fn.net.2.weight", Net2B = "cross_attend_blocks.1.fn.net.2.bias";

    /// <summary>Every name a head may hold (pos_emb.weight optional).</summary>
    public static IReadOnlyList<string> Names { get; } =
        [Latents, PosEmb, Norm0W, Norm0B, NormCtxW, NormCtxB, ToQ, ToKv, ToOut, Norm1W, Norm1B, Net0W, Net0B, Net2W, Net2B];

    /// <summary>The device holding the weights.</summary>
    public Device Device { get; }
    /// <summary>Model width D.</summary>
    public int Dim { get; }
    /// <summary>Number of latents R.</summary>
    public int LatentCount { get; }
    /// <summary>Attention heads H.</summary>
    public int HeadCount { get; }
    /// <summary>Head dim dh = rows(to_q)/H.</summary>
    public int HeadDim { get; }
    /// <summary>FF inner width F (net.0 has 2F rows: a then g).</summary>
    public int FfWidth { get; }
    /// <summary>Rows of pos_emb.weight (0 when absent): the most layers <see cref="MultiLayer(HostTensor, bool)"/> accepts.</summary>
    public int PosEmbRows { get; }

    private readonly object _gate = new();
    private readonly DeviceTensor _latents, _n0w, _n0b, _nCw, _nCb, _n1w, _n1b;
    private readonly DeviceTensor? _posEmb;
    private readonly LinearWeight _q, _k, _v, _out, _ff1, _ff2;
    private readonly Kernels.Heads.HeadWeightArrays _hw;
    private DeviceTensor? _latentsNorm, _queries, _keys, _values; // per head, lazily
    private Workspace? _ws;
    private bool _disposed;

    private PoolingHead(Device device, IReadOnlyDictionary<string, HostTensor> w, int heads)
    {
        Device = device;
        var errors = new List<string>();
        foreach (var name in w.Keys)
            if (!Names.Contains(name)) errors.Add($"unexpected tensor '{name}' {Shape.Format(w[name].Shape)}");
        foreach (var name in Names)
            if (name != PosEmb && !w.ContainsKey(name)) errors.Add($"missing tensor '{name}'");
        foreach (var (name, t) in w)
            if (Names.Contains(name)
                && t.DType is not (DType.F32 or DType.F16 or DType.BF16))
                errors.Add($"'{name}' has dtype {t.DType.Name()}; expected F32, F16 or BF16");
        if (heads <= 0) throw new ArgumentException($"heads must be >= 1, got {heads}.", nameof(heads));
        int[] S(string n) => w.TryGetValue(n, out var t) ? t.ShapeArray : [];
        int d = 0, r = 0, hd = 0, f = 0;
        if (S(Latents) is [int r0, int d0] && d0 > 0 && r0 > 0) { r = r0; d = d0; }
        else if (w.ContainsKey(Latents)) errors.Add($"'{Latents}' must be [R, D] with R, D >= 1, got {Shape.Format(S(Latents))}");
        if (S(ToQ) is [int q0, _] && q0 > 0) hd = q0;
        if (S(Net0W) is [int f0, _] && f0 % 2 == 0) f = f0 / 2;
        if (hd % heads != 0) throw new ArgumentException($"heads = {heads} does not divide rows(to_q) = {hd}.", nameof(heads));
        void Expect(string n, params int[] shape)
        {
            if (w.TryGetValue(n, out var t) && !t.Shape.SequenceEqual(shape))
                errors.Add($"'{n}' must be {Shape.Format(shape)}, got {Shape.Format(t.Shape)}");
        }
        if (d > 0)
        {
            foreach (var n in new[] { Norm0W, Norm0B, NormCtxW, NormCtxB, Norm1W, Norm1B, Net2B }) Expect(n, d);
            if (hd == 0) errors.Add($"'{ToQ}' must be [H·dh, D] = [H·dh, {d}] with H·dh >= 1, got {Shape.Format(S(ToQ))}");
            else { Expect(ToQ, hd, d); Expect(ToKv, 2 * hd, d); Expect(ToOut, d, hd); }
            if (f == 0) errors.Add($"'{Net0W}' must be [2F, D] = [2F, {d}] with F >= 1, got {Shape.Format(S(Net0W))}");
            else { Expect(Net0W, 2 * f, d); Expect(Net0B, 2 * f); Expect(Net2W, d, f); }
            if (w.TryGetValue(PosEmb, out var pe) && (pe.Shape.Length != 2 || pe.Shape[1] != d))
                errors.Add($"'{PosEmb}' must be [L, D] = [L, {d}], got {Shape.Format(pe.Shape)}");
        }
        if (errors.Count > 0) throw new ArgumentException("Bad pooling-head weights: " + string.Join("; ", errors) + ".", "weights");

        Dim = d; LatentCount = r; HeadCount = heads; HeadDim = hd / heads; FfWidth = f;
        PosEmbRows = w.TryGetValue(PosEmb, out var p) ? p.Shape[0] : 0;
        float[] A(string n) => w[n].DType == DType.F32 ? w[n].AsSpan<float>().ToArray() : w[n].To(DType.F32).AsSpan<float>().ToArray();
        DeviceTensor Up(string n) => device.Upload<float>(A(n), w[n].Shape.ToArray());
        _latents = Up(Latents); _n0w = Up(Norm0W); _n0b = Up(Norm0B); _nCw = Up(NormCtxW); _nCb = Up(NormCtxB); _n1w = Up(Norm1W); _n1b
            = Up(Norm1B);
        _posEmb = PosEmbRows > 0 ? Up(PosEmb) : null;
        var kv = A(ToKv);
        _q = LinearWeight.Create(device, A(ToQ), hd, d, null);
        _k = LinearWeight.Create(device, kv[..(hd * d)], hd, d, null);
        _v = LinearWeight.Create(device, kv[(hd * d)..], hd, d, null);
        _out = LinearWeight.Create(device, A(ToOut), d, hd, null);
        _ff1 = LinearWeight.Create(device, A(Net0W), 2 * f, d, A(Net0B));
        _ff2 = LinearWeight.Create(device, A(Net2W), d, f, A(Net2B));
        _hw = new Kernels.Heads.HeadWeightArrays
        {
            Latents = A(Latents),
            PosEmb = PosEmbRows > 0 ? A(PosEmb) : [],
            N0W = A(Norm0W),
            N0B = A(Norm0B),
            NCW = A(NormCtxW),
            NCB = A(NormCtxB),
            Wq = A(ToQ),
            Wkv = kv,
            Wout = A(ToOut),
            N1W = A(Norm1W),
            N1B = A(Norm1B),
            W1 = A(Net0W),
            B1 = A(Net0B),
            W2 = A(Net2W),
            B2 = A(Net2B),
        };
    }

    /// <summary>A head from tensors named by their state-dict names (F32, F16 or BF16), uploaded to <paramref name="device"/>.</summary>
    /// <exception cref="ArgumentException">Missing, extra or mis-shaped tensors (all listed; ParamName "weights"), or heads
    /// not dividing rows(to_q) (ParamName "heads").</exception>
    public static PoolingHead FromTensors(Device device, IReadOnlyDictionary<string, HostTensor> weights, int heads)
    {
        ArgumentNullException.ThrowIfNull(device); ArgumentNullException.ThrowIfNull(weights);
        return new PoolingHead(device, weights, heads);
    }

    /// <summary>A head from a <c>.safetensors</c> file as saved by PyTorch
    /// (<c>safetensors.torch.save_file(module.state_dict())</c>).</summary>
    public static PoolingHead Load(Device device, string path, int heads)
    {
        using var file = Safetensors.Read(path);
        return FromTensors(device, file.Tensors, heads);
    }

    /// <summary>The weights as F32 host tensors by state-dict name (to_kv re-joined), e.g. to save with <see
    /// cref="Safetensors.Write(string, IEnumerable{KeyValuePair{string, HostTensor}}, IReadOnlyDictionary{string, string}?)"/>.</summary>
    public Dictionary<string, HostTensor> StateDict()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var k = _k.W.ToTensor(); var v = _v.W.ToTensor();
            var kv = HostTensor.Zeros(DType.F32, 2 * _k.N, Dim);
            k.Data.Span.CopyTo(kv.Data.Span); v.Data.Span.CopyTo(kv.Data.Span[k.Data.Length..]);
            var d = new Dictionary<string, HostTensor>
            {
                [Latents] = _latents.ToTensor(),
                [Norm0W] = _n0w.ToTensor(),
                [Norm0B] = _n0b.ToTensor(),
                [NormCtxW] = _nCw.ToTensor(),
                [NormCtxB] = _nCb.ToTensor(),
                [ToQ] = _q.W.ToTensor(),
                [ToKv] = kv,
                [ToOut] = _out.W.ToTensor(),
                [Norm1W] = _n1w.ToTensor(),
                [Norm1B] = _n1b.ToTensor(),
                [Net0W] = _ff1.W.ToTensor(),
                [Net0B] = _ff1.Bias!.ToTensor(),
                [Net2W] = _ff2.W.ToTensor(),
                [Net2B] = _ff2.Bias!.ToTensor(),
            };
            if (_posEmb is not null) d[PosEmb] = _posEmb.ToTensor();
            return d;
        }
    }

    /// <summary>Writes <see cref="StateDict"/> to a <c>.safetensors</c> file.</summary>
    public void Save(string path) => Safetensors.Write(path, StateDict());

    // ------------------------------------------------------------------ host-tensor calls

    /// <summary><c>latent_attention_pool</c> variant <c>resampler</c>: hidden [B,N,D] F32|F16|BF16, attentionMask [B,N] optional
    /// (masks keys; the paper passes none). Returns out [B,D] F32.</summary>
    public HostTensor Resampler(HostTensor hidden, HostTensor? attentionMask = null, bool normalize = true) =>
        Host(hidden, attentionMask, null, normalize, LatentAttentionVariant.Resampler, false);

    /// <summary><c>latent_attention_pool</c> variant <c>nvembed</c>: hidden [B,N,D], attentionMask [B,N] and prefixLen [B]
    /// (I64|I32) optional, used only in the final mean. Returns out [B,D] F32.</summary>
    public HostTensor NvEmbed(HostTensor hidden, HostTensor? attentionMask = null, HostTensor? prefixLen = null, bool normalize = true) =>
        Host(hidden, attentionMask, prefixLen, normalize, LatentAttentionVariant.NvEmbed, false);

    /// <summary><c>multi_layer_pool</c>: layers [B,L,D] (e.g. from <c>layer_pool</c>), L ≤ rows of pos_emb.weight. Returns out [B,D]
    /// F32.</summary>
    public HostTensor MultiLayer(HostTensor layers, bool normalize = true) =>
        Host(layers, null, null, normalize, LatentAttentionVariant.Resampler, true);

    private HostTensor Host(HostTensor hidden, HostTensor? mask, HostTensor? prefix, bool normalize, LatentAttentionVariant variant,
        bool multiLayer)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        string hn = multiLayer ? "layers" : "hidden";
        Check.Rank(hidden.Shape, 3, hn, multiLayer ? "[B,L,D]" : "[B,N,D]");
        if (prefix is not null && prefix.DType.IsIndex())
        {
            var pv = prefix.ToInt64s();
            for (int i = 0; i < pv.Length; i++)
                if (pv[i] < 0) throw new ArgumentException($"prefix_len[{i}] = {pv[i]} is negative.", "prefixLen");
        }
        using var scope = new HostScope(Device);
        var o = scope.Output(DType.F32, hidden.Shape[0], Dim);
        Run(scope.Bind(hidden), scope.BindOptional(mask), scope.BindOptional(prefix), o, normalize, variant, multiLayer);
        return scope.Result(o);
    }

    // ------------------------------------------------------------------ device-tensor calls

    /// <summary><see cref="Resampler(HostTensor, HostTensor?, bool)"/> on device tensors; output [B,D] F32.</summary>
    public void Resampler(DeviceTensor hidden, DeviceTensor? attentionMask, DeviceTensor output, bool normalize = true) =>
        Run(hidden, attentionMask, null, output, normalize, LatentAttentionVariant.Resampler, false);

    /// <summary><see cref="NvEmbed(HostTensor, HostTensor?, HostTensor?, bool)"/> on device tensors; output [B,D] F32.</summary>
    public void NvEmbed(DeviceTensor hidden, DeviceTensor? attentionMask, DeviceTensor? prefixLen, DeviceTensor output,
        bool normalize = true) =>
        Run(hidden, attentionMask, prefixLen, output, normalize, LatentAttentionVariant.NvEmbed, false);

    /// <summary><see cref="MultiLayer(HostTensor, bool)"/> on device tensors; output [B,D] F32.</summary>
    public void MultiLayer(DeviceTensor layers, DeviceTensor output, bool normalize = true) =>
        Run(layers, null, null, output, normalize, LatentAttentionVariant.Resampler, true);

    /// <summary>The checks of a call's inputs (hidden or layers, mask, prefix); returns (B, N).</summary>
    private (int B, int N) CheckInputs(DeviceTensor hidden, DeviceTensor? mask, DeviceTensor? prefix, LatentAttentionVariant variant,
        bool multiLayer)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        string hn = multiLayer ? "layers" : "hidden";
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[(hn, hidden), ("attentionMask", mask), ("prefixLen", prefix)])
            Check.SameDevice(Device, name, t);
        Check.Rank(hidden.Shape, 3, hn, multiLayer ? "[B,L,D]" : "[B,N,D]");
        Check.DTypeIs(hidden.DType, hn, "F32|F16|BF16", hidden.DType.IsFloatInput());
        int b = hidden.Shape[0], n = hidden.Shape[1];
        if (hidden.Shape[2] != Dim) throw new ArgumentException($"{hn} must be [B,{(multiLayer ? "L" : "N")},D] with D = {Dim} (the "
            + $"head's width), got {Shape.Format(hidden.Shape)}.", hn);
        if (multiLayer && n > PosEmbRows)
            throw new ArgumentException(PosEmbRows == 0 ? $"multi_layer_pool needs '{PosEmb}' in the head's weights."
                : $"layers has L = {n} but pos_emb.weight has only {PosEmbRows} rows.", "layers");
        if (mask is not null)
        {
            Check.DTypeIs(mask.DType, "attentionMask", "I64|I32|U8|BOOL", mask.DType.IsMask());
            if (mask.Shape.Length != 2 || mask.Shape[0] != b || mask.Shape[1] != n)
                throw new ArgumentException($"attention_mask must be [B,N] = [{b}, {n}] for hidden {Shape.Format(hidden.Shape)}, got "
                    + $"{Shape.Format(mask.Shape)}.", "attentionMask");
        }
        if (prefix is not null)
        {
            if (variant != LatentAttentionVariant.NvEmbed) throw new ArgumentException("prefix_len applies to the nvembed variant only.",
                "prefixLen");
            Check.DTypeIs(prefix.DType, "prefixLen", "I64|I32", prefix.DType.IsIndex());
            if (prefix.Shape.Length != 1 || prefix.Shape[0] != b)
                throw new ArgumentException($"prefix_len must be [B] = [{b}], got {Shape.Format(prefix.Shape)}.", "prefixLen");
            // the values stay on the device (sequence_pool's rule: an entry <= 0 skips nothing); the host overload checks them
        }
        return (b, n);
    }

    private void Run(DeviceTensor hidden, DeviceTensor? mask, DeviceTensor? prefix, DeviceTensor output, bool normalize,
        LatentAttentionVariant variant, bool multiLayer)
    {
        ArgumentNullException.ThrowIfNull(hidden); ArgumentNullException.ThrowIfNull(output);
        Check.SameDevice(Device, "output", output);
        var (b, n) = CheckInputs(hidden, mask, prefix, variant, multiLayer);
        Check.DTypeIs(output.DType, "output", "F32", output.DType == DType.F32);
        if (output.Shape.Length != 2 || output.Shape[0] != b || output.Shape[1] != Dim)
            throw new ArgumentException($"output must be [B,D] = [{b}, {Dim}], got {Shape.Format(output.Shape)}.", "output");
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (b == 0) return;
            using var batch = Device.BeginBatch(); // the ~15 kernels of a call share one synchronization (at its end)
            if (variant == LatentAttentionVariant.Resampler) RunResampler(hidden, mask, output, normalize, multiLayer, b, n);
            else RunNvEmbed(hidden, mask, prefix, output, normalize, b, n);
        }
    }

    private DeviceTensor LatentsNorm()
    {
        if (_latentsNorm is null)
        {
            _latentsNorm = Device.Allocate(DType.F32, LatentCount, Dim);
            HeadKernels.LayerNorm(Device, _latents, _nCw, _nCb, _latentsNorm, LatentCount, Dim, 1e-5f);
        }
        return _latentsNorm;
    }

    private DeviceTensor Project(LinearWeight w)
    {
        var t = Device.Allocate(DType.F32, LatentCount, w.N);
        HeadKernels.Linear(Device, LatentsNorm(), w, null, t, LatentCount);
        return t;
    }

    private Workspace Ws(LatentAttentionVariant variant, int b, int n)
    {
        if (_ws is { } w && w.Variant == variant && w.B == b && w.N == n) return w;
        _ws?.Dispose(); _ws = null;
        _ws = new Workspace(this, variant, b, n);
        return _ws;
    }

    private SdpaOptions? _sdpa;
    private SdpaOptions Sdpa => _sdpa ??= new() { Layout = SdpaLayout.Bthd, Scale = (float)(1.0 / Math.Sqrt(HeadDim)) };
    private static readonly SequencePoolOptions Mean = new(SequencePoolMode.Mean), MeanNormalized = new(SequencePoolMode.Mean)
    {
        Normalize
        = true
    };

    private void RunResampler(DeviceTensor hidden, DeviceTensor? mask, DeviceTensor output, bool normalize, bool multiLayer, int b, int n)
    {
        _queries ??= Project(_q);
        var w = Ws(LatentAttentionVariant.Resampler, b, n);
        int r = LatentCount, d = Dim;
        // F32 tokens without a position embedding go straight into the LayerNorm (no copy into the workspace)
        if (!multiLayer && hidden.DType == DType.F32) HeadKernels.LayerNorm(Device, hidden, _n0w, _n0b, w.X, b * n, d, 1e-5f);
        else
        {
            HeadKernels.AddRows(Device, hidden, multiLayer ? _posEmb : null, w.X, b, n, d);
            HeadKernels.LayerNorm(Device, w.X, _n0w, _n0b, w.X, b * n, d, 1e-5f);
        }
        HeadKernels.Linear(Device, w.X, _k, null, w.K, b * n);
        HeadKernels.Linear(Device, w.X, _v, null, w.V, b * n);
        if (!w.QueriesReady)
        {
            HeadKernels.Repeat(Device, _queries, w.Q, b); HeadKernels.Repeat(Device, _latents, w.Residual,
            b); w.QueriesReady = true;
        }
        Device.Sdpa(w.Q, w.K, w.V, w.O, w.Lse, null, mask, Sdpa);
        HeadKernels.Linear(Device, w.O, _out, w.Residual, w.Y, b * r);
        // The FF block's last Linear commutes with the mean over the R latents (never empty): mean(Y + G·W2ᵀ + b2) =
        // mean(Y) + mean(G)·W2ᵀ + b2, so W2 runs on B rows instead of B·R (a quarter of the head's FLOPs at F = D).
        HeadKernels.LayerNorm(Device, w.Y, _n1w, _n1b, w.Z, b * r, Dim, 1e-5f);
        HeadKernels.Linear(Device, w.Z, _ff1, null, w.H1, b * r);
        HeadKernels.Geglu(Device, w.H1, w.G, b * r, FfWidth);
        Device.SequencePool(w.G, w.Ones, w.GMean!, Mean);
        Device.SequencePool(w.Y, w.Ones, w.YMean!, Mean);
        HeadKernels.Linear(Device, w.GMean!, _ff2, w.YMean, w.Pooled!, b);
        Device.SequencePool(w.Pooled!, w.OnesOne!, output, normalize ? MeanNormalized : Mean);
    }

    private void RunNvEmbed(DeviceTensor hidden, DeviceTensor? mask, DeviceTensor? prefix, DeviceTensor output, bool normalize, int b,
        int n)
    {
        _keys ??= Project(_k);
        _values ??= Project(_v);
        var w = Ws(LatentAttentionVariant.NvEmbed, b, n);
        int d = Dim;
        HeadKernels.AddRows(Device, hidden, null, w.Residual, b, n, d);
        HeadKernels.LayerNorm(Device, w.Residual, _n0w, _n0b, w.X, b * n, d, 1e-5f);
        HeadKernels.Linear(Device, w.X, _q, null, w.Q, b * n);
        if (!w.QueriesReady)
        {
            HeadKernels.Repeat(Device, _keys, w.K, b); HeadKernels.Repeat(Device, _values, w.V,
            b); w.QueriesReady = true;
        }
        Device.Sdpa(w.Q, w.K, w.V, w.O, w.Lse, null, null, Sdpa);
        HeadKernels.Linear(Device, w.O, _out, w.Residual, w.Y, b * n);
        FeedForward(w, b * n);
        Device.SequencePool(w.Y, mask ?? w.Ones, output, normalize ? MeanNormalized : Mean, prefix);
    }

    /// <summary>Y += W2·GEGLU(W1·LN1(Y) + b1) + b2 over <paramref name="rows"/> rows.</summary>
    private void FeedForward(Workspace w, int rows)
    {
        HeadKernels.LayerNorm(Device, w.Y, _n1w, _n1b, w.Z, rows, Dim, 1e-5f);
        HeadKernels.Linear(Device, w.Z, _ff1, null, w.H1, rows);
        HeadKernels.Geglu(Device, w.H1, w.G, rows, FfWidth);
        HeadKernels.Linear(Device, w.G, _ff2, w.Y, w.Y, rows);
    }

    /// <summary>Per-(variant, B, N) buffers. Resampler: queries over the R latents, keys over the N tokens; nvembed the reverse.</summary>
    private sealed class Workspace : IDisposable
    {
        public LatentAttentionVariant Variant; public int B, N; public bool QueriesReady;
        public DeviceTensor X, Q, K, V, O, Lse, Residual, Y, Z, H1, G, Ones;
        public DeviceTensor? GMean, YMean, Pooled, OnesOne; // resampler: the means taken before W2

        public Workspace(PoolingHead h, LatentAttentionVariant variant, int b, int n)
        {
            Variant = variant; B = b; N = n;
            var dev = h.Device;
            int r = h.LatentCount, d = h.Dim, hh = h.HeadCount, dh = h.HeadDim;
            int tq = variant == LatentAttentionVariant.Resampler ? r : n, tk = variant == LatentAttentionVariant.Resampler ? n : r;
            X = dev.Allocate(DType.F32, b, n, d);
            Q = dev.Allocate(DType.F32, b, tq, hh, dh);
            K = dev.Allocate(DType.F32, b, tk, hh, dh);
            V = dev.Allocate(DType.F32, b, tk, hh, dh);
            O = dev.Allocate(DType.F32, b, tq, hh, dh);
            Lse = dev.Allocate(DType.F32, b, hh, tq);
            Residual = dev.Allocate(DType.F32, b, tq, d);
            Y = dev.Allocate(DType.F32, b, tq, d);
            Z = dev.Allocate(DType.F32, b, tq, d);
            H1 = dev.Allocate(DType.F32, b, tq, 2 * h.FfWidth);
            G = dev.Allocate(DType.F32, b, tq, h.FfWidth);
            Ones = dev.Upload(Heads.Ones(b, tq));
            if (variant == LatentAttentionVariant.Resampler)
            {
                GMean = dev.Allocate(DType.F32, b, h.FfWidth);
                YMean = dev.Allocate(DType.F32, b, d);
                Pooled = dev.Allocate(DType.F32, b, 1, d);
                OnesOne = dev.Upload(Heads.Ones(b, 1));
            }
        }

        public void Dispose()
        {
            foreach (var t in new[] { X, Q, K, V, O, Lse, Residual, Y, Z, H1, G, Ones, GMean, YMean, Pooled, OnesOne }) t?.Dispose();
        }
    }

    /// <summary>Frees the device buffers.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _ws?.Dispose();
            foreach (var t in new[] { _latents, _n0w, _n0b, _nCw, _nCb, _n1w, _n1b, _posEmb, _latentsNorm, _queries, _keys,
                _values }) t?.Dispose();
            foreach (var l in new[] { _q, _k, _v, _out, _ff1, _ff2 }) l.Dispose();
        }
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"PoolingHead(D={Dim}, R={LatentCount}, heads={HeadCount}, dh={HeadDim}, F={FfWidth}, pos_emb={PosEmbRows}) on {Device.Id}");
}
