using PoolKernels.Kernels.Signal;

namespace PoolKernels;

/// <summary>
/// <c>pool1d</c> (PyTorch avg_pool1d / max_pool1d) on every backend, and its streaming form
/// (<see cref="StreamingPool1d"/>, StreamiNNC). x [B,C,L] F32 → out [B,C,Lo], Lo = floor((L + 2·padding - kernel)/stride) + 1
/// (0 when the padded signal is shorter than one window). Window o covers [o·stride - padding, o·stride - padding + kernel).
/// avg divides by kernel (padded zeros count, count_include_pad=True); max takes the real samples only (padding
/// never wins, NaN propagates). No ceil_mode. padding must be &lt;= kernel/2 (as PyTorch), so every window holds a real sample.
/// </summary>
public static class SignalPooling
{
    /// <summary>Parses avg|max.</summary>
    public static Pool1dMode ParseMode(string mode) => mode switch
    {
        "avg" => Pool1dMode.Avg,
        "max" => Pool1dMode.Max,
        _ => throw new ArgumentException($"Unknown pool1d mode '{mode}'; expected avg or max.", nameof(mode)),
    };

    /// <summary><c>pool1d</c> over host spans: x [rows, length] (rows = B·C), output [rows, Lo].</summary>
    public static void Pool1d(this Device device, ReadOnlySpan<float> x, Span<float> output, int rows, int length, Pool1dMode mode,
        int kernel,
        int stride = -1, int padding = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (stride == -1) stride = kernel;
        CheckWindow(mode, kernel, stride, padding);
        Check.NonNegative(rows, "rows");
        Check.NonNegative(length, "length");
        if (x.Length != (long)rows * length) Check.Length(x.Length, (long)rows * length, "x", $"[B·C, L] = [{rows}, {length}]");
        var p = Pool1dParams.Whole(rows, length, kernel, stride, padding, mode);
        if (output.Length != (long)rows * p.NOut) Check.Length(output.Length, (long)rows * p.NOut, "output",
            $"[B·C, Lo] = [{rows}, {p.NOut}]");
        Run(device, x, output, p);
    }

    /// <summary><c>pool1d</c> on device tensors: x [B,C,L] F32, output [B,C,Lo] F32.</summary>
    public static void Pool1d(this Device device, DeviceTensor x, DeviceTensor output, Pool1dMode mode, int kernel, int stride = -1,
        int padding = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(output);
        Check.SameDevice(device, "x", x);
        Check.SameDevice(device, "output", output);
        if (stride == -1) stride = kernel;
        CheckWindow(mode, kernel, stride, padding);
        Check.Rank(x.Shape, 3, "x", "[B,C,L]");
        Check.DTypeIs(x.DType, "x", "F32", x.DType == DType.F32);
        int b = x.Shape[0], c = x.Shape[1], l = x.Shape[2];
        var p = Pool1dParams.Whole(b * c, l, kernel, stride, padding, mode);
        if (output.DType != DType.F32 || output.Shape.Length != 3 || output.Shape[0] != b || output.Shape[1] != c
            || output.Shape[2] != p.NOut)
            throw new ArgumentException($"output must be F32 [B,C,Lo] = [{b}, {c}, {p.NOut}], got {output}.", "output");
        var plan = new Plan(In.Of(x), Out.Of(output), p);
        Dispatch.Run(device, ref plan);
    }

