using System.Runtime.InteropServices;

namespace PoolKernels;

/// <summary>
/// A dense, row-major host tensor: a dtype, a shape (PyTorch order) and little-endian bytes.
/// The bytes may be a managed array, a view into a memory-mapped safetensors file or, for the results of the host-tensor
/// overloads, memory rented from a pool that <see cref="Dispose"/> returns (so a loop that disposes its results runs as
/// fast as the span overloads). Disposing is optional: an undisposed tensor is collected like any object.
/// </summary>
public sealed class HostTensor : IDisposable
{
    /// <summary>Element type.</summary>
    public DType DType { get; }
    private readonly int[] _shape;

    /// <summary>Dimensions, outermost first. A copy taken at construction: changing the array the tensor was
    /// built from does not change the tensor. Use <c>Shape.ToArray()</c> for an array of your own.</summary>
    public ReadOnlySpan<int> Shape => _shape;
    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;
    /// <summary>The shape array itself, for code inside the library that never writes it.</summary>
    internal int[] ShapeArray => _shape;
    private readonly Memory<byte> _data;
    private IDisposable? _owner;
    private volatile bool _disposed;

    /// <summary>The raw bytes (Count · element size of them). Throws <see cref="ObjectDisposedException"/> once the tensor is
    /// disposed.</summary>
    public Memory<byte> Data
    {
        get
        {
            if (_disposed) throw new ObjectDisposedException(nameof(HostTensor), $"The host tensor {this} was disposed.");
            return _data;
        }
    }

    /// <summary>True once <see cref="Dispose"/> ran.</summary>
    public bool IsDisposed => _disposed;

    /// <summary>Releases the tensor: pooled memory (the results of the host-tensor overloads) goes back to its pool, and every
    /// later use of the tensor throws <see cref="ObjectDisposedException"/>. A span taken before must not be used after. A
    /// tensor over caller memory or a safetensors file only becomes unusable (the file stays open until it is disposed).
    /// Idempotent.</summary>
    public void Dispose()
    {
        _disposed = true;
        Interlocked.Exchange(ref _owner, null)?.Dispose();
    }

    /// <summary>A tensor over pooled memory (<see cref="PooledMemory"/>) that its disposal returns.</summary>
    internal HostTensor(DType dtype, int[] shape, Memory<byte> data, IDisposable? owner) : this(dtype, shape, data, owned: true) =>
        _owner = owner;
    /// <summary>Number of elements.</summary>
    public long Count { get; }

    /// <summary>Wraps <paramref name="data"/>; its length must equal the shape's byte size. The shape is copied.</summary>
    public HostTensor(DType dtype, int[] shape, Memory<byte> data) : this(dtype, (int[])(shape
        ?? throw new ArgumentNullException(nameof(shape))).Clone(), data, owned: true)
    { }

    /// <summary>Takes <paramref name="shape"/> as it is: the caller never writes it afterwards.</summary>
    internal HostTensor(DType dtype, int[] shape, Memory<byte> data, bool owned)
    {
        _ = owned;
        long bytes = PoolKernels.Shape.Bytes(dtype, shape); // checked: a wrapped product must not match a short buffer
        Count = bytes / dtype.Size();
        if (bytes != data.Length)
            throw new ArgumentException($"HostTensor data has {data.Length} bytes but {dtype.Name()} {PoolKernels.Shape.Format(shape)} "
                + $"needs {bytes}.", nameof(data));
        DType = dtype; _shape = shape; _data = data;
    }

    /// <summary>A zero-filled tensor.</summary>
    public static HostTensor Zeros(DType dtype, params int[] shape) =>
        new(dtype, shape, new byte[PoolKernels.Shape.HostBytes(dtype, shape)]);

    /// <summary>A tensor over a copy of <paramref name="values"/> (bool is stored as BOOL bytes).</summary>
    public static HostTensor From<T>(ReadOnlySpan<T> values, params int[] shape) where T : unmanaged
    {
        var t = Zeros(DTypes.Of<T>(), shape);
        if (values.Length != t.Count)
            throw new ArgumentException($"{values.Length} values do not fill shape {PoolKernels.Shape.Format(shape)}.", nameof(values));
        MemoryMarshal.AsBytes(values).CopyTo(t.Data.Span);
        return t;
    }

    /// <summary>A tensor over a copy of <paramref name="values"/>.</summary>
    public static HostTensor From<T>(T[] values, params int[] shape) where T : unmanaged => From((ReadOnlySpan<T>)values, shape);

