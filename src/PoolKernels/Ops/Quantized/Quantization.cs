using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using PoolKernels.Kernels.Quantized;
using static PoolKernels.SpatialArgs;

namespace PoolKernels;

/// <summary>
/// Quantized embeddings and binary retrieval on every backend (docs/operations.md, "Quantized embeddings and binary
/// retrieval"): <c>quantize</c> (sentence-transformers <c>quantize_embeddings</c>), <c>hamming_topk</c> over packed bits
/// and <c>binary_search</c> (Hamming candidates, then rescoring by the float query). None of them materializes a Q×N
/// matrix: the top-k operations stream the db with a bounded selection per query.
/// </summary>
public static class Quantization
{
    /// <summary>Parses int8 | uint8 | binary | ubinary.</summary>
    /// <exception cref="ArgumentException">Any other name (ParamName "precision").</exception>
    public static QuantizePrecision ParsePrecision(string precision) => precision switch
    {
        "int8" => QuantizePrecision.Int8,
        "uint8" => QuantizePrecision.Uint8,
        "binary" => QuantizePrecision.Binary,
        "ubinary" => QuantizePrecision.Ubinary,
        _ => throw new ArgumentException($"Unknown precision '{precision}'; expected int8, uint8, binary or ubinary.", nameof(precision)),
    };

    /// <summary>The docs/operations.md name of a precision.</summary>
    public static string Name(QuantizePrecision precision) => precision switch
    {
        QuantizePrecision.Int8 => "int8",
        QuantizePrecision.Uint8 => "uint8",
        QuantizePrecision.Binary => "binary",
        QuantizePrecision.Ubinary => "ubinary",
        _ => throw Unknown(precision),
    };

    /// <summary>The output dtype of a precision: I8 for int8 and binary, U8 for uint8 and ubinary.</summary>
    public static DType OutputDType(QuantizePrecision precision) => precision switch
    {
        QuantizePrecision.Int8 or QuantizePrecision.Binary => DType.I8,
        QuantizePrecision.Uint8 or QuantizePrecision.Ubinary => DType.U8,
        _ => throw Unknown(precision),
    };

    /// <summary>Output columns for D dimensions: D for int8/uint8, ceil(D/8) for binary/ubinary.</summary>
    public static int OutputWidth(QuantizePrecision precision, int dim) =>
        IsBinary(precision) ? (int)(((long)dim + 7) / 8) : dim;

    private static bool IsBinary(QuantizePrecision p) => p is QuantizePrecision.Binary or QuantizePrecision.Ubinary;

    private static ArgumentException Unknown(QuantizePrecision p) =>
        new($"Unknown precision {(int)p}; expected int8, uint8, binary or ubinary.", "precision");

    // ------------------------------------------------------------------------------------------------ quantize

    /// <summary>
    /// <c>quantize</c>: embeddings [N,D] F32 → out. <b>int8/uint8</b>: per dimension d, start/end come from
    /// <paramref name="ranges"/> [2,D] (row 0 start, row 1 end), else the min/max over the rows of
    /// <paramref name="calibration"/> [M,D], else over the embeddings themselves; step = (end − start)/255 and
    /// q = clamp(trunc((x − start)/step), 0, 255) (computed in double on every backend, so all agree exactly; step 0 and
    /// NaN x give 0; +inf gives 255), uint8 → U8 [N,D] = q, int8 → I8 [N,D] = q − 128. <b>ubinary</b> → U8 [N, ceil(D/8)] =
    /// packbits(x &gt; 0) (dimension 8i+7−b in bit b of byte i, the last byte zero-padded; 0, −0 and NaN give 0),
    /// <b>binary</b> → I8 = ubinary − 128. Ranges and calibration are ignored by binary/ubinary; ranges win over calibration.
    /// Empty: N = 0 gives [0, ·] (no ranges are needed); D = 0 gives [N, 0]. Cost O(N·D) (+ O(M·D) for calibration), one
    /// pass.
    /// </summary>
    /// <exception cref="ArgumentException">Not [N,D] F32; ranges not [2,D] F32, not finite, or end &lt; start; calibration
    /// not [M,D] F32 with M &gt;= 1; ranges derived from calibration or the embeddings not finite (a NaN or infinity in that
    /// data); an unknown precision; an output of the wrong dtype or shape.</exception>
    public static HostTensor Quantize(this Device device, HostTensor embeddings, QuantizePrecision precision, HostTensor? ranges = null,
        HostTensor? calibration = null)
    {
        ArgumentNullException.ThrowIfNull(embeddings);
        Check.Rank(embeddings.Shape, 2, "embeddings", "[N,D]");
        var dtype = OutputDType(precision);
        using var scope = new HostScope(device);
        var o = scope.Output(dtype, embeddings.Shape[0], OutputWidth(precision, embeddings.Shape[1]));
        device.Quantize(scope.Bind(embeddings), o, precision, scope.BindOptional(ranges), scope.BindOptional(calibration));
        return scope.Result(o);
    }

