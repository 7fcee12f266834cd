using System.Runtime.InteropServices;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Ragged;

namespace PoolKernels;

/// <summary>
/// Ragged and graph pooling on every backend: <c>segment_pool</c>, <c>gather_segment_pool</c>, <c>segment_topk</c>
/// and <c>dual_hypergraph</c> (docs/operations.md "Ragged, graph and bilinear pooling").
/// <para>Segments are CSR: <c>offsets [S+1]</c> (I64|I32), offsets[0] = 0, non-decreasing, last = the entry count;
/// segment s holds the entries [offsets[s], offsets[s+1]). Reductions: sum, mean (÷ entry count), max and min
/// (NaN propagates); an empty segment gives a zero row. Work is split by rows, not by segment, so one huge
/// segment beside millions of empty ones runs as fast as even segments.</para>
/// Offsets and indices are validated on the host before any kernel runs, so no kernel ever reads outside its buffers.
/// Device-resident offsets and indices are copied back to the host for that (the ILGPU forms also split the work and size
/// segment_topk's output by the offsets): a DeviceTensor call on an accelerator reads them back once, before any kernel. Float backends
/// accumulate in float, the reference in double.
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
    public static void SegmentPool<TOff>(this Device device, ReadOnlySpan<float> values, ReadOnlySpan<TOff> offsets, Span<float> output,
        int dim,
        SegmentPoolMode mode) where TOff : unmanaged
    {
        ArgumentNullException.ThrowIfNull(device);
        CheckIndexType<TOff>("offsets");
        CheckMode(mode);
        if (dim < 1) throw new ArgumentException($"dim must be >= 1, got {dim}.", nameof(dim));
        if (values.Length % dim != 0) throw new ArgumentException($"values has {values.Length} elements, not a multiple of dim = {dim}.",
            nameof(values));
        long n = values.Length / dim;
        CheckOffsets(offsets, n, "values rows N");
        int segs = offsets.Length - 1;
        if (output.Length != (long)segs * dim) Check.Length(output.Length, (long)segs * dim, "output", $"[S, D] = [{segs}, {dim}]");
        if (segs == 0) return;
        var plan = new SegmentPlanCall(In.Of(values), dim, default, DType.I32, default, In.Of(offsets), DTypes.Of<TOff>(),
            MemoryMarshal.AsBytes(offsets),
            Out.Of(output), mode, gather: false);
        Dispatch.Run(device, ref plan);
    }

    /// <summary><c>segment_pool</c> on device tensors: values [N,D] F32, offsets [S+1] I64|I32, output [S,D] F32. On an
    /// accelerator the offsets are copied to the host once to be validated (and to split the work).</summary>
    public static void SegmentPool(this Device device, DeviceTensor values, DeviceTensor offsets, DeviceTensor output,
        SegmentPoolMode mode) =>
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
    public static void GatherSegmentPool<TIdx, TOff>(this Device device, ReadOnlySpan<float> values, ReadOnlySpan<TIdx> index,
        ReadOnlySpan<TOff> offsets,
        ReadOnlySpan<float> weights, Span<float> output, int dim, SegmentPoolMode mode) where TIdx : unmanaged where TOff : unmanaged
    {
        ArgumentNullException.ThrowIfNull(device);
        CheckIndexType<TIdx>("index");
        CheckIndexType<TOff>("offsets");
        CheckMode(mode);
        if (dim < 1) throw new ArgumentException($"dim must be >= 1, got {dim}.", nameof(dim));
        if (values.Length % dim != 0) throw new ArgumentException($"values has {values.Length} elements, not a multiple of dim = {dim}.",
            nameof(values));
        CheckIndex(index, values.Length / dim);
        CheckOffsets(offsets, index.Length, "index entries K");
        if (!weights.IsEmpty && weights.Length != index.Length) Check.Length(weights.Length, index.Length, "weights",
            $"[K] for index [{index.Length}]");
        int segs = offsets.Length - 1;
        if (output.Length != (long)segs * dim) Check.Length(output.Length, (long)segs * dim, "output", $"[S, D] = [{segs}, {dim}]");
        if (segs == 0) return;
        var plan = new SegmentPlanCall(In.Of(values), dim, In.Of(index), DTypes.Of<TIdx>(), In.Of(weights), In.Of(offsets),
            DTypes.Of<TOff>(),
            MemoryMarshal.AsBytes(offsets), Out.Of(output), mode, gather: true);
        Dispatch.Run(device, ref plan);
    }

    /// <summary><c>gather_segment_pool</c> on device tensors: values [M,D] F32, index [K] I64|I32, offsets [S+1] I64|I32,
    /// weights null or [K] F32, output [S,D] F32. On an accelerator the index and offsets are copied to the host once to be
    /// validated (no kernel may read outside values).</summary>
    public static void GatherSegmentPool(this Device device, DeviceTensor values, DeviceTensor index, DeviceTensor offsets,
        DeviceTensor? weights,
        DeviceTensor output, SegmentPoolMode mode)
    {
        ArgumentNullException.ThrowIfNull(index);
        GatherCore(device, values, index, offsets, weights, output, mode);
    }

    /// <summary><c>gather_segment_pool</c> on host tensors; returns out [S, D] F32.</summary>
    public static HostTensor GatherSegmentPool(this Device device, HostTensor values, HostTensor index, HostTensor offsets,
        HostTensor? weights, SegmentPoolMode mode)
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
        foreach (var (name, arg) in (ReadOnlySpan<(string, DeviceTensor?)>)[("values", values), ("index", index), ("offsets", offsets),
            ("weights", weights), ("output", output)])
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
        if (offsets.DType == DType.I64) CheckOffsets(MemoryMarshal.Cast<byte, long>(ob), entries,
            index is null ? "values rows N" : "index entries K");
        else CheckOffsets(MemoryMarshal.Cast<byte, int>(ob), entries, index is null ? "values rows N" : "index entries K");
        int segs = (int)offsets.Count - 1, dim = values.Shape[1];
        if (output.DType != DType.F32 || output.Shape.Length != 2 || output.Shape[0] != segs || output.Shape[1] != dim)
            throw new ArgumentException($"output must be F32 [S, D] = [{segs}, {dim}], got {output}.", "output");
        if (segs == 0 || dim == 0) return;
        var plan = new SegmentPlanCall(In.Of(values), dim, In.Of(index), index?.DType ?? DType.I32, In.Of(weights), In.Of(offsets),
            offsets.DType, ob,
            Out.Of(output), mode, gather: index is not null);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>The simd work-item size (tunable <c>item</c>, per op, bucketed by segments × dim).</summary>
    private static int ItemFloats(CpuDevice cpu, bool plain, int segs, int dim) =>
        Tuning.Get(cpu, plain ? "segment_pool" : "gather_segment_pool", segs, dim, "item", SegmentPoolSimd.DefaultItemFloats);

    [ThreadStatic] private static SegmentPlan? t_plan;

    /// <summary>A validated segment_pool / gather_segment_pool call. <paramref name="hostOffsets"/> are the offsets' bytes on
    /// the host (validated): the ILGPU form splits the work by them.</summary>
    private ref struct SegmentPlanCall(In values, int dim, In index, DType indexT, In weights, In offsets, DType offsetsT,
        ReadOnlySpan<byte> hostOffsets, Out output, SegmentPoolMode mode, bool gather) : IPlan, ITypedRunner
    {
        private readonly In _values = values, _index = index, _weights = weights, _offsets = offsets;
        private readonly ReadOnlySpan<byte> _hostOffsets = hostOffsets;
        private readonly Out _out = output;
        private CpuDevice? _simd;

        public void Reference() { _simd = null; TypeDispatch.Run(ref this, offsetsT, indexT, DType.I32); }

        public void Simd(CpuDevice cpu) { _simd = cpu; TypeDispatch.Run(ref this, offsetsT, indexT, DType.I32); }

        public readonly void Run<TOff, TIdx, T3>() where TOff : unmanaged where TIdx : unmanaged where T3 : unmanaged
        {
            ReadOnlySpan<TIdx> idx = _index.As<TIdx>();
            ReadOnlySpan<TOff> off = _offsets.As<TOff>();
            ReadOnlySpan<float> v = _values.As<float>(), w = _weights.As<float>();
            if (_simd is not { } cpu) SegmentPoolReference.Run(v, dim, idx, w, off, _out.As<float>(), mode);
            else SegmentPoolSimd.Run(v, dim, idx, w, off, _out.As<float>(), mode, cpu.Pool, ItemFloats(cpu, !gather, off.Length - 1, dim));
        }

        public readonly void Ilgpu(IlgpuScope s)
        {
            var plan = t_plan ??= new SegmentPlan();
            // one (item, feature) thread each: ~1K features of work per item keeps threads busy without long tails
            long rowsPerItem = Math.Max(1, 1024 / dim);
            if (offsetsT == DType.I64) plan.Build(MemoryMarshal.Cast<byte, long>(_hostOffsets), rowsPerItem, 16, 256);
            else plan.Build(MemoryMarshal.Cast<byte, int>(_hostOffsets), rowsPerItem, 16, 256);
            var prm = new SegmentPoolParams { Dim = dim, Mode = (int)mode, HasIndex = gather ? 1 : 0, HasWeights = _weights.Given ? 1 : 0 };
            var output = s.Out<float>(_out);
            // the plan's arrays are uploaded on the stream; the scope synchronizes before they can change (its host write)
            SegmentLauncher(offsetsT, indexT)(s.Accelerator, s.Stream, plan, s.In<byte>(_offsets), s.In<byte>(_index),
                s.In<float>(_weights), s.In<float>(_values), output, prm, s.Upload<SegmentItem>(plan.Items.AsSpan(0, plan.ItemCount)),
                s.Upload<LongSegment>(plan.Longs.AsSpan(0, plan.LongCount)), s.Temp<float>(Math.Max(1L, (long)plan.Slots * dim)));
            s.Download(output, _out);
        }
    }

    private static SegmentPoolLaunch SegmentLauncher(DType offsets, DType index) => (offsets, index) switch
    {
        (DType.I64, DType.I64) => SegmentPoolIlgpu.Launch<long, I64Index, long, I64Index>,
        (DType.I64, _) => SegmentPoolIlgpu.Launch<long, I64Index, int, I32Index>,
        (_, DType.I64) => SegmentPoolIlgpu.Launch<int, I32Index, long, I64Index>,
        _ => SegmentPoolIlgpu.Launch<int, I32Index, int, I32Index>,
    };

    // ---------------------------------------------------------------- segment_topk

    /// <summary>
    /// <c>segment_topk</c> (HyperDrop's per-graph selection) on host tensors: scores [N] F32, offsets [S+1] I64|I32.
    /// Give exactly one of <paramref name="ratio"/> (keep ceil(ratio·n_s), computed in double; 0 &lt; ratio &lt;= 1) or
    /// <paramref name="k"/> (keep min(k, n_s); k &gt;= 1). Returns index [M] I64 (global positions, segment-major, score
    /// descending, NaN first, ties to the lower index) and out_offsets [S+1] I64.
    /// </summary>
    public static (HostTensor Index, HostTensor OutOffsets) SegmentTopk(this Device device, HostTensor scores, HostTensor offsets,
        double? ratio = null, int? k = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = new HostScope(device);
        var (ix, oo) = device.SegmentTopk(scope.Bind(scores), scope.Bind(offsets), ratio, k);
        using (ix) using (oo) return (ix.ToTensor(), oo.ToTensor());
    }

    /// <summary><c>segment_topk</c> on device tensors; returns new device tensors index [M] I64 and out_offsets [S+1] I64
    /// (the caller disposes them). See <see cref="SegmentTopk(Device, HostTensor, HostTensor, double?, int?)"/>. On an accelerator the
    /// offsets are copied to the host once: they are validated and give the output's size.</summary>
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
        long[] off = offsets.DType == DType.I64 ? MemoryMarshal.Cast<byte, long>(ob).ToArray() : Array.ConvertAll(MemoryMarshal.Cast<byte,
            int>(ob).ToArray(), x => (long)x);
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
        var plan = new TopkPlan(scores, offsets, off, outOff, index, outOffsets);
        Dispatch.Run(device, ref plan);
        return (index, outOffsets);
    }

    /// <summary>A validated segment_topk call: <paramref name="off"/> and <paramref name="outOff"/> are the input and output
    /// offsets on the host (they size the output).</summary>
    private readonly struct TopkPlan(DeviceTensor scores, DeviceTensor offsets, long[] off, long[] outOff, DeviceTensor index,
        DeviceTensor outOffsets) : IPlan
    {
        private ReadOnlySpan<float> Scores => MemoryMarshal.Cast<byte, float>(scores.Host.Span);
        private Span<long> Index => MemoryMarshal.Cast<byte, long>(index.Host.Span);

        public void Reference() => SegmentTopkReference.Run<long>(Scores, off, outOff, Index);

        public void Simd(CpuDevice cpu) => SegmentTopkSimd.Run<long>(Scores, off, outOff, Index, cpu.Pool);

        public void Ilgpu(IlgpuScope s)
        {
            int segs = off.Length - 1;
            long longest = 0;
            for (int i = 0; i < segs; i++) longest = Math.Max(longest, off[i + 1] - off[i]);
            SegmentTopkLaunch launch = offsets.DType == DType.I64
                ? SegmentTopkIlgpu.Launch<long, I64Index>
                : SegmentTopkIlgpu.Launch<int, I32Index>;
            launch(s.Accelerator, s.Stream, s.View<float>(scores), s.Bytes(offsets), s.View<long>(outOffsets), s.View<long>(index),
                (int)scores.Count,
                segs, longest, s.Upload<long>(off), s.Temp<byte>);
        }
    }

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
    public static IReadOnlyDictionary<string, HostTensor> DualHypergraph(this Device device, HostTensor edgeIndex, int numNodes,
        bool addLoops = true)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(edgeIndex);
        if (edgeIndex.Shape.Length != 2 || edgeIndex.Shape[0] != 2)
            throw new ArgumentException($"edge_index must be [2, E], got {Shape.Format(edgeIndex.Shape)}.", nameof(edgeIndex));
        Check.DTypeIs(edgeIndex.DType, nameof(edgeIndex), "I64|I32", edgeIndex.DType.IsIndex());
        if (numNodes < 0) throw new ArgumentException($"num_nodes must be >= 0, got {numNodes}.", nameof(numNodes));
        var e = edgeIndex.ToInt64s();
        int m = edgeIndex.Shape[1];
        for (int i = 0; i < e.Length; i++)
            if (e[i] < 0 || e[i] >= numNodes)
                throw new ArgumentException($"edge_index[{i / m}, {i % m}] = {e[i]} is outside [0, {numNodes}) for num_nodes = {numNodes}.",
                    nameof(edgeIndex));
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
        if (mode < SegmentPoolMode.Sum || mode > SegmentPoolMode.Min)
            throw new ArgumentException($"mode {(int)mode} is not sum, mean, max or min.", "mode");
    }

    private static void CheckIndexType<T>(string name)
    {
        if (!Kernels.Elements.IsIndex<T>())
            throw new ArgumentException($"{Check.D(name)} element type {typeof(T).Name} is not long or int.", name);
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
            if (v < prev) throw new ArgumentException($"offsets must be non-decreasing: offsets[{i}] = {v} < offsets[{i - 1}] = {prev} "
                + $"(offsets [{offsets.Length}]).", "offsets");
            prev = v;
        }
        if (prev != total) throw new ArgumentException($"offsets[{offsets.Length - 1}] = {prev} must equal the {what} = {total}.",
            "offsets");
    }

    private static void CheckIndex<TIdx>(ReadOnlySpan<TIdx> index, long rows) where TIdx : unmanaged
    {
        for (int i = 0; i < index.Length; i++)
        {
            long v = Kernels.Elements.ToInt64(index[i]);
            if ((ulong)v >= (ulong)rows) throw new ArgumentException($"index[{i}] = {v} is outside [0, {rows}) for values [M = {rows}, D].",
                "index");
        }
    }
}