    /// <summary>The elements as <typeparamref name="T"/> (no copy); T must match the dtype's size.</summary>
    public Span<T> AsSpan<T>() where T : unmanaged
    {
        if (System.Runtime.CompilerServices.Unsafe.SizeOf<T>() != DType.Size())
            throw new InvalidOperationException($"Cannot view {DType.Name()} as {typeof(T).Name}.");
        return MemoryMarshal.Cast<byte, T>(Data.Span);
    }

    /// <summary>Every element widened to double (float dtypes exactly; integers as values).</summary>
    public double[] ToDoubles()
    {
        var r = new double[Count];
        var s = Data.Span;
        switch (DType)
        {
            case DType.F64: MemoryMarshal.Cast<byte, double>(s).CopyTo(r); break;
            case DType.F32: { var v = MemoryMarshal.Cast<byte, float>(s); for (int i = 0; i < r.Length; i++) r[i] = v[i]; break; }
            case DType.F16: { var v = MemoryMarshal.Cast<byte, Half>(s); for (int i = 0; i < r.Length; i++) r[i] = (double)v[i]; break; }
            case DType.BF16:
                {
                    var v = MemoryMarshal.Cast<byte, ushort>(s); for (int i = 0; i < r.Length; i++) r[i]
                = Numerics.Bf16BitsToFloat(v[i]); break;
                }
            case DType.I64: { var v = MemoryMarshal.Cast<byte, long>(s); for (int i = 0; i < r.Length; i++) r[i] = v[i]; break; }
            case DType.I32: { var v = MemoryMarshal.Cast<byte, int>(s); for (int i = 0; i < r.Length; i++) r[i] = v[i]; break; }
            case DType.I8: for (int i = 0; i < r.Length; i++) r[i] = (sbyte)s[i]; break;
            default: for (int i = 0; i < r.Length; i++) r[i] = s[i]; break;
        }
        return r;
    }

    /// <summary>Integer tensors as long values (throws for float dtypes).</summary>
    public long[] ToInt64s()
    {
        if (DType is DType.F64 or DType.F32 or DType.F16 or DType.BF16)
            throw new InvalidOperationException($"{DType.Name()} is not an integer dtype.");
        var r = new long[Count];
        var s = Data.Span;
        switch (DType)
        {
            case DType.I64: MemoryMarshal.Cast<byte, long>(s).CopyTo(r); break;
            case DType.I32: { var v = MemoryMarshal.Cast<byte, int>(s); for (int i = 0; i < r.Length; i++) r[i] = v[i]; break; }
            case DType.I8: for (int i = 0; i < r.Length; i++) r[i] = (sbyte)s[i]; break;
            default: for (int i = 0; i < r.Length; i++) r[i] = s[i]; break;
        }
        return r;
    }

    /// <summary>A copy converted to <paramref name="dtype"/> (floats round to nearest, as PyTorch's .to()).</summary>
    public HostTensor To(DType dtype)
    {
        if (dtype == DType) return new HostTensor(DType, _shape, Data.ToArray(), owned: true);
        var v = ToDoubles();
        var t = Zeros(dtype, _shape);
        var s = t.Data.Span;
        for (int i = 0; i < v.Length; i++)
        {
            switch (dtype)
            {
                case DType.F64: MemoryMarshal.Cast<byte, double>(s)[i] = v[i]; break;
                case DType.F32: MemoryMarshal.Cast<byte, float>(s)[i] = (float)v[i]; break;
                case DType.F16: MemoryMarshal.Cast<byte, Half>(s)[i] = (Half)v[i]; break;
                case DType.BF16: MemoryMarshal.Cast<byte, ushort>(s)[i] = Numerics.FloatToBf16Bits((float)v[i]); break;
                case DType.I64: MemoryMarshal.Cast<byte, long>(s)[i] = (long)v[i]; break;
                case DType.I32: MemoryMarshal.Cast<byte, int>(s)[i] = (int)v[i]; break;
                case DType.U8: s[i] = (byte)v[i]; break;
                case DType.I8: s[i] = (byte)(sbyte)v[i]; break;
                default: s[i] = v[i] != 0 ? (byte)1 : (byte)0; break;
            }
        }
        return t;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{DType.Name()}{PoolKernels.Shape.Format(_shape)}";
}
