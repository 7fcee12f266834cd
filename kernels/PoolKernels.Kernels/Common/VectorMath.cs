using System.Numerics.Tensors;

namespace PoolKernels.Kernels;

/// <summary>Vectorized float helpers shared by the SIMD kernels.</summary>
public static class VectorMath
{
    /// <summary>y = x^p for the GeM family (p &gt; 0, x ≥ 0 after clamping; NaN stays NaN, +inf stays +inf, a negative x
    /// gives NaN for non-integer p as in PyTorch): p = 1, 2, 3 exactly by multiplication, p = 0.5 by a square root, any
    /// other p as exp(p·ln x) with TensorPrimitives' vectorized Log and Exp (relative error ~|p·ln x|·6e-8).
    /// TensorPrimitives.Pow is not vectorized: 6 ns per float against 1.5 ns (800K floats, one thread).</summary>
    public static void Pow(ReadOnlySpan<float> x, float p, Span<float> y)
    {
        if (p == 1f) { x.CopyTo(y); return; }
        if (p == 2f) { TensorPrimitives.Multiply(x, x, y); return; }
        if (p == 3f)
        {
            // y may alias x: square first into y only when it does not
            if (x.Overlaps(y)) { for (int i = 0; i < x.Length; i++) y[i] = x[i] * x[i] * x[i]; return; }
            TensorPrimitives.Multiply(x, x, y);
            TensorPrimitives.Multiply(y, x, y);
            return;
        }
        if (p == 0.5f) { TensorPrimitives.Sqrt(x, y); return; }
        TensorPrimitives.Log(x, y);
        TensorPrimitives.Multiply(y, p, y);
        TensorPrimitives.Exp(y, y);
    }
}
