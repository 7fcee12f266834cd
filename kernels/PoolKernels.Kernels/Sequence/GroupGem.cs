using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Sequence;

/// <summary>
/// Group GeM (GGeM, Ko et al. 2022) for the simd forms of <c>sequence_pool</c> and <c>spatial_pool</c>: feature (or
/// channel) f of a gem block uses p = p_groups[f / groupSize], groupSize = D / G. A block of features that lies inside
/// one group keeps the plain GeM path with that group's p (<see cref="VectorMath.Pow"/>, whose p = 2 and 3 are exact); a
/// block that straddles groups fills a per-feature p (and 1/p) row once and raises with <see cref="Pow"/>.
/// </summary>
internal static unsafe class GroupGem
{
    /// <summary>Fills <paramref name="p"/>[i] = pGroups[(f0 + i) / groupSize] and <paramref name="inv"/>[i] = 1/p for a block of
    /// p.Length features from f0; returns the block's p when every feature is in one group (then the rows are not
    /// filled), else NaN.</summary>
    public static float Fill(float* pGroups, int groupSize, int f0, Span<float> p, Span<float> inv)
    {
        int g0 = f0 / groupSize, g1 = (f0 + p.Length - 1) / groupSize;
        if (g0 == g1) return pGroups[g0];
        for (int i = 0; i < p.Length; i++)
        {
            p[i] = pGroups[(f0 + i) / groupSize];
            inv[i] = 1f / p[i];
        }
        return float.NaN;
    }

    /// <summary>y = x^p elementwise with a per-element p, as exp(p·ln x) (VectorMath.Pow's general path, the same scalar
    /// MathF form without hardware FMA); x >= 0 or NaN (GeM clamps to eps first); y may be x itself.</summary>
    public static void Pow(ReadOnlySpan<float> x, ReadOnlySpan<float> p, Span<float> y)
    {
        if (!VectorMath.HardwareFma)
        {
            for (int i = 0; i < x.Length; i++) y[i] = MathF.Exp(p[i] * MathF.Log(x[i]));
            return;
        }
        TensorPrimitives.Log(x, y);
        TensorPrimitives.Multiply(y, p, y);
        TensorPrimitives.Exp(y, y);
    }
}
