using System.Runtime.InteropServices;
using PoolKernels.Kernels.Quantized;

namespace PoolKernels;

public static partial class SequencePooling
{
    /// <summary>
    /// <c>sequence_pool</c> with the embedding pipeline's quantization fused at its end: pool → truncate to
    /// <c>dims</c> → normalize → <c>quantize</c> (DESIGN.md's rules: int8|uint8 levels from <paramref name="ranges"/>,
    /// binary|ubinary packbits(x &gt; 0)), in one call. Output I8|U8 [B, dims] for int8|uint8, [B, ceil(dims/8)] for
    /// binary|ubinary. The pooled float rows never leave the call: simd quantizes them right after pooling while they are
    /// in cache (a per-thread scratch of B·dims floats, no per-call allocation once warm), ILGPU pools into a device
    /// temporary and quantizes it on the same stream (one synchronization at the end, none inside a batch).
    /// int8/uint8 need <paramref name="ranges"/> [2, dims] F32 (row 0 start, row 1 end: calibrated once, e.g. as
    /// <see cref="Quantization.Quantize(Device, HostTensor, QuantizePrecision, HostTensor?, HostTensor?)"/> derives
    /// them from a calibration set — a per-row fused step cannot derive them from the batch itself); binary/ubinary take
    /// none. The ranges are read to the host and checked (finite, end &gt;= start) before any kernel runs: on a GPU that
    /// is a read-back of 2·dims floats.
    /// </summary>
    /// <exception cref="ArgumentException">Anything the float overload rejects; an unknown precision; ranges missing (int8,
    /// uint8), given (binary, ubinary), not [2, dims] F32, not finite or end &lt; start; an output of the wrong dtype or
    /// shape.</exception>
    public static void SequencePool(this Device device, DeviceTensor hidden, DeviceTensor attentionMask, DeviceTensor output,
        SequencePoolOptions options, QuantizePrecision precision, DeviceTensor? ranges = null, DeviceTensor? prefixLen = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(attentionMask);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(options);
        foreach (var (name, arg) in (ReadOnlySpan<(string, DeviceTensor?)>)[(nameof(hidden), hidden),
            (nameof(attentionMask), attentionMask), (nameof(output), output), (nameof(ranges), ranges), (nameof(prefixLen), prefixLen)])
            Check.SameDevice(device, name, arg);
        Check.Rank(hidden.Shape, 3, nameof(hidden), "[B,T,D]");
        Check.DTypeIs(hidden.DType, nameof(hidden), "F32|F16|BF16", hidden.DType.IsFloatInput());
        Check.DTypeIs(attentionMask.DType, nameof(attentionMask), "I64|I32|U8|BOOL", attentionMask.DType.IsMask());
        var dtype = Quantization.OutputDType(precision); // an undefined precision throws here
        bool pack = precision is QuantizePrecision.Binary or QuantizePrecision.Ubinary, signed = dtype == DType.I8;
        int b = hidden.Shape[0], t = hidden.Shape[1], d = hidden.Shape[2];
        if (prefixLen is not null)
        {
            Check.DTypeIs(prefixLen.DType, nameof(prefixLen), "I64|I32", prefixLen.DType.IsIndex());
            Check.ShapeIs(prefixLen.Shape, [b], nameof(prefixLen), "[B]");
        }
        CheckMaskShape(attentionMask.Shape, b, t, hidden.Shape);
        int dims = Validate(b, t, d, hidden.Count, attentionMask.Count, prefixLen is null ? 0 : b, default, (long)b * options.Validate(d),
            options);
        int width = Quantization.OutputWidth(precision, dims);
        Check.DTypeIs(output.DType, nameof(output), signed ? "I8" : "U8", output.DType == dtype);
        Check.ShapeIs(output.Shape, [b, width], nameof(output), pack ? "[B, ceil(dims/8)]" : "[B, dims]");
        if (!pack && ranges is not null)
        {
            Check.DTypeIs(ranges.DType, nameof(ranges), "F32", ranges.DType == DType.F32);
            Check.ShapeIs(ranges.Shape, [2, dims], nameof(ranges), "[2, dims]");
        }
        HostRanges(precision, dims, ranges is null ? null : ranges.Count, ranges is null ? default : Fill(ranges, dims));
        if (b == 0 || width == 0) return;
        var plan = new QuantizedPlan(new Plan(In.Of(hidden), hidden.DType, In.Of(attentionMask), attentionMask.DType, In.Of(prefixLen),
            prefixLen?.DType ?? DType.I64, default, b, t, d, dims, options, dims, 0), In.Of(ranges), Out.Of(output), b, dims, pack, signed);
        Dispatch.Run(device, ref plan);

        static ReadOnlySpan<float> Fill(DeviceTensor r, int dims)
        {
            var buf = t_ranges is { } r0 && r0.Length >= 2 * dims ? r0 : (t_ranges = new float[2 * dims]);
            r.CopyTo<float>(buf.AsSpan(0, 2 * dims));
            return buf.AsSpan(0, 2 * dims);
        }
    }