    [ThreadStatic] private static float[]? _ranges;

    /// <summary><c>quantize</c> on device tensors: output I8|U8 [N,D] (int8|uint8) or [N, ceil(D/8)] (binary|ubinary).</summary>
    public static void Quantize(this Device device, DeviceTensor embeddings, DeviceTensor output, QuantizePrecision precision,
        DeviceTensor? ranges = null, DeviceTensor? calibration = null)
    {
        Devices(device, "embeddings", embeddings, "output", output, "ranges", ranges, "calibration", calibration);
        F32(embeddings, "embeddings");
        Check.Rank(embeddings.Shape, 2, "embeddings", "[N,D]");
        int n = embeddings.Shape[0], d = embeddings.Shape[1];
        var dtype = OutputDType(precision);
        bool pack = IsBinary(precision), signed = dtype == DType.I8;
        ArgumentNullException.ThrowIfNull(output);
        Check.DTypeIs(output.DType, "output", dtype == DType.I8 ? "I8" : "U8", output.DType == dtype);
        Shaped(output, "output", pack ? "[N, ceil(D/8)]" : "[N,D]", n, OutputWidth(precision, d));
        if (!pack)
        {
            if (ranges is not null)
            {
                F32(ranges, "ranges");
                Shaped(ranges, "ranges", "[2,D]", 2, d);
            }
            else if (calibration is not null)
            {
                F32(calibration, "calibration");
                Check.Rank(calibration.Shape, 2, "calibration", "[M,D]");
                if (calibration.Shape[1] != d || calibration.Shape[0] == 0)
                    throw new ArgumentException($"calibration must be [M,D] with M >= 1 and D = {d} (embeddings " +
                        $"{Shape.Format(embeddings.Shape)}), " +
                        $"got {Shape.Format(calibration.Shape)}.", "calibration");
            }
        }
        if (n == 0 || d == 0) return;
        if (pack)
        {
            var packPlan = new LevelsPlan(In.Of(embeddings), default, Out.Of(output), n, d, true, signed);
            Dispatch.Run(device, ref packPlan);
            return;
        }
        // the ranges [start | end] (and one NaN flag per dimension) on the host: given, or computed by a plan, then checked
        // on the host before any output is written (on a GPU that is a read-back of 3·D floats)
        var buf = _ranges is { } r0 && r0.Length >= 3 * d ? r0 : (_ranges = new float[3 * d]);
        Span<float> start = buf.AsSpan(0, d), end = buf.AsSpan(d, d), flags = buf.AsSpan(2 * d, d);
        if (ranges is not null)
        {
            ranges.CopyTo<float>(buf.AsSpan(0, 2 * d));
            CheckRanges(start, end, null);
        }
        else
        {
            var source = calibration ?? embeddings;
            var rangesPlan = new RangesPlan(In.Of(source), Out.Of(buf.AsSpan(0, 3 * d)), source.Shape[0], d);
            Dispatch.Run(device, ref rangesPlan);
            string name = calibration is not null ? "calibration" : "embeddings";
            for (int i = 0; i < d; i++) if (flags[i] != 0) CheckRanges(start, end, name, i);
        }
        var plan = new LevelsPlan(In.Of(embeddings), In.Of<float>(buf.AsSpan(0, 2 * d)), Out.Of(output), n, d, false, signed);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>Per-dimension min and max of data [rows, D] into [start | end | NaN flag] (3·D floats).</summary>
    private readonly ref struct RangesPlan(In data, Out result, int rows, int d) : IPlan
    {
        private readonly In _data = data;
        private readonly Out _result = result;

        public void Reference() => Flag(QuantizeReference.Ranges(_data.As<float>(), rows, d, Start, End));

        public void Simd(CpuDevice cpu) => Flag(QuantizeSimd.Ranges(_data.As<float>(), rows, d, Start, End));

        private Span<float> Start => _result.As<float>()[..d];
        private Span<float> End => _result.As<float>().Slice(d, d);

        private void Flag(int bad)
        {
            var flags = _result.As<float>().Slice(2 * d, d);
            flags.Clear();
            if (bad >= 0) flags[bad] = 1;
        }

        public void Ilgpu(IlgpuScope s)
        {
            var r = s.Out<float>(_result);
            QuantizeIlgpu.Ranges(s.Accelerator, s.Stream, s.In<float>(_data), r, rows, d);
            s.Download(r, _result);
        }
    }

    /// <summary>int8/uint8 levels from ranges [start | end] (2·D floats), or binary/ubinary packing (no ranges).</summary>
    private readonly ref struct LevelsPlan(In x, In ranges, Out output, int n, int d, bool pack, bool signed) : IPlan
    {
        private readonly In _x = x, _ranges = ranges;
        private readonly Out _out = output;

        public void Reference()
        {
            if (pack) QuantizeReference.Pack(_x.As<float>(), _out.Host, n, d, signed);
            else QuantizeReference.Levels(_x.As<float>(), _ranges.As<float>()[..d], _ranges.As<float>().Slice(d, d), _out.Host, n, d,
                signed);
        }

        public void Simd(CpuDevice cpu)
        {
            if (pack) QuantizeSimd.Run(_x.As<float>(), default, default, _out.Host, n, d, true, signed, cpu.Pool);
            else QuantizeSimd.Run(_x.As<float>(), _ranges.As<float>()[..d], _ranges.As<float>().Slice(d, d), _out.Host, n, d, false, signed,
                cpu.Pool);
        }

        public void Ilgpu(IlgpuScope s)
        {
            var o = s.Out<byte>(_out);
            QuantizeIlgpu.Launch(s.Accelerator, s.Stream, s.In<float>(_x), pack ? default : s.In<float>(_ranges), o, n, d, pack, signed);
            s.Download(o, _out);
        }
    }

    // throws for the first dimension whose range is not finite or has end < start; derivedFrom names the data a computed
    // range came from (its non-finite value is the reason), null for given ranges
    internal static void CheckRanges(ReadOnlySpan<float> start, ReadOnlySpan<float> end, string? derivedFrom, int known = -1)
    {
        for (int i = 0; i < start.Length; i++)
        {
            bool bad = i == known || !float.IsFinite(start[i]) || !float.IsFinite(end[i]) || (derivedFrom is null && end[i] < start[i]);
            if (!bad) continue;
            if (derivedFrom is null)
                throw new ArgumentException($"ranges [2,D] must be finite with end >= start; dimension {i} has start " +
                    $"{start[i]}, end {end[i]}.", "ranges");
            throw new ArgumentException($"{derivedFrom}: dimension {i} holds a NaN or infinite value, so its quantize " +
                $"range is not finite.", derivedFrom);
        }
    }

    // ------------------------------------------------------------------------------------------------ hamming_topk

    /// <summary>
    /// <c>hamming_topk</c>: query [Q,W] U8|I8, db [N,W] U8|I8 (packed bits, read as raw bytes: an I8 −1 is 0xFF; query and
    /// db may differ in dtype), 0 &lt;= k &lt;= N → index [Q,k] I64 and distance [Q,k] I32: the k rows with the smallest
    /// popcount(q XOR x), ascending, ties to the lower index. k = 0 or Q = 0 give empty outputs. Cost O(Q·N·W/8) word
    /// operations; memory O(Q·k) (simd: a bounded heap per query while the db streams; GPU: a distance histogram in shared
    /// memory and a second streaming pass).
    /// </summary>
    /// <exception cref="ArgumentException">Not rank 2 U8|I8, W differs between query and db, k outside [0, N], or outputs of
    /// the wrong dtype or shape.</exception>
    public static (HostTensor Index, HostTensor Distance) HammingTopk(this Device device, HostTensor query, HostTensor db, int k)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(db);
        Check.Rank(query.Shape, 2, "query", "[Q,W]");
        using var scope = new HostScope(device);
        var idx = scope.Output(DType.I64, query.Shape[0], Math.Max(k, 0));
        var dist = scope.Output(DType.I32, query.Shape[0], Math.Max(k, 0));
        device.HammingTopk(scope.Bind(query), scope.Bind(db), idx, dist, k);
        return (scope.Result(idx), scope.Result(dist));
    }

