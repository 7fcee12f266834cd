using System.Runtime.InteropServices;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Heads;

namespace PoolKernels;

/// <summary>The gradients of the pooling heads: <c>latent_attention_pool_backward</c> and <c>multi_layer_pool_backward</c>
/// (docs/operations.md "Gradients and training").</summary>
public sealed partial class PoolingHead
{
    private HeadBackwardRun? _bwd;

    /// <summary>The weights as F32 arrays (the backward's form; tests build runs from it).</summary>
    internal HeadWeightArrays WeightArrays => _hw;
    private byte[] _stage = [];

    /// <summary>The names of the weight gradients a backward call produces: <c>d_</c> + every state-dict name of the head,
    /// <c>d_pos_emb.weight</c> only for <c>multi_layer_pool_backward</c>.</summary>
    public IReadOnlyList<string> GradientNames(bool multiLayer) => multiLayer ? GradNamesMulti : GradNamesLatent;

    private static readonly string[] GradNamesMulti = [.. Names.Select(n => "d_" + n)];
    private static readonly string[] GradNamesLatent = [.. Names.Where(n => n != PosEmb).Select(n => "d_" + n)];

    // ------------------------------------------------------------------ host-tensor calls

    /// <summary><c>latent_attention_pool_backward</c>, variant <c>resampler</c>: the gradients of L = Σ dOut ⊙ out for
    /// out = <see cref="Resampler(HostTensor, HostTensor?, bool)"/>. dOut [B,D] F32. Returns <c>d_hidden</c> [B,N,D] and
    /// every weight's gradient (<see cref="GradientNames"/>), all F32.</summary>
    /// <exception cref="ArgumentException">A shape or dtype is wrong (ParamName hidden, attentionMask, dOut).</exception>
    public IReadOnlyDictionary<string, HostTensor> ResamplerBackward(HostTensor hidden, HostTensor? attentionMask, HostTensor dOut,
        bool normalize = true) => HostBackward(hidden, attentionMask, null, dOut, normalize, LatentAttentionVariant.Resampler, false);

    /// <summary><c>latent_attention_pool_backward</c>, variant <c>nvembed</c> (prefixLen [B] I64|I32 optional, as the forward).
    /// Returns <c>d_hidden</c> and every weight's gradient.</summary>
    public IReadOnlyDictionary<string, HostTensor> NvEmbedBackward(HostTensor hidden, HostTensor? attentionMask, HostTensor? prefixLen,
        HostTensor dOut, bool normalize = true) =>
        HostBackward(hidden, attentionMask, prefixLen, dOut, normalize, LatentAttentionVariant.NvEmbed, false);

    /// <summary><c>multi_layer_pool_backward</c>: returns <c>d_layers</c> [B,L,D] and every weight's gradient
    /// (<c>d_pos_emb.weight</c> has pos_emb's rows; those at or beyond L are 0).</summary>
    public IReadOnlyDictionary<string, HostTensor> MultiLayerBackward(HostTensor layers, HostTensor dOut, bool normalize = true) =>
        HostBackward(layers, null, null, dOut, normalize, LatentAttentionVariant.Resampler, true);

    private IReadOnlyDictionary<string, HostTensor> HostBackward(HostTensor hidden, HostTensor? mask, HostTensor? prefix, HostTensor dOut,
        bool normalize, LatentAttentionVariant variant, bool multiLayer)
    {
        ArgumentNullException.ThrowIfNull(hidden); ArgumentNullException.ThrowIfNull(dOut);
        Check.Rank(hidden.Shape, 3, multiLayer ? "layers" : "hidden", multiLayer ? "[B,L,D]" : "[B,N,D]");
        if (prefix is not null && prefix.DType.IsIndex())
        {
            var pv = prefix.ToInt64s();
            for (int i = 0; i < pv.Length; i++)
                if (pv[i] < 0) throw new ArgumentException($"prefix_len[{i}] = {pv[i]} is negative.", "prefixLen");
        }
        using var scope = new HostScope(Device);
        var dx = scope.Output(DType.F32, hidden.ShapeArray);
        var names = GradientNames(multiLayer);
        var dw = new Dictionary<string, DeviceTensor>();
        Span<int> sh = stackalloc int[2];
        foreach (var n in names) dw[n] = scope.Output(DType.F32, sh[..GradShape(Slot(n), sh)].ToArray());
        RunBackward(scope.Bind(hidden), scope.BindOptional(mask), scope.BindOptional(prefix), scope.Bind(dOut), dx, dw, normalize, variant,
            multiLayer);
        var result = new Dictionary<string, HostTensor> { [multiLayer ? "d_layers" : "d_hidden"] = scope.Result(dx) };
        foreach (var n in names) result[n] = scope.Result(dw[n]);
        return result;
    }

