using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using PoolKernels.Kernels.Ragged;

namespace PoolKernels;

/// <summary>
/// Ragged and graph pooling on every backend: <c>segment_pool</c>, <c>gather_segment_pool</c>, <c>segment_topk</c>
/// and <c>dual_hypergraph</c> (docs/operations.md "Ragged, graph and bilinear pooling").
/// <para>Segments are CSR: <c>offsets [S+1]</c> (I64|I32), offsets[0] = 0, non-decreasing, last = the entry count;
/// segment s holds the entries [offsets[s], offsets[s+1]). Reductions: sum, mean (÷ entry count), max and min
/// (NaN propagates); an empty segment gives a zero row. Work is split by rows, not by segment, so one huge
/// segment beside millions of empty ones runs as fast as even segments.</para>
/// Offsets and indices are validated on the host before any kernel runs (device-resident ones are copied back
/// for that), so no kernel ever reads outside its buffers. Float backends accumulate in float, the reference in double.
/// </summary>
public static class RaggedPooling
{
    /// <summary>Parses sum|mean|max|min.</summary>
    public static SegmentPoolMode ParseMode(string mode) => mode switch
    {
        "sum" => SegmentPoolMode.Sum,
        "mean" => SegmentPoolMode.Mean,
        "max" => SegmentPoolMode.Max,
        "min" => SegmentPoolMode.Min,
        _ => throw new ArgumentException($"Unknown segment pooling mode '{mode}'; expected sum, mean, max or min.", nameof(mode)),
    };

    // ---------------------------------------------------------------- segment_pool

    /// <summary><c>segment_pool</c> over host spans: values [N, dim] F32, offsets [S+1] (long or int), output [S, dim].
    /// out[s] = the reduction of values rows [offsets[s], offsets[s+1]); empty segments give 0.</summary>
    /// <exception cref="ArgumentException">A length does not match, or the offsets are not 0 = o_0 &lt;= ... &lt;= o_S = N.</exception>
    public static void SegmentPool<TOff>(this Device device, ReadOnlySpan<float> values, ReadOnlySpan<TOff> offsets, Span<float> output, int dim,
        SegmentPoolMode mode) where TOff : unmanaged
    {
        ArgumentNullException.ThrowIfNull(device);
        CheckIndexType<TOff>("offsets");
        CheckMode(mode);
        if (dim < 1) throw new ArgumentException($"dim must be >= 1, got {dim}.", nameof(dim));
        if (values.Length % dim != 0) throw new ArgumentException($"values has {values.Length} elements, not a multiple of dim = {dim}.", nameof(values));
        long n = values.Length / dim;
        CheckOffsets(offsets, n, "values rows N");
        int segs = offsets.Length - 1;
        if (output.Length != (long)segs * dim) Check.Length(output.Length, (long)segs * dim, "output", $"[S, D] = [{segs}, {dim}]");
        RunSpans<TOff, int>(device, values, dim, default, default, offsets, output, mode);
    }

    /// <summary><c>segment_pool</c> on device tensors: values [N,D] F32, offsets [S+1] I64|I32, output [S,D] F32.</summary>
    public static void SegmentPool(this Device device, DeviceTensor values, DeviceTensor offsets, DeviceTensor output, SegmentPoolMode mode) =>
        GatherCore(device, values, null, offsets, null, output, mode);