    /// <summary><c>hamming_topk</c> on device tensors: index [Q,k] I64, distance [Q,k] I32.</summary>
    public static void HammingTopk(this Device device, DeviceTensor query, DeviceTensor db, DeviceTensor index, DeviceTensor distance,
        int k)
    {
        Devices(device, "query", query, "db", db, "index", index, "distance", distance);
        var (q, n, w) = PackedArgs(query, db, k, "[Q,W]", "[N,W]");
        if (db.Shape[1] != w)
            throw new ArgumentException($"db {Shape.Format(db.Shape)} must have the same W (bytes per row) as query " +
                $"{Shape.Format(query.Shape)}.", "db");
        Outputs(index, "index", distance, "distance", DType.I32, "I32", q, k);
        if (q == 0 || k == 0) return;
        var plan = new HammingPlan(query, db, index, distance, q, n, w, k);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct HammingPlan(DeviceTensor query, DeviceTensor db, DeviceTensor index, DeviceTensor distance, int q, int n, int w,
        int k) : IPlan
    {
        public void Reference() =>
            HammingTopkReference.Run(query.Host.Span, db.Host.Span, L(index), MemoryMarshal.Cast<byte, int>(distance.Host.Span), q, n, w,
                k);

        public void Simd(CpuDevice cpu) =>
            HammingTopkSimd.Run(query.Host.Span, db.Host.Span, L(index), MemoryMarshal.Cast<byte, int>(distance.Host.Span), q, n, w, k,
                cpu.Pool);

        public void Ilgpu(IlgpuScope s) => HammingTopkIlgpu.Launch(s.Accelerator, s.Stream, s.Bytes(query), s.Bytes(db),
            s.View<long>(index),
            s.View<int>(distance), s.Dummy, q, n, w, k);
    }

    // ------------------------------------------------------------------------------------------------ binary_search

    /// <summary>
    /// <c>binary_search</c> (sentence-transformers <c>semantic_search_faiss</c> over a binary index, with rescoring):
    /// query [Q,D] F32, db [N, ceil(D/8)] U8 (ubinary) or I8 (binary: its bits are those of db + 128, the raw byte with the
    /// top bit flipped); padding bits 0. Candidates: the c = min(N, k·<paramref name="rescoreMultiplier"/>) rows nearest to
    /// packbits(query &gt; 0) by Hamming distance (ties lower index). With <paramref name="rescore"/> each candidate scores
    /// Σ_d query_d·(2·bit_d − 1) and the k best are returned (descending, ties lower index); without, the first k
    /// candidates with score D − 2·distance. index [Q,k] I64, score [Q,k] F32. Cost: one Hamming pass over the db
    /// (O(Q·N·D/64) words) plus O(Q·c·D) rescoring; memory O(Q·c).
    /// </summary>
    /// <exception cref="ArgumentException">query not [Q,D] F32; db not [N, ceil(D/8)] U8|I8; k outside [0, N];
    /// rescoreMultiplier &lt; 1 or Q·c candidates beyond 2^31; outputs of the wrong dtype or shape.</exception>
    public static (HostTensor Index, HostTensor Score) BinarySearch(this Device device, HostTensor query, HostTensor db, int k,
        int rescoreMultiplier = 4, bool rescore = true)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(db);
        Check.Rank(query.Shape, 2, "query", "[Q,D]");
        using var scope = new HostScope(device);
        var idx = scope.Output(DType.I64, query.Shape[0], Math.Max(k, 0));
        var sc = scope.Output(DType.F32, query.Shape[0], Math.Max(k, 0));
        device.BinarySearch(scope.Bind(query), scope.Bind(db), idx, sc, k, rescoreMultiplier, rescore);
        return (scope.Result(idx), scope.Result(sc));
    }

