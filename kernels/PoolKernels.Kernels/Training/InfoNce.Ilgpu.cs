using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Training;

/// <summary>
/// <c>info_nce</c>, ILGPU (the rules of <see cref="InfoNceReference"/>, in float), five small kernels with one thread per
/// output so every sum has a fixed order: (1) per row of anchors and candidates its norm; (2) per anchor b the logsumexp
/// of its similarity row (dots recomputed: two passes over the candidates), its loss term and the gradient row G[b,·];
/// (3) per element of â and ĉ its gradient (Σ over the other side in index order); (4) per row the normalization backward;
/// (5) one thread sums the B loss terms in order. Temporaries: G [B,N], dx̂ [(B+N),D], norms and loss terms.
/// </summary>
internal static class InfoNceIlgpu
{
    /// <summary>Inputs of every kernel, as plain numbers.</summary>
    internal struct Dims
    {
        public int B, N, D, Cosine;
        public float Scale;
    }

    private static float Inv(float nrm, int cosine) => cosine != 0 ? 1f / XMath.Max(nrm, 1e-12f) : 1f;

    /// <summary>(1) norms of rows 0..B-1 (anchors) and B..B+N-1 (candidates).</summary>
    [GpuKernel]
    public static void NormKernel(Index1D index, ArrayView<float> a, ArrayView<float> c, ArrayView<float> norms, Dims p)
    {
        int r = index;
        float ss = 0f;
        for (int k = 0; k < p.D; k++)
        {
            float x = r < p.B ? a[(long)r * p.D + k] : c[(long)(r - p.B) * p.D + k];
            ss += x * x;
        }
        norms[r] = p.Cosine != 0 ? XMath.Sqrt(ss) : 1f;
    }

    private static float Score(ArrayView<float> a, ArrayView<float> c, ArrayView<float> norms, Dims p, int i, int j)
    {
        float dot = 0f;
        for (int k = 0; k < p.D; k++) dot += a[(long)i * p.D + k] * c[(long)j * p.D + k];
        return p.Scale * dot * Inv(norms[i], p.Cosine) * Inv(norms[p.B + j], p.Cosine);
    }

    /// <summary>(2) per anchor: logsumexp, the loss term, G[b,·].</summary>
    [GpuKernel]
    public static void RowKernel(Index1D index, ArrayView<float> a, ArrayView<float> c, ArrayView<float> norms, ArrayView<float> g,
        ArrayView<float> rowLoss, Dims p)
    {
        int i = index;
        float m = float.NegativeInfinity;
        for (int j = 0; j < p.N; j++) m = XMath.Max(m, Score(a, c, norms, p, i, j));
        float sum = 0f;
        for (int j = 0; j < p.N; j++) sum += XMath.Exp(Score(a, c, norms, p, i, j) - m);
        float lse = m + XMath.Log(sum), w = p.Scale / p.B;
        rowLoss[i] = lse - Score(a, c, norms, p, i, i);
        for (int j = 0; j < p.N; j++) g[(long)i * p.N + j] = (XMath.Exp(Score(a, c, norms, p, i, j) - lse) - (i == j ? 1f : 0f)) * w;
    }

    /// <summary>(3) dx̂ of element (row, k): rows 0..B-1 from the candidates, rows B.. from the anchors.</summary>
    [GpuKernel]
    public static void HatGradKernel(Index1D idx, ArrayView<float> a, ArrayView<float> c, ArrayView<float> norms, ArrayView<float> g,
        ArrayView<float> dhat, Dims p)
    {
        int r = idx / p.D, k = idx - r * p.D;
        float acc = 0f;
        if (r < p.B)
            for (int j = 0; j < p.N; j++) acc += g[(long)r * p.N + j] * c[(long)j * p.D + k] * Inv(norms[p.B + j], p.Cosine);
        else
            for (int i = 0; i < p.B; i++) acc += g[(long)i * p.N + (r - p.B)] * a[(long)i * p.D + k] * Inv(norms[i], p.Cosine);
        dhat[idx] = acc;
    }

    /// <summary>(4) the normalization backward of one row into d_anchors or d_candidates.</summary>
    [GpuKernel]
    public static void BackKernel(Index1D index, ArrayView<float> a, ArrayView<float> c, ArrayView<float> norms, ArrayView<float> dhat,
        ArrayView<float> dA, ArrayView<float> dC, Dims p)
    {
        int r = index;
        float nrm = norms[r], inv = Inv(nrm, p.Cosine), proj = 0f;
        long row = (long)r * p.D;
        bool anchor = r < p.B;
        long src = anchor ? row : (long)(r - p.B) * p.D;
        if (p.Cosine != 0 && nrm >= 1e-12f)
            for (int k = 0; k < p.D; k++) proj += (anchor ? a[src + k] : c[src + k]) * inv * dhat[row + k];
        for (int k = 0; k < p.D; k++)
        {
            float v = dhat[row + k];
            if (p.Cosine != 0) v = nrm < 1e-12f ? v * 1e12f : (v - (anchor ? a[src + k] : c[src + k]) * inv * proj) / nrm;
            if (anchor) dA[src + k] = v; else dC[src + k] = v;
        }
    }

    /// <summary>(5) the mean of the loss terms, summed in order by one thread.</summary>
    [GpuKernel]
    public static void LossKernel(Index1D i, ArrayView<float> rowLoss, ArrayView<float> loss, Dims p)
    {
        float s = 0f;
        for (int b = 0; b < p.B; b++) s += rowLoss[b];
        loss[0] = p.B == 0 ? 0f : s / p.B;
    }

    /// <summary>Launches the five kernels on <paramref name="stream"/>; the temporaries are allocated by the caller.</summary>
    public static void Launch(Accelerator acc, AcceleratorStream stream, ArrayView<float> a, ArrayView<float> c, ArrayView<float> loss,
        ArrayView<float> dA, ArrayView<float> dC, ArrayView<float> norms, ArrayView<float> g, ArrayView<float> dhat,
            ArrayView<float> rowLoss,
        int b, int n, int d, float scale, bool cosine)
    {
        var p = new Dims { B = b, N = n, D = d, Scale = scale, Cosine = cosine ? 1 : 0 };
        var norm = KernelCache.Get(acc, (Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, Dims>)NormKernel,
            x => x.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, Dims>(NormKernel));
        var row = KernelCache.Get(acc, (Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, Dims>)RowKernel,
            x => x.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                Dims>(RowKernel));
        var hat = KernelCache.Get(acc, (Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, Dims>)HatGradKernel,
            x => x.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                Dims>(HatGradKernel));
        var back = KernelCache.Get(acc,
            (Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                Dims>)BackKernel,
            x => x.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, Dims>(BackKernel));
        var sum = KernelCache.Get(acc, (Action<Index1D, ArrayView<float>, ArrayView<float>, Dims>)LossKernel,
            x => x.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, Dims>(LossKernel));
        if (b + n > 0) norm(stream, b + n, a, c, norms, p);
        if (b > 0) row(stream, b, a, c, norms, g, rowLoss, p);
        if ((long)(b + n) * d > 0) hat(stream, checked((b + n) * d), a, c, norms, g, dhat, p);
        if (b + n > 0) back(stream, b + n, a, c, norms, dhat, dA, dC, p);
        sum(stream, 1, rowLoss, loss, p);
    }
}