    /// <summary><c>pool1d</c> on a host tensor x [B,C,L] F32; returns out [B,C,Lo].</summary>
    public static HostTensor Pool1d(this Device device, HostTensor x, Pool1dMode mode, int kernel, int stride = -1, int padding = 0)
    {
        ArgumentNullException.ThrowIfNull(x);
        Check.Rank(x.Shape, 3, "x", "[B,C,L]");
        if (stride == -1) stride = kernel;
        CheckWindow(mode, kernel, stride, padding);
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, x.Shape[0], x.Shape[1], Pool1dParams.OutLength(x.Shape[2], kernel, stride, padding));
        device.Pool1d(scope.Bind(x), o, mode, kernel, stride, padding);
        return scope.Result(o);
    }

    internal static void CheckWindow(Pool1dMode mode, int kernel, int stride, int padding)
    {
        if (mode is not (Pool1dMode.Avg or Pool1dMode.Max)) throw new ArgumentException($"mode {(int)mode} is not avg or max.", "mode");
        if (kernel < 1) throw new ArgumentException($"kernel must be >= 1, got {kernel}.", "kernel");
        if (stride < 1) throw new ArgumentException($"stride must be >= 1, got {stride}.", "stride");
        if (padding < 0 || padding > kernel / 2)
            throw new ArgumentException($"padding must be in [0, kernel/2] = [0, {kernel / 2}], got {padding}.", "padding");
    }

    /// <summary>Runs validated windows on host memory (uploaded and downloaded on ILGPU devices, one synchronization).</summary>
    internal static void Run(Device device, ReadOnlySpan<float> x, Span<float> output, in Pool1dParams p)
    {
        var plan = new Plan(In.Of(x), Out.Of(output[..(p.Rows * p.NOut)]), p);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>A validated pool1d call: rows of x (BufLen apart), output [rows, NOut].</summary>
    private readonly ref struct Plan(In x, Out output, Pool1dParams p) : IPlan
    {
        private readonly In _x = x;
        private readonly Out _out = output;

        public void Reference()
        {
            if (p.Rows > 0 && p.NOut > 0) Pool1dReference.Run(_x.As<float>(), _out.As<float>(), p);
        }

        public void Simd(CpuDevice cpu)
        {
            if (p.Rows > 0 && p.NOut > 0) Pool1dSimd.Run(_x.As<float>(), _out.As<float>(), p, -1, cpu.Pool);
        }

        public void Ilgpu(IlgpuScope s)
        {
            if (p.Rows == 0 || p.NOut == 0) return;
            var output = s.Out<float>(_out);
            Pool1dIlgpu.Launch(s.Accelerator, s.Stream, s.In<float>(_x), output, p, p.NOut);
            s.Download(output, _out);
        }
    }
}

/// <summary>
/// Streaming <c>pool1d</c> (StreamiNNC): a signal [B, C, ·] pushed in chunks gives exactly the outputs of
/// <see cref="SignalPooling.Pool1d(Device, HostTensor, Pool1dMode, int, int, int)"/> over the whole stream. Each
/// <see cref="Push(HostTensor)"/> returns the windows that the samples seen so far complete ([B, C, n], n may be 0);
/// <see cref="Complete"/> returns the last ones, whose right part is padding. Only the samples still needed by a
/// future window are kept (at most kernel + chunk per row). Every chunk's length must be a multiple of the
/// stride, so each chunk advances the output by a whole number of hops; other lengths are rejected. Not thread-safe.
/// </summary>
public sealed class StreamingPool1d
{
    private readonly Device _device;
    private readonly int _rows, _batch, _channels, _kernel, _stride, _padding;
    private readonly Pool1dMode _mode;
    private float[] _buf = [];
    private int _held;          // samples held per row, stream positions [_bufStart, _bufStart + _held)
    private long _bufStart, _seen, _next;
    private bool _done;

    /// <summary>A pooler for <paramref name="batch"/>·<paramref name="channels"/> rows with pool1d's parameters
    /// (stride -1 = kernel).</summary>
    public StreamingPool1d(Device device, int batch, int channels, Pool1dMode mode, int kernel, int stride = -1, int padding = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (stride == -1) stride = kernel;
        SignalPooling.CheckWindow(mode, kernel, stride, padding);
        Check.NonNegative(batch, nameof(batch));
        Check.NonNegative(channels, nameof(channels));
        _device = device; _batch = batch; _channels = channels; _rows = batch * channels;
        _mode = mode; _kernel = kernel; _stride = stride; _padding = padding;
    }