    /// <summary><c>binary_search</c> on device tensors: index [Q,k] I64, score [Q,k] F32.</summary>
    public static void BinarySearch(this Device device, DeviceTensor query, DeviceTensor db, DeviceTensor index, DeviceTensor score, int k,
        int rescoreMultiplier = 4, bool rescore = true)
    {
        Devices(device, "query", query, "db", db, "index", index, "score", score);
        F32(query, "query");
        Check.Rank(query.Shape, 2, "query", "[Q,D]");
        ArgumentNullException.ThrowIfNull(db);
        Check.DTypeIs(db.DType, "db", "U8|I8", db.DType is DType.U8 or DType.I8);
        Check.Rank(db.Shape, 2, "db", "[N, ceil(D/8)]");
        int q = query.Shape[0], d = query.Shape[1], n = db.Shape[0], w = (int)(((long)d + 7) / 8);
        if (db.Shape[1] != w)
            throw new ArgumentException($"db {Shape.Format(db.Shape)} must be [N, ceil(D/8)] = [{n}, {w}] for query " +
                $"{Shape.Format(query.Shape)}.", "db");
        if (k < 0 || k > n) throw new ArgumentException($"k must be in [0, N] = [0, {n}] for db {Shape.Format(db.Shape)}, got {k}.", "k");
        if (rescoreMultiplier < 1)
            throw new ArgumentException($"rescoreMultiplier (rescore_multiplier) must be >= 1, got {rescoreMultiplier}.",
                nameof(rescoreMultiplier));
        long c = Math.Min(n, (long)k * rescoreMultiplier);
        if (c * Math.Max(q, 1) > int.MaxValue)
            throw new ArgumentException($"Q·min(N, k·rescore_multiplier) = {q}·{c} candidates exceed 2^31 (query " +
                $"{Shape.Format(query.Shape)}, k {k}).",
                nameof(rescoreMultiplier));
        Outputs(index, "index", score, "score", DType.F32, "F32", q, k);
        if (q == 0 || k == 0) return;
        bool signed = db.DType == DType.I8;
        var plan = new SearchPlan(query, db, index, score, q, n, d, k, rescoreMultiplier, rescore, signed);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct SearchPlan(DeviceTensor query, DeviceTensor db, DeviceTensor index, DeviceTensor score, int q, int n, int d,
        int k,
        int multiplier, bool rescore, bool signed) : IPlan
    {
        public void Reference() =>
            BinarySearchReference.Run(F(query), db.Host.Span, signed, L(index), FOut(score), q, n, d, k, multiplier, rescore);

        public void Simd(CpuDevice cpu) =>
            BinarySearchSimd.Run(F(query), db.Host.Span, signed, L(index), FOut(score), q, n, d, k, multiplier, rescore, cpu.Pool);

        public void Ilgpu(IlgpuScope s) => BinarySearchIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(query), s.Bytes(db), signed,
            s.View<long>(index), s.View<float>(score), s.Dummy, q, n, d, k, multiplier, rescore, s.Temp<byte>);
    }

