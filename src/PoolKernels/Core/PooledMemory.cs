using System.Buffers;
using System.Runtime.InteropServices;

namespace PoolKernels;

/// <summary>
/// Bytes rented from <see cref="ArrayPool{T}.Shared"/> for the result of a host-tensor overload, zero-filled, returned to
/// the pool when the result is disposed. Why: a result allocated fresh per call costs more than the kernel on large outputs
/// (first-touch page faults of new large-object-heap memory: spatial_pool GeM [64,2048,7,7] took 2.7 ms with a fresh output
/// against 0.9 ms with a reused one, perf/NOTES.md). After disposal every span request throws
/// <see cref="ObjectDisposedException"/>; only a span taken before the disposal can still see the array's next user.
/// </summary>
internal sealed class PooledMemory : MemoryManager<byte>
{
    /// <summary>Outputs up to this size are pooled (the shared pool's largest bucket); larger ones are plain arrays.</summary>
    internal const int MaxPooled = 1 << 30;

    private byte[]? _array;
    private readonly int _length;

    private PooledMemory(int length)
    {
        _array = ArrayPool<byte>.Shared.Rent(length);
        _length = length;
        _array.AsSpan(0, length).Clear();
    }

    /// <summary>Zero-filled bytes of <paramref name="length"/>: pooled (with the owner to dispose) when the size allows.</summary>
    internal static (Memory<byte> Memory, IDisposable? Owner) Rent(long length)
    {
        if (length > MaxPooled || length == 0) return (new byte[length], null);
        var m = new PooledMemory((int)length);
        return (m.Memory, m);
    }

    private byte[] Array => Volatile.Read(ref _array) ?? throw new ObjectDisposedException(nameof(HostTensor),
        "The tensor's pooled memory was disposed.");

    public override Span<byte> GetSpan() => Array.AsSpan(0, _length);

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        var a = Array;
        if ((uint)elementIndex > (uint)_length) throw new ArgumentOutOfRangeException(nameof(elementIndex));
        var h = GCHandle.Alloc(a, GCHandleType.Pinned);
        unsafe { return new MemoryHandle((byte*)h.AddrOfPinnedObject() + elementIndex, h); }
    }

    public override void Unpin() { }

    protected override void Dispose(bool disposing)
    {
        var a = Interlocked.Exchange(ref _array, null); // once: a second Dispose must not return the array twice
        if (a is not null) ArrayPool<byte>.Shared.Return(a);
    }
}