    /// <summary>Writes the shape of weight gradient <paramref name="k"/> into <paramref name="shape"/>; returns its rank.</summary>
    private int GradShape(HeadGrad k, Span<int> shape)
    {
        (int a, int b) = k switch
        {
            HeadGrad.Latents => (LatentCount, Dim),
            HeadGrad.PosEmb => (PosEmbRows, Dim),
            HeadGrad.ToQ => (HeadCount * HeadDim, Dim),
            HeadGrad.ToKv => (2 * HeadCount * HeadDim, Dim),
            HeadGrad.ToOut => (Dim, HeadCount * HeadDim),
            HeadGrad.Net0W => (2 * FfWidth, Dim),
            HeadGrad.Net0B => (2 * FfWidth, -1),
            HeadGrad.Net2W => (Dim, FfWidth),
            _ => (Dim, -1),
        };
        shape[0] = a;
        if (b < 0) return 1;
        shape[1] = b;
        return 2;
    }

    // ------------------------------------------------------------------ device-tensor calls

    /// <summary><see cref="ResamplerBackward(HostTensor, HostTensor?, HostTensor, bool)"/> on device tensors: writes dHidden
    /// [B,N,D] F32 and every tensor of <paramref name="dWeights"/>, which holds exactly <see cref="GradientNames"/>(false),
    /// each F32 of its weight's shape.</summary>
    public void ResamplerBackward(DeviceTensor hidden, DeviceTensor? attentionMask, DeviceTensor dOut, DeviceTensor dHidden,
        IReadOnlyDictionary<string, DeviceTensor> dWeights, bool normalize = true) =>
        RunBackward(hidden, attentionMask, null, dOut, dHidden, dWeights, normalize, LatentAttentionVariant.Resampler, false);

    /// <summary><see cref="NvEmbedBackward(HostTensor, HostTensor?, HostTensor?, HostTensor, bool)"/> on device tensors.</summary>
    public void NvEmbedBackward(DeviceTensor hidden, DeviceTensor? attentionMask, DeviceTensor? prefixLen, DeviceTensor dOut,
        DeviceTensor dHidden, IReadOnlyDictionary<string, DeviceTensor> dWeights, bool normalize = true) =>
        RunBackward(hidden, attentionMask, prefixLen, dOut, dHidden, dWeights, normalize, LatentAttentionVariant.NvEmbed, false);

    /// <summary><see cref="MultiLayerBackward(HostTensor, HostTensor, bool)"/> on device tensors (<paramref name="dWeights"/>
    /// holds exactly <see cref="GradientNames"/>(true)).</summary>
    public void MultiLayerBackward(DeviceTensor layers, DeviceTensor dOut, DeviceTensor dLayers,
        IReadOnlyDictionary<string, DeviceTensor> dWeights, bool normalize = true) =>
        RunBackward(layers, null, null, dOut, dLayers, dWeights, normalize, LatentAttentionVariant.Resampler, true);

