using ILGPU.Runtime;

namespace PoolKernels;

/// <summary>
/// A scope of chained calls on one device (see <see cref="Device.BeginBatch"/>): inside it, an operation whose inputs and
/// outputs are all <see cref="DeviceTensor"/>s is enqueued on the accelerator's stream and returns without waiting for it;
/// <see cref="Dispose"/> waits once for all of them. A call that reads or writes host memory (span and
/// <see cref="HostTensor"/> overloads, <see cref="DeviceTensor.CopyTo{T}(Span{T})"/>, <see cref="DeviceTensor.ToTensor"/>)
/// still waits for everything enqueued before it, so results are never read early. Outside a batch every call is
/// synchronous. On <c>reference</c> and <c>simd</c> every call is synchronous and a batch does nothing.
/// <para>A batch belongs to the thread that began it; batches end in the reverse order they began. A batch begun while
/// another on the same device is open on this thread joins it (the outer one synchronizes). Temporaries of the calls in a
/// batch are kept until it ends.</para>
/// </summary>
public sealed class DeviceBatch : IDisposable
{
    [ThreadStatic] private static DeviceBatch? t_innermost;
    private readonly DeviceBatch? _outer;
    private readonly DeviceBatch _root;
    private List<MemoryBuffer>? _kept;
    private bool _ended;

    /// <summary>The device the batch runs on.</summary>
    public Device Device { get; }

    private readonly bool _inert;

    internal DeviceBatch(Device device, bool inert)
    {
        device.ThrowIfDisposed();
        Device = device;
        _inert = inert;
        _root = this;
        if (inert) return; // CPU devices: every call is synchronous
        _outer = t_innermost;
        _root = Current(device) ?? this;
        t_innermost = this;
    }

    /// <summary>The open batch of <paramref name="device"/> on this thread (its outermost one), or null.</summary>
    internal static DeviceBatch? Current(Device device)
    {
        for (var b = t_innermost; b is not null; b = b._outer)
            if (ReferenceEquals(b.Device, device)) return b._root;
        return null;
    }

    /// <summary>Keeps a call's temporaries alive until the batch ends (its kernels may still be running).</summary>
    internal void Keep(List<MemoryBuffer> buffers) => (_root._kept ??= []).AddRange(buffers);

    /// <summary>Ends the batch: waits for every call enqueued in it (the outermost batch of the device) and frees their
    /// temporaries.</summary>
    /// <exception cref="InvalidOperationException">Called on another thread, or before a batch begun after this one ended.</exception>
    public void Dispose()
    {
        if (_ended || _inert) return;
        if (!ReferenceEquals(t_innermost, this))
            throw new InvalidOperationException("A DeviceBatch must end on the thread that began it, after the batches begun inside it.");
        _ended = true;
        t_innermost = _outer;
        if (!ReferenceEquals(_root, this)) return; // joined an outer batch: that one synchronizes
        Device.EndBatch(_kept);
        _kept = null;
    }
}
