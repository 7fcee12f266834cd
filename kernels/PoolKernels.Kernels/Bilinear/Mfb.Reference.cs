namespace PoolKernels.Kernels.Bilinear;

/// <summary>The weights of one MFB block: wx [o·k, Dx], bx [o·k], wy [o·k, Dy], by [o·k].</summary>
internal readonly ref struct MfbBlock(ReadOnlySpan<float> wx, ReadOnlySpan<float> bx, ReadOnlySpan<float> wy, ReadOnlySpan<float> by)
{
    /// <summary>The weights.</summary>
    public readonly ReadOnlySpan<float> Wx = wx, Bx = bx, Wy = wy, By = by;
}

/// <summary>
/// <c>mfb_pool</c> / <c>mfh_pool</c> (Yu et al.), scalar reference (double). Block 1: e1 = act(x·wx1ᵀ + bx1) ⊙
/// act(y·wy1ᵀ + by1), z1_j = Σ_{t&lt;k} e1_{jk+t}. MFH adds block 2 with e2 = e2' ⊙ e1 (e1 unpooled) and z2 likewise;
/// each z gets sign·√|·| and L2 normalization separately; the output row is [z1] or [z1; z2].
/// </summary>
internal static class MfbReference
{
    /// <summary>act(v) in double.</summary>
    public static double Act(double v, MfbActivation a) => a switch
    {
        MfbActivation.Relu => Math.Max(v, 0),
        MfbActivation.Tanh => Math.Tanh(v),
        MfbActivation.LeakyRelu => v < 0 ? 0.01 * v : v,
        _ => v,
    };

    /// <summary>Runs on validated arguments; block2 empty (Wx.IsEmpty) for MFB. output is [B, blocks·o].</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> y, MfbBlock block1, MfbBlock block2, Span<float> output,
        int batch, int dx, int dy, int o, int k, MfbActivation act, bool signedSqrt, bool normalize)
    {
        int blocks = block2.Wx.IsEmpty ? 1 : 2;
        var z = new double[blocks * o];
        for (int b = 0; b < batch; b++)
        {
            Array.Clear(z);
            for (int j = 0; j < o; j++)
                for (int t = 0; t < k; t++)
                {
                    int r = j * k + t;
                    double e1 = Project(x, y, block1, b, r, dx, dy, act);
                    z[j] += e1;
                    if (blocks == 2) z[o + j] += Project(x, y, block2, b, r, dx, dy, act) * e1;
                }
            for (int bl = 0; bl < blocks; bl++)
                BilinearPoolReference.Finish(z.AsSpan(bl * o, o), output.Slice((b * blocks + bl) * o, o), signedSqrt, normalize);
        }
    }

    private static double Project(ReadOnlySpan<float> x, ReadOnlySpan<float> y, MfbBlock w, int b, int r, int dx, int dy, MfbActivation act)
    {
        double px = w.Bx[r], py = w.By[r];
        for (int i = 0; i < dx; i++) px += (double)x[b * dx + i] * w.Wx[r * dx + i];
        for (int i = 0; i < dy; i++) py += (double)y[b * dy + i] * w.Wy[r * dy + i];
        return Act(px, act) * Act(py, act);
    }
}