    private void RunBackward(DeviceTensor hidden, DeviceTensor? mask, DeviceTensor? prefix, DeviceTensor dOut, DeviceTensor dHidden,
        IReadOnlyDictionary<string, DeviceTensor> dWeights, bool normalize, LatentAttentionVariant variant, bool multiLayer)
    {
        ArgumentNullException.ThrowIfNull(hidden); ArgumentNullException.ThrowIfNull(dOut); ArgumentNullException.ThrowIfNull(dHidden);
        ArgumentNullException.ThrowIfNull(dWeights);
        var (b, n) = CheckInputs(hidden, mask, prefix, variant, multiLayer);
        Check.SameDevice(Device, nameof(dOut), dOut); Check.SameDevice(Device, nameof(dHidden), dHidden);
        Check.DTypeIs(dOut.DType, nameof(dOut), "F32", dOut.DType == DType.F32);
        Check.ShapeIs(dOut.Shape, [b, Dim], nameof(dOut), "[B,D]");
        Check.DTypeIs(dHidden.DType, nameof(dHidden), "F32", dHidden.DType == DType.F32);
        Check.ShapeIs(dHidden.Shape, hidden.Shape, nameof(dHidden), multiLayer ? "[B,L,D]" : "[B,N,D]");
        var names = GradientNames(multiLayer);
        if (dWeights.Count != names.Count)
            throw new ArgumentException(
                $"d_weights must hold exactly the {names.Count} gradients {string.Join(", ", names)}; got {dWeights.Count} tensors.",
                nameof(dWeights));
        Span<int> sh = stackalloc int[2];
        for (int i = 0; i < names.Count; i++)
        {
            if (!dWeights.TryGetValue(names[i], out var t))
                throw new ArgumentException($"d_weights is missing '{names[i]}'.", nameof(dWeights));
            Check.SameDevice(Device, nameof(dWeights), t);
            var shape = sh[..GradShape(Slot(names[i]), sh)];
            if (t.DType != DType.F32 || !t.Shape.SequenceEqual(shape))
                throw new ArgumentException($"d_weights['{names[i]}'] must be F32{Shape.Format(shape.ToArray())}, got {t}.",
                    nameof(dWeights));
        }
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var dims = new HeadDims(b, n, Dim, LatentCount, HeadCount, HeadDim, FfWidth, multiLayer ? PosEmbRows : 0,
                variant == LatentAttentionVariant.NvEmbed, multiLayer, normalize);
            bool reference = Device is CpuDevice { Kind: BackendKind.Reference };
            if (_bwd is null || _bwd.D != dims || _bwd is HeadBackwardRun<double> != reference)
                _bwd = reference ? new HeadBackwardRun<double>(dims, _hw) : new HeadBackwardRun<float>(dims, _hw);
            var run = _bwd;
            StageIn(run, hidden, mask, prefix, dOut, b, n);
            var plan = new BackwardPlan(run);
            Dispatch.Run(Device, ref plan);
            dHidden.CopyFromBytes(MemoryMarshal.AsBytes(run.DX.AsSpan()));
            for (int i = 0; i < names.Count; i++)
            {
                var (off, len) = run.Slot(Slot(names[i]));
                dWeights[names[i]].CopyFromBytes(MemoryMarshal.AsBytes(run.Grads.AsSpan(off, len)));
            }
        }
    }

    private static HeadGrad Slot(string gradName) => (HeadGrad)Array.IndexOf(GradNamesMulti, gradName);

    private Span<byte> Stage(DeviceTensor t)
    {
        if (_stage.Length < t.Bytes) _stage = new byte[t.Bytes];
        var s = _stage.AsSpan(0, (int)t.Bytes);
        t.CopyToBytes(s);
        return s;
    }

    /// <summary>Reads the inputs into the run's float buffers: X0 = hidden (+ pos_emb rows for multi_layer, rounded to float as
    /// the forward), Keep (resampler: the key mask; nvembed: the tokens the mean takes, mask and prefix_len as sequence_pool).</summary>
    private void StageIn(HeadBackwardRun run, DeviceTensor hidden, DeviceTensor? mask, DeviceTensor? prefix, DeviceTensor dOut, int b,
        int n)
    {
        int d = Dim;
        var hs = Stage(hidden);
        var x0 = run.X0.AsSpan();
        switch (hidden.DType)
        {
            case DType.F32: MemoryMarshal.Cast<byte, float>(hs).CopyTo(x0); break;
            case DType.F16:
                {
                    var h = MemoryMarshal.Cast<byte, Half>(hs);
                    for (int i = 0; i < h.Length; i++) x0[i] = (float)h[i];
                    break;
                }
            default: Elements.Bf16ToFloat(MemoryMarshal.Cast<byte, ushort>(hs), x0); break;
        }
        if (run.D.MultiLayer)
            for (int i = 0; i < b; i++)
                for (int j = 0; j < n * d; j++) x0[i * n * d + j] += _hw.PosEmb[j];
        dOut.CopyTo<float>(run.DOut);
        var keep = run.Keep.AsSpan();
        bool nv = run.D.NvEmbed;
        run.HasKeep = nv || mask is not null;
        if (mask is null) keep.Fill(1);
        else
        {
            var ms = Stage(mask);
            int es = mask.DType.Size();
            for (int i = 0; i < b * n; i++)
            {
                bool k = false;
                for (int e = 0; e < es; e++) k |= ms[i * es + e] != 0;
                keep[i] = k ? (byte)1 : (byte)0;
            }
        }
        if (nv && prefix is not null)
        {
            var ps = Stage(prefix);
            for (int i = 0; i < b; i++)
            {
                long skip = prefix.DType == DType.I64 ? MemoryMarshal.Cast<byte, long>(ps)[i] : MemoryMarshal.Cast<byte, int>(ps)[i];
                long seen = 0;
                for (int t = 0; t < n; t++)
                    if (keep[i * n + t] != 0 && seen++ < skip) keep[i * n + t] = 0;
            }
        }
    }

    /// <summary>The backward on the staged host buffers: reference in double on this thread; simd in float on the device's
    /// worker pool; ILGPU devices run the simd form on the host (the buffers were downloaded; the results are uploaded).</summary>
    private readonly struct BackwardPlan(HeadBackwardRun run) : IPlan
    {
        public void Reference() => run.Run(null);

        public void Simd(CpuDevice cpu) => run.Run(cpu.Pool);

        public void Ilgpu(IlgpuScope s) => run.Run(WorkerPool.Shared);
    }
}