    private static Span<long> L(DeviceTensor t) => MemoryMarshal.Cast<byte, long>(t.Host.Span);

    private static (int Q, int N, int W) PackedArgs(DeviceTensor query, DeviceTensor db, int k, string qLayout, string dbLayout)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(db);
        Check.DTypeIs(query.DType, "query", "U8|I8", query.DType is DType.U8 or DType.I8);
        Check.DTypeIs(db.DType, "db", "U8|I8", db.DType is DType.U8 or DType.I8);
        Check.Rank(query.Shape, 2, "query", qLayout);
        Check.Rank(db.Shape, 2, "db", dbLayout);
        int n = db.Shape[0];
        if (k < 0 || k > n) throw new ArgumentException($"k must be in [0, N] = [0, {n}] for db {Shape.Format(db.Shape)}, got {k}.", "k");
        return (query.Shape[0], n, query.Shape[1]);
    }

    private static void Outputs(DeviceTensor index, string indexName, DeviceTensor second, string secondName, DType secondType,
        string secondTypeName, int q, int k)
    {
        ArgumentNullException.ThrowIfNull(index, indexName);
        ArgumentNullException.ThrowIfNull(second, secondName);
        Check.DTypeIs(index.DType, indexName, "I64", index.DType == DType.I64);
        Shaped(index, indexName, "[Q,k]", q, k);
        Check.DTypeIs(second.DType, secondName, secondTypeName, second.DType == secondType);
        Shaped(second, secondName, "[Q,k]", q, k);
    }
}