    /// <summary><c>segment_pool</c> on host tensors; returns out [S, D] F32.</summary>
    public static HostTensor SegmentPool(this Device device, HostTensor values, HostTensor offsets, SegmentPoolMode mode)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(offsets);
        Check.Rank(values.Shape, 2, "values", "[N,D]");
        Check.Rank(offsets.Shape, 1, "offsets", "[S+1]");
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, Math.Max(0, offsets.Shape[0] - 1), values.Shape[1]);
        device.SegmentPool(scope.Bind(values), scope.Bind(offsets), o, mode);
        return scope.Result(o);
    }

    // ---------------------------------------------------------------- gather_segment_pool

    /// <summary><c>gather_segment_pool</c> over host spans: values [M, dim] F32, index [K] (long or int, in [0, M)),
    /// offsets [S+1] over the K entries, weights empty or [K], output [S, dim]. Entry k contributes
    /// weights[k]·values[index[k]]; mean divides by the entry count (not the weight sum).</summary>
    public static void GatherSegmentPool<TIdx, TOff>(this Device device, ReadOnlySpan<float> values, ReadOnlySpan<TIdx> index, ReadOnlySpan<TOff> offsets,
        ReadOnlySpan<float> weights, Span<float> output, int dim, SegmentPoolMode mode) where TIdx : unmanaged where TOff : unmanaged
    {
        ArgumentNullException.ThrowIfNull(device);
        CheckIndexType<TIdx>("index");
        CheckIndexType<TOff>("offsets");
        CheckMode(mode);
        if (dim < 1) throw new ArgumentException($"dim must be >= 1, got {dim}.", nameof(dim));
        if (values.Length % dim != 0) throw new ArgumentException($"values has {values.Length} elements, not a multiple of dim = {dim}.", nameof(values));
        CheckIndex(index, values.Length / dim);
        CheckOffsets(offsets, index.Length, "index entries K");
        if (!weights.IsEmpty && weights.Length != index.Length) Check.Length(weights.Length, index.Length, "weights", $"[K] for index [{index.Length}]");
        int segs = offsets.Length - 1;
        if (output.Length != (long)segs * dim) Check.Length(output.Length, (long)segs * dim, "output", $"[S, D] = [{segs}, {dim}]");
        RunSpans(device, values, dim, index, weights, offsets, output, mode, gather: true);
    }

    /// <summary><c>gather_segment_pool</c> on device tensors: values [M,D] F32, index [K] I64|I32, offsets [S+1] I64|I32,
    /// weights null or [K] F32, output [S,D] F32.</summary>
    public static void GatherSegmentPool(this Device device, DeviceTensor values, DeviceTensor index, DeviceTensor offsets, DeviceTensor? weights,
        DeviceTensor output, SegmentPoolMode mode)
    {
        ArgumentNullException.ThrowIfNull(index);
        GatherCore(device, values, index, offsets, weights, output, mode);
    }

    /// <summary><c>gather_segment_pool</c> on host tensors; returns out [S, D] F32.</summary>
    public static HostTensor GatherSegmentPool(this Device device, HostTensor values, HostTensor index, HostTensor offsets, HostTensor? weights, SegmentPoolMode mode)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(offsets);
        Check.Rank(values.Shape, 2, "values", "[M,D]");
        Check.Rank(offsets.Shape, 1, "offsets", "[S+1]");
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, Math.Max(0, offsets.Shape[0] - 1), values.Shape[1]);
        device.GatherSegmentPool(scope.Bind(values), scope.Bind(index), scope.Bind(offsets), scope.BindOptional(weights), o, mode);
        return scope.Result(o);
    }

    private static void GatherCore(Device device, DeviceTensor values, DeviceTensor? index, DeviceTensor offsets, DeviceTensor? weights,
        DeviceTensor output, SegmentPoolMode mode)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(offsets);
        ArgumentNullException.ThrowIfNull(output);
        foreach (var (name, arg) in (ReadOnlySpan<(string, DeviceTensor?)>)[ ("values", values), ("index", index), ("offsets", offsets), ("weights", weights), ("output", output) ])
            Check.SameDevice(device, name, arg);
        CheckMode(mode);
        Check.Rank(values.Shape, 2, "values", index is null ? "[N,D]" : "[M,D]");
        Check.DTypeIs(values.DType, "values", "F32", values.DType == DType.F32);
        Check.Rank(offsets.Shape, 1, "offsets", "[S+1]");
        Check.DTypeIs(offsets.DType, "offsets", "I64|I32", offsets.DType.IsIndex());
        long entries = values.Shape[0];
        byte[]? hostIndex = null;
        if (index is not null)
        {
            Check.Rank(index.Shape, 1, "index", "[K]");
            Check.DTypeIs(index.DType, "index", "I64|I32", index.DType.IsIndex());
            var ib = HostBytes(index, out hostIndex);
            if (index.DType == DType.I64) CheckIndex(MemoryMarshal.Cast<byte, long>(ib), values.Shape[0]);
            else CheckIndex(MemoryMarshal.Cast<byte, int>(ib), values.Shape[0]);
            entries = index.Count;
        }
        if (weights is not null)
        {
            if (index is null) throw new ArgumentException("weights need an index (gather_segment_pool).", "weights");
            Check.DTypeIs(weights.DType, "weights", "F32", weights.DType == DType.F32);
            if (weights.Shape.Length != 1 || weights.Count != entries)
                throw new ArgumentException($"weights must be [K] = [{entries}], got {Shape.Format(weights.Shape)}.", "weights");
        }
        var ob = HostBytes(offsets, out _);
        if (offsets.DType == DType.I64) CheckOffsets(MemoryMarshal.Cast<byte, long>(ob), entries, index is null ? "values rows N" : "index entries K");
        else CheckOffsets(MemoryMarshal.Cast<byte, int>(ob), entries, index is null ? "values rows N" : "index entries K");
        int segs = (int)offsets.Count - 1, dim = values.Shape[1];
        if (output.DType != DType.F32 || output.Shape.Length != 2 || output.Shape[0] != segs || output.Shape[1] != dim)
            throw new ArgumentException($"output must be F32 [S, D] = [{segs}, {dim}], got {output}.", "output");
        if (segs == 0 || dim == 0) return;

        if (device is CpuDevice cpu)
        {
            var r = new CpuRunner
            {
                Cpu = cpu, Values = MemoryMarshal.Cast<byte, float>(values.Host.Span), Dim = dim,
                Index = index is null ? default : index.Host.Span, Weights = weights is null ? default : MemoryMarshal.Cast<byte, float>(weights.Host.Span),
                Offsets = offsets.Host.Span, Output = MemoryMarshal.Cast<byte, float>(output.Host.Span), Mode = mode,
            };
            TypeDispatch.Run(ref r, offsets.DType, index?.DType ?? DType.I32, DType.I32);
            return;
        }
        var g = (IlgpuDevice)device;
        var plan = t_plan ??= new SegmentPlan();
        // one (item, feature) thread each: ~1K features of work per item keeps threads busy without long tails
        long rowsPerItem = Math.Max(1, 1024 / dim);
        if (offsets.DType == DType.I64) plan.Build(MemoryMarshal.Cast<byte, long>(ob), rowsPerItem, 16, 256);
        else plan.Build(MemoryMarshal.Cast<byte, int>(ob), rowsPerItem, 16, 256);
        var prm = new SegmentPoolParams { Dim = dim, Mode = (int)mode, HasIndex = index is null ? 0 : 1, HasWeights = weights is null ? 0 : 1 };
        var launch = IlgpuTypes.Get<SegmentPoolLaunch>(SegmentLaunchDefinition, IlgpuTypes.Index(offsets.DType), IlgpuTypes.Index(index?.DType ?? DType.I32));
        lock (g.Gate)
        {
            ArrayView<float> w = weights is null ? ((ArrayView<byte>)g.Dummy.View).Cast<float>() : g.Bytes(weights).Cast<float>();
            launch(g.Accelerator, g.Accelerator.DefaultStream, plan, g.Bytes(offsets), index is null ? g.Dummy.View : g.Bytes(index), w,
                g.Bytes(values).Cast<float>(), output.ViewAs<float>(), prm);
            g.Accelerator.Synchronize();
        }
    }

    /// <summary>The simd work-item size (tunable <c>item</c>, per op, bucketed by segments × dim).</summary>
    private static int ItemFloats(CpuDevice cpu, bool plain, int segs, int dim) =>
        Tuning.Get(cpu, plain ? "segment_pool" : "gather_segment_pool", segs, dim, "item", SegmentPoolSimd.DefaultItemFloats);

    [ThreadStatic] private static SegmentPlan? t_plan;
    private static readonly System.Reflection.MethodInfo SegmentLaunchDefinition = typeof(SegmentPoolIlgpu).GetMethod(nameof(SegmentPoolIlgpu.Launch))!;

    private ref struct CpuRunner : ITypedRunner
    {
        public CpuDevice Cpu;
        public ReadOnlySpan<float> Values, Weights;
        public ReadOnlySpan<byte> Index, Offsets;
        public Span<float> Output;
        public int Dim;
        public SegmentPoolMode Mode;

        public readonly void Run<TOff, TIdx, T3>() where TOff : unmanaged where TIdx : unmanaged where T3 : unmanaged
        {
            var idx = MemoryMarshal.Cast<byte, TIdx>(Index);
            var off = MemoryMarshal.Cast<byte, TOff>(Offsets);
            if (Cpu.Kind == BackendKind.Reference) SegmentPoolReference.Run(Values, Dim, idx, Weights, off, Output, Mode);
            else SegmentPoolSimd.Run(Values, Dim, idx, Weights, off, Output, Mode, Cpu.Pool, ItemFloats(Cpu, idx.IsEmpty, off.Length - 1, Dim));
        }
    }

    private static void RunSpans<TOff, TIdx>(Device device, ReadOnlySpan<float> values, int dim, ReadOnlySpan<TIdx> index, ReadOnlySpan<float> weights,
        ReadOnlySpan<TOff> offsets, Span<float> output, SegmentPoolMode mode, bool gather = false) where TOff : unmanaged where TIdx : unmanaged
    {
        int segs = offsets.Length - 1;
        if (segs == 0) return;
        switch (device)
        {
            case CpuDevice { Kind: BackendKind.Reference }: SegmentPoolReference.Run(values, dim, index, weights, offsets, output, mode); break;
            case CpuDevice cpu: SegmentPoolSimd.Run(values, dim, index, weights, offsets, output, mode, cpu.Pool, ItemFloats(cpu, !gather, segs, dim)); break;
            case IlgpuDevice g:
                using (var v = g.Upload(values, values.Length / dim, dim))
                using (var ix = gather ? g.Upload(index, index.Length) : null)
                using (var w = weights.IsEmpty ? null : g.Upload(weights, weights.Length))
                using (var off = g.Upload(offsets, offsets.Length))
                using (var o = g.Allocate(DType.F32, segs, dim))
                {
                    GatherCore(g, v, ix, off, w, o, mode);
                    o.CopyTo(output);
                }
                break;
        }
    }

    // ---------------------------------------------------------------- segment_topk

    /// <summary>
    /// <c>segment_topk</c> (HyperDrop's per-graph selection) on host tensors: scores [N] F32, offsets [S+1] I64|I32.
    /// Give exactly one of <paramref name="ratio"/> (keep ceil(ratio·n_s), computed in double; 0 &lt; ratio &lt;= 1) or
    /// <paramref name="k"/> (keep min(k, n_s); k &gt;= 1). Returns index [M] I64 (global positions, segment-major, score
    /// descending, NaN first, ties to the lower index) and out_offsets [S+1] I64.
    /// </summary>
    public static (HostTensor Index, HostTensor OutOffsets) SegmentTopk(this Device device, HostTensor scores, HostTensor offsets, double? ratio = null, int? k = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = new HostScope(device);
        var (ix, oo) = device.SegmentTopk(scope.Bind(scores), scope.Bind(offsets), ratio, k);
        using (ix) using (oo) return (ix.ToTensor(), oo.ToTensor());
    }

    /// <summary><c>segment_topk</c> on device tensors; returns new device tensors index [M] I64 and out_offsets [S+1] I64
    /// (the caller disposes them). See <see cref="SegmentTopk(Device, HostTensor, HostTensor, double?, int?)"/>.</summary>
    public static (DeviceTensor Index, DeviceTensor OutOffsets) SegmentTopk(this Device device, DeviceTensor scores, DeviceTensor offsets,
        double? ratio = null, int? k = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(offsets);
        Check.SameDevice(device, "scores", scores);
        Check.SameDevice(device, "offsets", offsets);
        if (ratio.HasValue == k.HasValue) throw new ArgumentException("give exactly one of ratio or k.", ratio.HasValue ? "k" : "ratio");
        if (ratio is double rt && !(rt > 0 && rt <= 1)) throw new ArgumentException($"ratio must be in (0, 1], got {rt}.", "ratio");
        if (k is int kk && kk < 1) throw new ArgumentException($"k must be >= 1, got {kk}.", "k");
        Check.Rank(scores.Shape, 1, "scores", "[N]");
        Check.DTypeIs(scores.DType, "scores", "F32", scores.DType == DType.F32);
        Check.Rank(offsets.Shape, 1, "offsets", "[S+1]");
        Check.DTypeIs(offsets.DType, "offsets", "I64|I32", offsets.DType.IsIndex());
        var ob = HostBytes(offsets, out _);
        long[] off = offsets.DType == DType.I64 ? MemoryMarshal.Cast<byte, long>(ob).ToArray() : Array.ConvertAll(MemoryMarshal.Cast<byte, int>(ob).ToArray(), x => (long)x);
        CheckOffsets<long>(off, scores.Count, "scores N");
        int segs = off.Length - 1;
        var outOff = new long[segs + 1];
        for (int s = 0; s < segs; s++)
        {
            long n = off[s + 1] - off[s];
            long keep = ratio is double r ? (long)Math.Ceiling(r * n) : Math.Min(k!.Value, n);
            outOff[s + 1] = outOff[s] + Math.Min(keep, n);
        }
        var index = device.Allocate(DType.I64, checked((int)outOff[segs]));
        var outOffsets = device.Upload<long>(outOff, segs + 1);
        if (outOff[segs] == 0) return (index, outOffsets);
        switch (device)
        {
            case CpuDevice cpu:
                var sc = MemoryMarshal.Cast<byte, float>(scores.Host.Span);
                var ix = MemoryMarshal.Cast<byte, long>(index.Host.Span);
                if (cpu.Kind == BackendKind.Reference) SegmentTopkReference.Run<long>(sc, off, outOff, ix);
                else SegmentTopkSimd.Run<long>(sc, off, outOff, ix, cpu.Pool);
                break;
            case IlgpuDevice g:
                var launch = IlgpuTypes.Get<SegmentTopkLaunch>(TopkLaunchDefinition, IlgpuTypes.Index(offsets.DType));
                long longest = 0;
                for (int s = 0; s < segs; s++) longest = Math.Max(longest, off[s + 1] - off[s]);
                lock (g.Gate)
                {
                    using var segStart = g.Accelerator.Allocate1D(off);
                    launch(g.Accelerator, g.Accelerator.DefaultStream, g.Bytes(scores).Cast<float>(), g.Bytes(offsets), outOffsets.ViewAs<long>(),
                        index.ViewAs<long>(), (int)scores.Count, segs, longest, segStart.View);
                    g.Accelerator.Synchronize();
                }
                break;
        }
        return (index, outOffsets);
    }

    private static readonly System.Reflection.MethodInfo TopkLaunchDefinition = typeof(SegmentTopkIlgpu).GetMethod(nameof(SegmentTopkIlgpu.Launch))!;

    // ---------------------------------------------------------------- dual_hypergraph

    /// <summary>
    /// <c>dual_hypergraph</c> (DHT, Jo et al. 2021): edge_index [2,E] I64|I32 with endpoints in [0, numNodes). Edges become
    /// nodes; each original node with &gt;= 2 incidences becomes a hyperedge (increasing node id) of its incident edges
    /// (ascending; parallel edges count separately, a self-loop (v,v) is a member of hyperedge v twice); with
    /// <paramref name="addLoops"/>, one singleton hyperedge per edge follows. Returns the CSR in both directions as I64
    /// tensors: hyperedge_offsets, hyperedge_members, hyperedge_node (-1 for loops), member_offsets [E+1],
    /// member_hyperedges. Computed on the host for every backend (an O(V+E) counting sort with data-dependent
    /// output sizes; see <see cref="DualHypergraphReference"/>).
    /// </summary>
    public static IReadOnlyDictionary<string, HostTensor> DualHypergraph(this Device device, HostTensor edgeIndex, int numNodes, bool addLoops = true)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(edgeIndex);
        if (edgeIndex.Shape.Length != 2 || edgeIndex.Shape[0] != 2) throw new ArgumentException($"edge_index must be [2, E], got {Shape.Format(edgeIndex.Shape)}.", "edge_index");
        Check.DTypeIs(edgeIndex.DType, "edge_index", "I64|I32", edgeIndex.DType.IsIndex());
        if (numNodes < 0) throw new ArgumentException($"num_nodes must be >= 0, got {numNodes}.", "num_nodes");
        var e = edgeIndex.ToInt64s();
        int m = edgeIndex.Shape[1];
        for (int i = 0; i < e.Length; i++)
            if (e[i] < 0 || e[i] >= numNodes)
                throw new ArgumentException($"edge_index[{i / m}, {i % m}] = {e[i]} is outside [0, {numNodes}) for num_nodes = {numNodes}.", "edge_index");
        var r = DualHypergraphReference.Run(e.AsSpan(0, m), e.AsSpan(m, m), numNodes, addLoops);
        return new Dictionary<string, HostTensor>
        {
            ["hyperedge_offsets"] = HostTensor.From(r.HyperedgeOffsets, r.HyperedgeOffsets.Length),
            ["hyperedge_members"] = HostTensor.From(r.HyperedgeMembers, r.HyperedgeMembers.Length),
            ["hyperedge_node"] = HostTensor.From(r.HyperedgeNode, r.HyperedgeNode.Length),
            ["member_offsets"] = HostTensor.From(r.MemberOffsets, r.MemberOffsets.Length),
            ["member_hyperedges"] = HostTensor.From(r.MemberHyperedges, r.MemberHyperedges.Length),
        };
    }

    // ---------------------------------------------------------------- checks

    internal static ReadOnlySpan<byte> HostBytes(DeviceTensor t, out byte[]? copy)
    {
        if (t.Buffer is null) { copy = null; return t.Host.Span; }
        copy = new byte[t.Bytes];
        t.CopyToBytes(copy);
        return copy;
    }

    private static void CheckMode(SegmentPoolMode mode)
    {
        if (mode < SegmentPoolMode.Sum || mode > SegmentPoolMode.Min) throw new ArgumentException($"mode {(int)mode} is not sum, mean, max or min.", "mode");
    }

    private static void CheckIndexType<T>(string name)
    {
        if (!Kernels.Elements.IsIndex<T>()) throw new ArgumentException($"{name} element type {typeof(T).Name} is not long or int.", name);
    }

    /// <summary>offsets [S+1]: offsets[0] = 0, non-decreasing, last = <paramref name="total"/>.</summary>
    internal static void CheckOffsets<TOff>(ReadOnlySpan<TOff> offsets, long total, string what) where TOff : unmanaged
    {
        if (offsets.Length < 1) throw new ArgumentException("offsets must have S+1 >= 1 entries, got 0.", "offsets");
        long prev = Kernels.Elements.ToInt64(offsets[0]);
        if (prev != 0) throw new ArgumentException($"offsets[0] must be 0, got {prev}.", "offsets");
        for (int i = 1; i < offsets.Length; i++)
        {
            long v = Kernels.Elements.ToInt64(offsets[i]);
            if (v < prev) throw new ArgumentException($"offsets must be non-decreasing: offsets[{i}] = {v} < offsets[{i - 1}] = {prev} (offsets [{offsets.Length}]).", "offsets");
            prev = v;
        }
        if (prev != total) throw new ArgumentException($"offsets[{offsets.Length - 1}] = {prev} must equal the {what} = {total}.", "offsets");
    }

    private static void CheckIndex<TIdx>(ReadOnlySpan<TIdx> index, long rows) where TIdx : unmanaged
    {
        for (int i = 0; i < index.Length; i++)
        {
            long v = Kernels.Elements.ToInt64(index[i]);
            if ((ulong)v >= (ulong)rows) throw new ArgumentException($"index[{i}] = {v} is outside [0, {rows}) for values [M = {rows}, D].", "index");
        }
    }
}
