using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Retrieval;

/// <summary>
/// <c>rerank_refine</c>, ILGPU, entirely on the device (see <see cref="RerankRefineReference"/> for the math):
/// the shortlist T is <see cref="SimilarityTopkIlgpu"/> (dot); then per chunk of queries: Gram rows of T (one thread per
/// pair), the k' neighbours by <see cref="SelectIlgpu"/> (diagonal excluded, db ids as tie ids), d' (one thread per
/// (q, member, d)), S1, the k+1 best by S1 (select), q' (one thread per (q, d)), S, and the final order (select of all
/// m'). Chunks keep the Gram and d' blocks under 2^24 floats each.
/// </summary>
internal static class RerankRefineIlgpu
{
    /// <summary>G[c,a,b] = x_T[c,a] · x_T[c,b]; <paramref name="i"/> runs over chunk·m'·m'.</summary>
    [GpuKernel]
    public static void GramKernel(Index1D i, ArrayView<float> db, ArrayView<long> t, ArrayView<float> gram, int mp, int dim)
    {
        int b = i % mp, rest = i / mp, a = rest % mp, c = rest / mp;
        long xa = t[(long)c * mp + a] * dim, xb = t[(long)c * mp + b] * dim;
        float s = 0;
        for (int d = 0; d < dim; d++) s += db[xa + d] * db[xb + d];
        gram[i] = s;
    }

    /// <summary>d'[c,a,:]; <paramref name="i"/> runs over chunk·m'·D. nbPos/nbG hold the k' neighbour positions and Gram values.</summary>
    [GpuKernel]
    public static void RefineKernel(Index1D i, ArrayView<float> db, ArrayView<long> t, ArrayView<int> nbPos, ArrayView<float> nbG,
        ArrayView<float> dp,
        int mp, int dim, int kn, float beta)
    {
        int d = i % dim, rest = i / dim, a = rest % mp, c = rest / mp;
        float v = db[t[(long)c * mp + a] * dim + d], den = 1;
        long nb = (long)rest * kn;
        for (int j = 0; j < kn; j++)
        {
            float w = beta * nbG[nb + j];
            den += w;
            v += w * db[t[(long)c * mp + nbPos[nb + j]] * dim + d];
        }
        dp[i] = v / den;
    }

    /// <summary>out[c,a] = u[c]·d'[c,a] (u = the query, or q'), optionally averaged with <paramref name="add"/>: (add + dot)/2.</summary>
    [GpuKernel]
    public static void RowDotKernel(Index1D i, ArrayView<float> u, ArrayView<float> dp, ArrayView<float> add, ArrayView<float> output,
        int mp, int dim, int average)
    {
        int c = i / mp;
        long ub = (long)c * dim, rb = (long)(int)i * dim;
        float s = 0;
        for (int d = 0; d < dim; d++) s += u[ub + d] * dp[rb + d];
        output[i] = average != 0 ? (add[i] + s) / 2 : s;
    }

    /// <summary>q'[c,d] = max over the kk selected members of d'[c,member,d]; <paramref name="i"/> runs over chunk·D.</summary>
    [GpuKernel]
    public static void QPrimeKernel(Index1D i, ArrayView<float> dp, ArrayView<int> best, ArrayView<float> qp, int mp, int dim, int kk)
    {
        int d = i % dim, c = i / dim;
        float m = float.NegativeInfinity;
        for (int j = 0; j < kk; j++) m = Numerics.MaxNaN(m, dp[((long)c * mp + best[(long)c * kk + j]) * dim + d]);
        qp[i] = m;
    }