    /// <summary>The fused <c>sequence_pool</c> + <c>quantize</c> over host spans: hidden [B,T,D] (float, Half or
    /// BFloat16), attentionMask [B,T] (long, int, byte or bool), output [B, dims] (int8/uint8 levels as bytes; int8 as
    /// two's complement) or [B, ceil(dims/8)] (binary/ubinary), ranges empty (binary/ubinary) or [2, dims] (int8/uint8).
    /// See the DeviceTensor overload.</summary>
    public static void SequencePool<T, TMask>(this Device device, ReadOnlySpan<T> hidden, ReadOnlySpan<TMask> attentionMask,
        Span<byte> output, int batch, int seqLen, int dim, SequencePoolOptions options, QuantizePrecision precision,
        ReadOnlySpan<float> ranges = default, ReadOnlySpan<long> prefixLen = default)
        where T : unmanaged where TMask : unmanaged
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        Check.FloatInput<T>(nameof(hidden));
        Check.Mask<TMask>(nameof(attentionMask));
        var dtype = Quantization.OutputDType(precision);
        bool pack = precision is QuantizePrecision.Binary or QuantizePrecision.Ubinary;
        int dims = options.Validate(dim);
        dims = Validate(batch, seqLen, dim, hidden.Length, attentionMask.Length, prefixLen.Length, prefixLen, (long)batch * dims, options);
        int width = Quantization.OutputWidth(precision, dims);
        if (output.Length != (long)batch * width)
            Check.Length(output.Length, (long)batch * width, nameof(output), pack ? $"[B, ceil(dims/8)] = [{batch}, {width}]"
                : $"[B, dims] = [{batch}, {dims}]");
        HostRanges(precision, dims, ranges.IsEmpty ? null : ranges.Length, ranges);
        if (batch == 0 || width == 0) return;
        var pool = new Plan(In.Of(hidden), DTypes.Of<T>(), In.Of(attentionMask), DTypes.Of<TMask>(), In.Of(prefixLen), DType.I64,
            default, batch, seqLen, dim, dims, options, dims, 0);
        var plan = new QuantizedPlan(pool, In.Of(ranges), Out.Of(output), batch, dims, pack, dtype == DType.I8);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>Checks the ranges a precision needs: none for binary/ubinary, [2, dims] finite with end &gt;= start for
    /// int8/uint8 (<paramref name="count"/> null when none were given).</summary>
    private static ReadOnlySpan<float> HostRanges(QuantizePrecision precision, int dims, long? count, ReadOnlySpan<float> values)
    {
        bool pack = precision is QuantizePrecision.Binary or QuantizePrecision.Ubinary;
        if (pack)
        {
            if (count is not null)
                throw new ArgumentException($"{Quantization.Name(precision)} takes no ranges (it packs the signs).", "ranges");
            return default;
        }
        if (count is null)
            throw new ArgumentException($"{Quantization.Name(precision)} needs ranges [2, dims] = [2, {dims}] (calibrated once; " +
                "the fused step cannot derive them from the batch).", "ranges");
        if (count != 2L * dims) Check.Length(count.Value, 2L * dims, "ranges", $"[2, dims] = [2, {dims}]");
        Quantization.CheckRanges(values[..dims], values.Slice(dims, dims), null);
        return values;
    }

    /// <summary>The fused <c>sequence_pool</c> + <c>quantize</c> on host tensors; returns I8|U8 [B, dims] or
    /// [B, ceil(dims/8)] (see the DeviceTensor overload).</summary>
    public static HostTensor SequencePool(this Device device, HostTensor hidden, HostTensor attentionMask, SequencePoolOptions options,
        QuantizePrecision precision, HostTensor? ranges = null, HostTensor? prefixLen = null)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(options);
        Check.Rank(hidden.Shape, 3, nameof(hidden), "[B,T,D]");
        int dims = options.Validate(hidden.Shape[2]);
        CheckHostPrefix(prefixLen);
        using var scope = new HostScope(device);
        var o = scope.Output(Quantization.OutputDType(precision), hidden.Shape[0], Quantization.OutputWidth(precision, dims));
        device.SequencePool(scope.Bind(hidden), scope.Bind(attentionMask), o, options, precision, scope.BindOptional(ranges),
            scope.BindOptional(prefixLen));
        return scope.Result(o);
    }

    [ThreadStatic] private static float[]? t_ranges, t_pooled;

    /// <summary>The float pooling plan into a scratch of B·dims floats, then the quantize kernel of the same backend.</summary>
    private readonly ref struct QuantizedPlan(Plan pool, In ranges, Out output, int batch, int dims, bool pack, bool signed) : IPlan
    {
        private readonly Plan _pool = pool;
        private readonly In _ranges = ranges;
        private readonly Out _out = output;

        private static Span<float> Scratch(int n) =>
            (t_pooled is { } s && s.Length >= n ? s : (t_pooled = new float[n])).AsSpan(0, n);

        public void Reference()
        {
            var x = Scratch(batch * dims);
            var p = _pool.Into(Out.Of(x));
            p.Reference();
            if (pack) QuantizeReference.Pack(x, _out.Host, batch, dims, signed);
            else QuantizeReference.Levels(x, Start, End, _out.Host, batch, dims, signed);
        }

        public void Simd(CpuDevice cpu)
        {
            var x = Scratch(batch * dims);
            var p = _pool.Into(Out.Of(x));
            p.Simd(cpu);
            QuantizeSimd.Run(x, pack ? default : Start, pack ? default : End, _out.Host, batch, dims, pack, signed, cpu.Pool);
        }

        private ReadOnlySpan<float> Start => _ranges.As<float>()[..dims];
        private ReadOnlySpan<float> End => _ranges.As<float>().Slice(dims, dims);

        public void Ilgpu(IlgpuScope s)
        {
            var x = s.Temp<float>((long)batch * dims);
            _pool.LaunchInto(s, x);
            var o = s.Out<byte>(_out);
            QuantizeIlgpu.Launch(s.Accelerator, s.Stream, x, pack ? default : s.In<float>(_ranges), o, batch, dims, pack, signed);
            s.Download(o, _out);
        }
    }
}
