using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels;

/// <summary>
/// A tensor resident on a <see cref="Device"/>: host memory for reference/simd, an accelerator buffer for
/// ILGPU devices. Pass device tensors to operations to chain them without copies to the host.
/// </summary>
public sealed class DeviceTensor : IDisposable
{
    /// <summary>The owning device.</summary>
    public Device Device { get; }
    /// <summary>Element type.</summary>
    public DType DType { get; }
    private readonly int[] _shape;

    /// <summary>Dimensions, outermost first; fixed at allocation (a copy of the array given).</summary>
    public ReadOnlySpan<int> Shape => _shape;
    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;
    /// <summary>The shape array itself, for code inside the library that never writes it.</summary>
    internal int[] ShapeArray => _shape;
    /// <summary>Element count.</summary>
    public long Count { get; }
    private readonly Memory<byte> _host;
    private MemoryBuffer1D<byte, Stride1D.Dense>? _buffer;
    private volatile bool _disposed;

    /// <summary>The host bytes (CPU devices). Throws <see cref="ObjectDisposedException"/> once the tensor or its device is
    /// disposed.</summary>
    internal Memory<byte> Host { get { ThrowIfDisposed(); return _host; } }
    /// <summary>The accelerator buffer (null on CPU devices). Throws once the tensor or its device is disposed.</summary>
    internal MemoryBuffer1D<byte, Stride1D.Dense>? Buffer { get { ThrowIfDisposed(); return _buffer; } }
    /// <summary>True once <see cref="Dispose"/> ran or the device was disposed.</summary>
    public bool IsDisposed => _disposed || Device.IsDisposed;

    internal void ThrowIfDisposed()
    {
        if (_disposed) throw new ObjectDisposedException(nameof(DeviceTensor), $"The device tensor {this} was disposed.");
        if (Device.IsDisposed) throw new ObjectDisposedException(nameof(DeviceTensor),
            $"The device {Device.Id} of tensor {this} was disposed.");
    }

    /// <summary>Takes <paramref name="shape"/> as it is: the caller passes a copy or another tensor's (immutable) shape.</summary>
    internal DeviceTensor(Device device, DType dtype, int[] shape, Memory<byte> host, MemoryBuffer1D<byte, Stride1D.Dense>? buffer)
    {
        device.ThrowIfDisposed();
        Device = device; DType = dtype; _shape = shape; Count = PoolKernels.Shape.Count(shape); _host = host; _buffer = buffer;
    }

    /// <summary>Size in bytes.</summary>
    public long Bytes => Count * DType.Size();

    /// <summary>The accelerator view of the bytes (ILGPU devices only).</summary>
    internal ArrayView<byte> View => Buffer is null ? throw new InvalidOperationException("Not an accelerator tensor.")
        : Buffer.View.SubView(0, Bytes);

    /// <summary>The accelerator view typed as <typeparamref name="T"/>.</summary>
    internal ArrayView<T> ViewAs<T>() where T : unmanaged => View.Cast<T>();

    /// <summary>Copies raw bytes in (length must equal <see cref="Bytes"/>).</summary>
    public void CopyFromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Bytes) throw new ArgumentException($"Expected {Bytes} bytes for {this}, got {bytes.Length}.", nameof(bytes));
        ThrowIfDisposed();
        Device.Write(this, bytes);
    }

    /// <summary>Copies values in; their count must equal <see cref="Count"/>.</summary>
    public void CopyFrom<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        CheckType<T>();
        CopyFromBytes(MemoryMarshal.AsBytes(values));
    }

    /// <summary>Copies raw bytes out.</summary>
    public void CopyToBytes(Span<byte> bytes)
    {
        if (bytes.Length != Bytes) throw new ArgumentException($"Expected {Bytes} bytes for {this}, got {bytes.Length}.", nameof(bytes));
        ThrowIfDisposed();
        Device.Read(this, bytes);
    }

    /// <summary>Copies values out; the span's length must equal <see cref="Count"/>. Waits for every call enqueued on
    /// the device before (inside a <see cref="DeviceBatch"/> too).</summary>
    public void CopyTo<T>(Span<T> values) where T : unmanaged
    {
        CheckType<T>();
        CopyToBytes(MemoryMarshal.AsBytes(values));
    }

    /// <summary>A host copy.</summary>
    public HostTensor ToTensor()
    {
        var t = HostTensor.Zeros(DType, _shape);
        CopyToBytes(t.Data.Span);
        return t;
    }

    private void CheckType<T>() where T : unmanaged
    {
        if (System.Runtime.CompilerServices.Unsafe.SizeOf<T>() != DType.Size())
            throw new ArgumentException($"{typeof(T).Name} does not match {this}.");
    }

    /// <summary>Frees the accelerator buffer; afterwards every use of the tensor throws <see cref="ObjectDisposedException"/>
    /// (on every backend). On an ILGPU device it waits for a call running on the device to finish first; once the device
    /// itself is disposed there is nothing left to free (the accelerator released its buffers).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        Device.Free(this);
    }

    /// <summary>Marks the tensor disposed and hands back its buffer the first time (null afterwards, and on CPU devices).</summary>
    internal MemoryBuffer1D<byte, Stride1D.Dense>? MarkDisposed()
    {
        if (_disposed) return null;
        _disposed = true;
        var b = _buffer;
        _buffer = null;
        return b;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{DType.Name()}{PoolKernels.Shape.Format(Shape)} on {Device.Id}";
}
