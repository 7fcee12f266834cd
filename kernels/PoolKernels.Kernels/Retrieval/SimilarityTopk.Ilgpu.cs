using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using PoolKernels.Kernels.Spatial;

namespace PoolKernels.Kernels.Retrieval;

/// <summary>Parameters of <see cref="SelectIlgpu.Kernel"/>.</summary>
internal struct SelectParams
{
    /// <summary>Row length (candidates per row) and how many to select (at most the candidates available).</summary>
    public int L, K;
    /// <summary>1 when ids are given: the tie id of position p in row r is ids[(r / IdsDiv)·L + p]; else p.</summary>
    public int HasIds, IdsDiv;
    /// <summary>1 to skip position r % L in row r (a Gram row's own diagonal).</summary>
    public int ExcludeDiag;
    /// <summary>1 to write the selected positions too.</summary>
    public int WritePos;
}

/// <summary>
/// Row-wise top-k on ILGPU, one group per row, without sorting or marking: round t finds the best candidate that ranks
/// strictly after round t−1's pick (<see cref="Ranking"/> is a strict total order), each thread scanning a strided slice
/// and the group reducing through shared memory. k rounds cost O(k·L / group) per row and no extra memory.
/// </summary>
internal static class SelectIlgpu
{
    /// <summary>The selection kernel: grid = rows, group = a power of two.</summary>
    [GpuKernel]
    public static void Kernel(ArrayView<float> scores, ArrayView<long> ids, ArrayView<long> outId, ArrayView<float> outScore,
        ArrayView<int> outPos, SelectParams q)
    {
        var ss = SharedMemory.Allocate<float>(GroupReduce.MaxGroup);
        var si = SharedMemory.Allocate<long>(GroupReduce.MaxGroup);
        var sp = SharedMemory.Allocate<int>(GroupReduce.MaxGroup);
        int row = Grid.IdxX, tid = Group.IdxX, g = Group.DimX;
        long rowBase = (long)row * q.L, idBase = q.HasIds != 0 ? (long)(row / q.IdsDiv) * q.L : 0;
        int exclude = q.ExcludeDiag != 0 ? row % q.L : -1;
        float prevS = 0; long prevId = 0; bool hasPrev = false;
        for (int t = 0; t < q.K; t++)
        {
            float bs = 0; long bi = 0; int bp = -1;
            for (int p = tid; p < q.L; p += g)
            {
                if (p == exclude) continue;
                float s = scores[rowBase + p];
                long id = q.HasIds != 0 ? ids[idBase + p] : p;
                if (hasPrev && !Ranking.Better(prevS, prevId, s, id)) continue;
                if (bp < 0 || Ranking.Better(s, id, bs, bi)) { bs = s; bi = id; bp = p; }
            }
            ss[tid] = bs; si[tid] = bi; sp[tid] = bp;
            Group.Barrier();
            for (int h = g / 2; h > 0; h >>= 1)
            {
                if (tid < h)
                {
                    int op = sp[tid + h];
                    if (op >= 0 && (sp[tid] < 0 || Ranking.Better(ss[tid + h], si[tid + h], ss[tid], si[tid])))
                    {
                        ss[tid] = ss[tid + h]; si[tid] = si[tid + h]; sp[tid] = op;
                    }
                }
                Group.Barrier();
            }
            prevS = ss[0]; prevId = si[0]; hasPrev = true;
            if (tid == 0)
            {
                long o = (long)row * q.K + t;
                outId[o] = si[0]; outScore[o] = ss[0];
                if (q.WritePos != 0) outPos[o] = sp[0];
            }
            Group.Barrier();
        }
    }

    /// <summary>Launches the selection over <paramref name="rows"/> rows.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, int rows, ArrayView<float> scores, ArrayView<long> ids,
        ArrayView<long> outId, ArrayView<float> outScore, ArrayView<int> outPos, SelectParams q)
    {
        if (rows == 0 || q.K == 0) return;
        var k = KernelCache.Get(accelerator, Kernel,
            a => a.LoadKernel<ArrayView<float>, ArrayView<long>, ArrayView<long>, ArrayView<float>, ArrayView<int>, SelectParams>(Kernel));
        k(stream, new KernelConfig(rows, GroupReduce.GroupSize(accelerator)), scores, ids, outId, outScore, outPos, q);
    }
}

/// <summary>
/// <c>similarity_topk</c>, ILGPU: a score kernel (one thread per (query, db row), optional cosine through row norms
/// computed once) fills a score block for a chunk of queries (at most 2^24 scores at a time), then
/// <see cref="SelectIlgpu"/> takes each row's top k.
/// </summary>
internal static class SimilarityTopkIlgpu
{
    /// <summary>Scores of queries q0.. against every db row; <paramref name="i"/> runs over chunk·N.</summary>
    [GpuKernel]
    public static void ScoreKernel(Index1D i, ArrayView<float> query, ArrayView<float> db, ArrayView<float> qNorm, ArrayView<float> dNorm,
        ArrayView<float> scores, int q0, int n, int dim, int cosine)
    {
        int qi = q0 + i / n, r = i % n;
        long qb = (long)qi * dim, rb = (long)r * dim;
        float s = 0;
        for (int d = 0; d < dim; d++) s += query[qb + d] * db[rb + d];
        if (cosine != 0) s = s * (1f / qNorm[qi]) * (1f / dNorm[r]);
        scores[i] = s;
    }

    /// <summary>Row norms max(‖row‖, 1e-12): one group per row (the scale_gem kernel).</summary>
    public static void Norms(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> rows, ArrayView<float> norms, int count,
        int dim)
    {
        if (count == 0) return;
        var nk = KernelCache.Get(accelerator, ScaleGemIlgpu.NormKernel, a => a.LoadKernel<ArrayView<float>, ArrayView<float>,
            int>(ScaleGemIlgpu.NormKernel));
        nk(stream, new KernelConfig(count, GroupReduce.GroupSize(accelerator)), rows, norms, dim);
    }

    /// <summary>Runs the whole operation into index [Q,k] (long) and score [Q,k].</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> query, ArrayView<float> db,
        ArrayView<long> index, ArrayView<float> score,
        ArrayView<long> dummyIds, int queries, int n, int dim, int k, bool cosine, Func<long, ArrayView<float>> temp)
    {
        if (queries == 0 || k == 0) return;
        // temporaries from the caller's scope, freed once the stream is idle (no synchronization here)
        var qn = temp(Math.Max(cosine ? queries : 1, 1));
        var dn = temp(Math.Max(cosine ? n : 1, 1));
        if (cosine) { Norms(accelerator, stream, query, qn, queries, dim); Norms(accelerator, stream, db, dn, n, dim); }
        int chunk = (int)Math.Max(1, Math.Min(queries, (1L << 24) / Math.Max(1, n)));
        var scores = temp((long)chunk * n);
        var sk = KernelCache.Get(accelerator, ScoreKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                int, int, int, int>(ScoreKernel));
        for (int q0 = 0; q0 < queries; q0 += chunk)
        {
            int cq = Math.Min(chunk, queries - q0);
            sk(stream, cq * n, query, db, qn, dn, scores, q0, n, dim, cosine ? 1 : 0);
            SelectIlgpu.Launch(accelerator, stream, cq, scores, dummyIds, index.SubView((long)q0 * k, (long)cq * k),
                score.SubView((long)q0 * k, (long)cq * k),
                dummyIds.Cast<int>(), new SelectParams { L = n, K = k, HasIds = 0, IdsDiv = 1 });
        }
    }
}
