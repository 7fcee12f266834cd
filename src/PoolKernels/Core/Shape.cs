namespace PoolKernels;

/// <summary>Shape helpers: element counts with overflow checks and readable formatting.</summary>
public static class Shape
{
    /// <summary>Number of elements.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or the count does not fit in a long
    /// (ParamName "shape").</exception>
    public static long Count(ReadOnlySpan<int> shape)
    {
        bool zero = false;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"Negative dimension in shape {Format(shape)}.", nameof(shape));
            zero |= d == 0;
        }
        if (zero) return 0;
        long n = 1;
        foreach (int d in shape)
        {
            if (n > long.MaxValue / d) throw new ArgumentException($"Shape {Format(shape)} has more than {long.MaxValue} elements.",
                nameof(shape));
            n *= d;
        }
        return n;
    }

    /// <summary>Size in bytes of a dense tensor of <paramref name="dtype"/> and <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or the byte size does not fit in a long
    /// (ParamName "shape"), or <paramref name="dtype"/> is not a DType (ParamName "dtype").</exception>
    public static long Bytes(DType dtype, ReadOnlySpan<int> shape)
    {
        CheckDType(dtype);
        long n = Count(shape);
        int size = dtype.Size();
        if (n > long.MaxValue / size) throw new ArgumentException($"{dtype.Name()} {Format(shape)} needs more than {long.MaxValue} bytes.",
            nameof(shape));
        return n * size;
    }

    /// <summary>The byte size of a tensor held in one managed array (host tensors, CPU device tensors).</summary>
    /// <exception cref="ArgumentException">As <see cref="Bytes"/>, or the size exceeds <see cref="Array.MaxLength"/>.</exception>
    internal static int HostBytes(DType dtype, ReadOnlySpan<int> shape)
    {
        long bytes = Bytes(dtype, shape);
        if (bytes > Array.MaxLength) throw new ArgumentException($"{dtype.Name()} {Format(shape)} needs {bytes} bytes; a host buffer "
            + $"holds at most {Array.MaxLength}.", nameof(shape));
        return (int)bytes;
    }

    /// <summary>Rejects a dtype value that is not a member of <see cref="DType"/>.</summary>
    internal static void CheckDType(DType dtype)
    {
        if ((uint)dtype > (uint)DType.I8) throw new ArgumentException($"dtype {(int)dtype} is not a DType.", nameof(dtype));
    }

    /// <summary>"[2, 3, 4]".</summary>
    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
