namespace PoolKernels;

/// <summary>Shape helpers: element counts with overflow checks and readable formatting.</summary>
public static class Shape
{
    /// <summary>Number of elements; throws on negative dims or overflow.</summary>
    public static long Count(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"Negative dimension in shape {Format(shape)}.");
            n = checked(n * d);
        }
        return n;
    }

    /// <summary>"[2, 3, 4]".</summary>
    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
