using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels;

/// <summary>
/// One validated call of an operation: its three backend forms. An operation checks its arguments once, into a plan
/// (a struct; a <c>ref struct</c> when it holds spans), and hands it to <see cref="Dispatch.Run{TPlan}"/>, so every
/// backend sees exactly the same validated call. See CONTRIBUTING.md, "Adding an operation".
/// </summary>
internal interface IPlan
{
    /// <summary>The scalar oracle (<c>reference</c>).</summary>
    void Reference();

    /// <summary>The managed SIMD form (<c>simd</c>): <paramref name="cpu"/> gives the worker pool and the tuning key.</summary>
    void Simd(CpuDevice cpu);

    /// <summary>The ILGPU form: enqueue the kernels on <paramref name="s"/>'s stream. The scope holds the device lock, uploads
    /// host inputs, hands out temporaries and the dummy view, and synchronizes once when the plan returns.</summary>
    void Ilgpu(IlgpuScope s);
}

/// <summary>The only place in the library that routes a call to a backend.</summary>
internal static class Dispatch
{
    /// <summary>Runs <paramref name="plan"/> on <paramref name="device"/>. On an ILGPU device: under the device lock, then one
    /// synchronization, then the temporaries are freed. Inside a <see cref="DeviceBatch"/> a call whose results stay on the
    /// device does not synchronize (the batch's end does); one that copies into host memory always does.</summary>
    public static void Run<TPlan>(Device device, ref TPlan plan) where TPlan : IPlan, allows ref struct
    {
        switch (device)
        {
            case CpuDevice cpu:
                cpu.ThrowIfDisposed();
                if (cpu.Kind == BackendKind.Reference) plan.Reference();
                else plan.Simd(cpu);
                break;
            case IlgpuDevice g:
                lock (g.Gate)
                {
                    g.ThrowIfDisposed();
                    var s = new IlgpuScope(g);
                    bool done = false;
                    try
                    {
                        plan.Ilgpu(s);
                        s.Complete();
                        done = true;
                    }
                    finally { s.Release(done); }
                }
                break;
            default:
                throw new NotSupportedException($"Unknown device type {device.GetType().Name}.");
        }
    }
}

/// <summary>An input of a plan: host memory (span overloads; every tensor of a CPU device) or a device tensor
/// (uploaded by nothing: the kernel reads it in place), optionally a byte range of it.</summary>
internal readonly ref struct In
{
    /// <summary>The bytes on the host (empty for an ILGPU tensor).</summary>
    public readonly ReadOnlySpan<byte> Host;
    /// <summary>The device tensor, or null for host memory.</summary>
    public readonly DeviceTensor? Tensor;
    /// <summary>The byte range of <see cref="Tensor"/> (Length -1: to its end).</summary>
    public readonly long Offset, Length;

    private In(ReadOnlySpan<byte> host, DeviceTensor? tensor, long offset, long length)
    {
        Host = host; Tensor = tensor; Offset = offset; Length = length;
    }

    /// <summary>Host values.</summary>
    public static In Of<T>(ReadOnlySpan<T> values) where T : unmanaged => new(MemoryMarshal.AsBytes(values), null, 0, -1);

    /// <summary>A device tensor (null: absent).</summary>
    public static In Of(DeviceTensor? t) => t is null ? default : new(t.Host.Span, t, 0, -1);

    /// <summary>True when given (a tensor, or a non-empty span).</summary>
    public bool Given => Tensor is not null || !Host.IsEmpty;

    /// <summary>The host bytes as <typeparamref name="T"/> (CPU forms).</summary>
    public ReadOnlySpan<T> As<T>() where T : unmanaged => MemoryMarshal.Cast<byte, T>(Host);

    /// <summary>Bytes [offset, offset + length) of this input.</summary>
    public In Slice(long offset, long length) => Tensor is null
        ? new(Host.Slice(checked((int)offset), checked((int)length)), null, 0, -1)
        : new(Host.IsEmpty ? default : Host.Slice(checked((int)offset), checked((int)length)), Tensor, Offset + offset, length);
}

/// <summary>An output of a plan: host memory or a device tensor (see <see cref="In"/>).</summary>
internal readonly ref struct Out
{
    /// <summary>The bytes on the host (empty for an ILGPU tensor).</summary>
    public readonly Span<byte> Host;
    /// <summary>The device tensor, or null for host memory.</summary>
    public readonly DeviceTensor? Tensor;

    private Out(Span<byte> host, DeviceTensor? tensor) { Host = host; Tensor = tensor; }

    /// <summary>Host values.</summary>
    public static Out Of<T>(Span<T> values) where T : unmanaged => new(MemoryMarshal.AsBytes(values), null);

    /// <summary>A device tensor (null: absent).</summary>
    public static Out Of(DeviceTensor? t) => t is null ? default : new(t.Host.Span, t);

    /// <summary>True when given.</summary>
    public bool Given => Tensor is not null || !Host.IsEmpty;

    /// <summary>The host bytes as <typeparamref name="T"/> (CPU forms).</summary>
    public Span<T> As<T>() where T : unmanaged => MemoryMarshal.Cast<byte, T>(Host);
}

