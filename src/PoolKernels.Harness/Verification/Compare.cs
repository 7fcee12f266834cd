namespace PoolKernels.Verification;

/// <summary>The outcome of comparing one tensor with its expected value.</summary>
/// <param name="Pass">Every element within tolerance (integers equal; NaN matches NaN; ±inf exact).</param>
/// <param name="MaxAbsErr">Largest |actual - expected| over finite pairs.</param>
/// <param name="MaxRelErr">Largest |actual - expected| / |expected| over finite pairs with expected != 0.</param>
/// <param name="Message">Why it failed (first offending element), or empty.</param>
public sealed record Comparison(bool Pass, double MaxAbsErr, double MaxRelErr, string Message);

/// <summary>Element-wise comparison: |a - e| &lt;= atol + rtol·|e| (docs/operations.md (test vectors)).</summary>
public static class Compare
{
    /// <summary>Compares <paramref name="actual"/> with <paramref name="expected"/>; shapes must be equal.</summary>
    public static Comparison Tensors(HostTensor actual, HostTensor expected, double rtol, double atol, string name = "out")
    {
        if (!actual.Shape.SequenceEqual(expected.Shape))
            return new(false, double.PositiveInfinity, double.PositiveInfinity,
                $"{name}: shape {Shape.Format(actual.Shape)} != expected {Shape.Format(expected.Shape)}");
        bool integer = expected.DType.IsInteger();
        if (integer)
        {
            var a = actual.ToInt64s(); var e = expected.ToInt64s();
            for (int i = 0; i < e.Length; i++)
                if (a[i] != e[i]) return new(false, Math.Abs(a[i] - e[i]), 0, $"{name}[{i}]: {a[i]} != expected {e[i]}");
            return new(true, 0, 0, "");
        }
        return Values(actual.ToDoubles(), expected.ToDoubles(), rtol, atol, name);
    }

    /// <summary>Compares two value arrays of equal length.</summary>
    public static Comparison Values(ReadOnlySpan<double> a, ReadOnlySpan<double> e, double rtol, double atol, string name = "out")
    {
        if (a.Length != e.Length) return new(false, double.PositiveInfinity, double.PositiveInfinity,
            $"{name}: {a.Length} values != expected {e.Length}");
        double maxAbs = 0, maxRel = 0;
        string msg = "";
        for (int i = 0; i < e.Length; i++)
        {
            double x = a[i], y = e[i];
            bool ok;
            if (double.IsNaN(y) || double.IsNaN(x)) ok = double.IsNaN(x) && double.IsNaN(y);
            else if (double.IsInfinity(y) || double.IsInfinity(x)) ok = x == y;
            else
            {
                double err = Math.Abs(x - y);
                maxAbs = Math.Max(maxAbs, err);
                if (y != 0) maxRel = Math.Max(maxRel, err / Math.Abs(y));
                ok = err <= atol + rtol * Math.Abs(y);
            }
            if (!ok && msg.Length == 0) msg = $"{name}[{i}]: {x:R} vs expected {y:R} (rtol {rtol}, atol {atol})";
        }
        return new(msg.Length == 0, maxAbs, maxRel, msg);
    }
}