    /// <summary>Runs the whole operation into order [Q,m'] (long) and scores [Q,m'] on <paramref name="stream"/>, without
    /// synchronizing: its temporaries come from <paramref name="temp"/> (bytes; the caller frees them once the stream is
    /// idle).</summary>
    public static void Launch(Accelerator acc, AcceleratorStream stream, ArrayView<float> query, ArrayView<float> db, ArrayView<long> order,
        ArrayView<float> scores,
        ArrayView<long> dummy, int queries, int n, int dim, int m, int k, float beta, Func<long, ArrayView<byte>> temp)
    {
        int mp = Math.Min(m, n), kn = Math.Max(0, Math.Min(k, mp - 1)), kk = Math.Min(k + 1, mp);
        if (queries == 0 || mp == 0) return;
        ArrayView<T> Tmp<T>(long length) where T : unmanaged => temp(length * Interop.SizeOf<T>()).Cast<T>();
        var t = Tmp<long>((long)queries * mp);
        var ts = Tmp<float>((long)queries * mp);
        SimilarityTopkIlgpu.Launch(acc, stream, query, db, t, ts, dummy, queries, n, dim, mp, false, Tmp<float>);

        long per = Math.Max((long)mp * mp, (long)mp * Math.Max(dim, 1));
        int chunk = (int)Math.Max(1, Math.Min(queries, (1L << 24) / per));
        var gram = Tmp<float>((long)chunk * mp * mp);
        var nbId = Tmp<long>(Math.Max(1, (long)chunk * mp * kn));
        var nbG = Tmp<float>(Math.Max(1, (long)chunk * mp * kn));
        var nbPos = Tmp<int>(Math.Max(1, (long)chunk * mp * kn));
        var dp = Tmp<float>(Math.Max(1, (long)chunk * mp * dim));
        var s1 = Tmp<float>((long)chunk * mp);
        var bestId = Tmp<long>((long)chunk * kk);
        var bestS = Tmp<float>((long)chunk * kk);
        var bestPos = Tmp<int>((long)chunk * kk);
        var qp = Tmp<float>(Math.Max(1, (long)chunk * dim));
        var sf = Tmp<float>((long)chunk * mp);

        var gk = KernelCache.Get(acc, GramKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<float>, int, int>(GramKernel));
        var rk = KernelCache.Get(acc, RefineKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<long>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
                int, int, int, float>(RefineKernel));
        var dk = KernelCache.Get(acc, RowDotKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int,
                int>(RowDotKernel));
        var qk = KernelCache.Get(acc, QPrimeKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int>(QPrimeKernel));

        for (int q0 = 0; q0 < queries; q0 += chunk)
        {
            int cq = Math.Min(chunk, queries - q0);
            var tc = t.SubView((long)q0 * mp, (long)cq * mp);
            var qc = query.SubView((long)q0 * dim, (long)cq * dim);
            gk(stream, cq * mp * mp, db, tc, gram, mp, dim);
            if (kn > 0)
                SelectIlgpu.Launch(acc, stream, cq * mp, gram, tc, nbId, nbG, nbPos,
                    new SelectParams { L = mp, K = kn, HasIds = 1, IdsDiv = mp, ExcludeDiag = 1, WritePos = 1 });
            if (dim > 0) rk(stream, cq * mp * dim, db, tc, nbPos, nbG, dp, mp, dim, kn, beta);
            dk(stream, cq * mp, qc, dp, s1, s1, mp, dim, 0);
            SelectIlgpu.Launch(acc, stream, cq, s1, tc, bestId, bestS, bestPos,
                new SelectParams { L = mp, K = kk, HasIds = 1, IdsDiv = 1, WritePos = 1 });
            if (dim > 0) qk(stream, cq * dim, dp, bestPos, qp, mp, dim, kk);
            dk(stream, cq * mp, qp, dp, s1, sf, mp, dim, 1);
            SelectIlgpu.Launch(acc, stream, cq, sf, tc, order.SubView((long)q0 * mp, (long)cq * mp), scores.SubView((long)q0 * mp,
                (long)cq * mp), bestPos,
                new SelectParams { L = mp, K = mp, HasIds = 1, IdsDiv = 1, WritePos = 0 });
        }
    }
}