/// <summary>
/// What an ILGPU plan runs with: the accelerator and its stream (the device lock is held), views of device tensors (the
/// dummy view for absent or empty ones), uploads of host inputs, temporaries and downloads into host outputs. Created by
/// <see cref="Dispatch.Run{TPlan}"/> for one call; everything it allocated is freed after the call's synchronization (or,
/// inside a <see cref="DeviceBatch"/>, at the batch's end).
/// </summary>
internal sealed class IlgpuScope
{
    private List<MemoryBuffer>? _temps;
    private bool _hostWrite;
    private readonly DeviceBatch? _batch;

    public IlgpuScope(IlgpuDevice device)
    {
        Device = device;
        Accelerator = device.Accelerator;
        Stream = Accelerator.DefaultStream;
        _batch = DeviceBatch.Current(device);
    }

    /// <summary>The device.</summary>
    public IlgpuDevice Device { get; }
    /// <summary>The accelerator.</summary>
    public Accelerator Accelerator { get; }
    /// <summary>The stream every kernel of the call is enqueued on.</summary>
    public AcceleratorStream Stream { get; }

    /// <summary>A small zeroed buffer for absent inputs (a kernel told an input is absent never reads it).</summary>
    public ArrayView<byte> Dummy => Device.Dummy.View;

    /// <summary>The bytes of <paramref name="t"/> (the dummy view when empty).</summary>
    public ArrayView<byte> Bytes(DeviceTensor t) => t.Bytes == 0 ? Dummy : t.View;

    /// <summary>Bytes [offset, offset + length) of <paramref name="t"/> (the dummy view when empty).</summary>
    public ArrayView<byte> Bytes(DeviceTensor t, long offset, long length) => length == 0 ? Dummy : t.View.SubView(offset, length);

    /// <summary>The tensor's elements as <typeparamref name="T"/>; the dummy view when absent or empty.</summary>
    public ArrayView<T> View<T>(DeviceTensor? t) where T : unmanaged => (t is null ? Dummy : Bytes(t)).Cast<T>();

    /// <summary>An input: the tensor (range) in place, or the host bytes uploaded; the dummy view when absent or empty.</summary>
    public ArrayView<T> In<T>(in In x) where T : unmanaged
    {
        if (x.Tensor is { } t) return (x.Length < 0 ? Bytes(t, x.Offset, t.Bytes - x.Offset) : Bytes(t, x.Offset, x.Length)).Cast<T>();
        return Upload(x.As<T>());
    }

    /// <summary>An output: the tensor in place, or a temporary that <see cref="Download{T}(ArrayView{T}, in Out)"/> copies back.</summary>
    public ArrayView<T> Out<T>(in Out o) where T : unmanaged =>
        o.Tensor is { } t ? Bytes(t).Cast<T>() : Temp<T>(o.Host.Length / System.Runtime.CompilerServices.Unsafe.SizeOf<T>());

    /// <summary>Copies a temporary output back into the host output (nothing for a device tensor output). The copy is
    /// enqueued; the call synchronizes before it returns, so the host memory holds the result when the operation returns.</summary>
    public void Download<T>(ArrayView<T> view, in Out o) where T : unmanaged
    {
        if (o.Tensor is not null || o.Host.IsEmpty) return;
        view.SubView(0, o.Host.Length / System.Runtime.CompilerServices.Unsafe.SizeOf<T>()).CopyToCPU(Stream, o.As<T>());
        _hostWrite = true;
    }

    /// <summary>Host values in a temporary device buffer (the copy is enqueued on the stream).</summary>
    public ArrayView<T> Upload<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        if (values.IsEmpty) return Dummy.Cast<T>();
        var v = Temp<T>(values.Length);
        v.CopyFromCPU(Stream, values);
        _hostWrite = true; // the host memory must outlive the copy: synchronize before returning
        return v;
    }

    /// <summary>An immutable host array's device copy, uploaded once per device (see <see cref="IlgpuDevice.Constant"/>): no
    /// synchronization on later calls, unlike <see cref="Upload{T}"/>. The dummy view when empty.</summary>
    public ArrayView<float> Constant(float[] values) => values.Length == 0 ? Dummy.Cast<float>() : Device.Constant(values);

    /// <summary>A temporary of <paramref name="length"/> elements, not initialized (the dummy view when empty).</summary>
    public ArrayView<T> Temp<T>(long length) where T : unmanaged
    {
        if (length == 0) return Dummy.Cast<T>();
        var b = Accelerator.Allocate1D<T>(length);
        (_temps ??= []).Add(b);
        return b.View;
    }

    /// <summary>A tuned kernel parameter (see <see cref="Tuning.Get"/>).</summary>
    public int Tune(string op, long sizeA, long sizeB, string param, int fallback) => Tuning.Get(Device, op, sizeA, sizeB, param, fallback);

    /// <summary>Ends a successful call: synchronizes, unless inside a batch and nothing in host memory depends on it.</summary>
    internal void Complete()
    {
        if (_batch is null || _hostWrite) Device.Synchronize();
        else
        {
            Device.Pending = true;
            if (_temps is not null) { _batch.Keep(_temps); _temps = null; }
        }
    }

    /// <summary>Frees the temporaries (after a failed call, once the stream is idle).</summary>
    internal void Release(bool completed)
    {
        if (_temps is null) return;
        if (!completed)
        {
            try { Device.Synchronize(); }
            catch (Exception) { /* the call's own exception is the one to report */ }
        }
        foreach (var b in _temps) b.Dispose();
        _temps = null;
    }
}