    /// <summary>Samples pushed per row so far.</summary>
    public long SamplesSeen => _seen;
    /// <summary>Outputs returned per row so far.</summary>
    public long OutputsEmitted => _next;

    /// <summary>Appends chunk [B, C, n] F32 (n a multiple of stride) and returns the newly completed windows [B, C, m].</summary>
    /// <exception cref="ArgumentException">The chunk's shape or dtype is wrong, or n is not a multiple of the stride.</exception>
    /// <exception cref="InvalidOperationException">After <see cref="Complete"/>.</exception>
    public HostTensor Push(HostTensor chunk)
    {
        ArgumentNullException.ThrowIfNull(chunk);
        if (_done) throw new InvalidOperationException("The stream was completed; start a new StreamingPool1d.");
        if (chunk.DType != DType.F32 || chunk.Shape.Length != 3 || chunk.Shape[0] != _batch || chunk.Shape[1] != _channels)
            throw new ArgumentException($"chunk must be F32 [B, C, n] = [{_batch}, {_channels}, n], got {chunk}.", nameof(chunk));
        int n = chunk.Shape[2];
        if (n % _stride != 0)
            throw new ArgumentException($"chunk length {n} is not a multiple of stride {_stride}: streamed pool1d stays aligned with "
                + $"pool1d over the " +
                $"whole stream only when every chunk is a whole number of hops (buffer samples to a multiple of {_stride}).",
                    nameof(chunk));
        // append
        if (Cap < _held + n)
        {
            int cap = Math.Max(16, 2 * (_held + n));
            var nb = new float[checked(_rows * cap)];
            for (int r = 0; r < _rows; r++) _buf.AsSpan(r * Cap, _held).CopyTo(nb.AsSpan(r * cap));
            _buf = nb; Cap = cap;
        }
        var src = chunk.AsSpan<float>();
        for (int r = 0; r < _rows; r++) src.Slice(r * n, n).CopyTo(_buf.AsSpan(r * Cap + _held));
        _held += n; _seen += n;
        // windows o with o·s - p + k <= seen are final
        long ready = _seen + _padding - _kernel < 0 ? 0 : (_seen + _padding - _kernel) / _stride + 1;
        return Emit(ready, _seen);
    }

    /// <summary>Ends the stream: returns the remaining windows [B, C, m] (their right part is padding). Pool1d's Lo
    /// outputs have then all been returned, in order.</summary>
    public HostTensor Complete()
    {
        if (_done) throw new InvalidOperationException("The stream was already completed.");
        _done = true;
        return Emit(Pool1dParams.OutLength(_seen, _kernel, _stride, _padding), _seen);
    }

    private int Cap { get; set; }

    private HostTensor Emit(long upTo, long validEnd)
    {
        int count = (int)Math.Max(0, upTo - _next);
        var result = HostTensor.Zeros(DType.F32, _batch, _channels, count);
        if (count > 0 && _rows > 0)
        {
            var p = new Pool1dParams
            {
                Rows = _rows,
                BufLen = Cap,
                NOut = count,
                BufStart = _bufStart,
                ValidEnd = validEnd,
                O0 = _next,
                Kernel = _kernel,
                Stride = _stride,
                Padding = _padding,
                Mode = (int)_mode,
            };
            SignalPooling.Run(_device, _buf.AsSpan(0, _rows * Cap), result.AsSpan<float>(), p);
        }
        _next += count;
        // drop the samples no later window needs
        long keepFrom = Math.Clamp(_next * _stride - _padding, _bufStart, _bufStart + _held);
        int drop = (int)(keepFrom - _bufStart);
        if (drop > 0)
        {
            for (int r = 0; r < _rows; r++) _buf.AsSpan(r * Cap + drop, _held - drop).CopyTo(_buf.AsSpan(r * Cap));
            _held -= drop; _bufStart = keepFrom;
        }
        return result;
    }
}
