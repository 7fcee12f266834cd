using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Retrieval;

/// <summary>
/// <c>rerank_refine</c>, managed, one query per work item (see <see cref="RerankRefineReference"/> for the math). The
/// top-m' shortlist comes from a streaming k-best heap over db (no score row); each member's Gram row is computed once
/// (TensorPrimitives.Dot) and its k' neighbours picked with a small heap; d' rows, S1, q' and S are float vectors in
/// per-worker scratch, grown only when a call needs more than any before.
/// </summary>
internal static unsafe class RerankRefineSimd
{
    /// <summary>Runs into order [Q,m'] and scores [Q,m'].</summary>
    public static void Run(ReadOnlySpan<float> query, ReadOnlySpan<float> db, Span<long> order, Span<float> scores, int queries, int n,
        int dim, int m, int k, float beta, WorkerPool pool)
    {
        int mp = Math.Min(m, n);
        if (queries == 0 || mp == 0) return;
        fixed (float* pq = query) fixed (float* pd = db) fixed (long* po = order) fixed (float* ps = scores)
        {
            var job = Job.Cached ??= new();
            job.Q = pq; job.Db = pd; job.Order = po; job.Scores = ps; job.N = n; job.D = dim; job.M = mp; job.K = k; job.Beta = beta;
            if (job.Scratch.Length < pool.Workers) job.Scratch = new Scratch[pool.Workers];
            for (int w = 0; w < pool.Workers; w++) (job.Scratch[w] ??= new()).Ensure(mp, dim);
            pool.Run(job, queries);
        }
    }

    private sealed class Scratch
    {
        internal float[] Hs = [], G = [], S1 = [], S = [], Dp = [], Qp = [], Ns = [];
        internal int[] Hp = [], Np = [];
        internal long[] T = [];

        internal void Ensure(int mp, int dim)
        {
            if (Hs.Length < mp)
            {
                Hs = new float[mp]; Hp = new int[mp]; G = new float[mp]; S1 = new float[mp]; S = new float[mp]; T
                = new long[mp]; Ns = new float[mp]; Np = new int[mp];
            }
            if (Dp.Length < (long)mp * dim) Dp = new float[mp * dim];
            if (Qp.Length < dim) Qp = new float[dim];
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* Q, Db, Scores; internal long* Order; internal int N, D, M, K; internal float Beta;
        internal Scratch[] Scratch = [];

        private ReadOnlySpan<float> Row(long i) => new(Db + i * D, D);

        public void Execute(int q, int worker)
        {
            var sc = Scratch[worker];
            int mp = M, kn = Math.Max(0, Math.Min(K, mp - 1)), kk = Math.Min(K + 1, mp);
            var qv = new ReadOnlySpan<float>(Q + (long)q * D, D);
            int count = 0;
            var hs = sc.Hs.AsSpan(0, mp); var hp = sc.Hp.AsSpan(0, mp);
            for (int i = 0; i < N; i++) TopK.Offer(hs, hp, ref count, mp, TensorPrimitives.Dot(qv, Row(i)), i);
            TopK.SortBestFirst(hs, hp, count);
            var t = sc.T.AsSpan(0, mp);
            for (int a = 0; a < mp; a++) t[a] = hp[a];
            var g = sc.G.AsSpan(0, mp); var s1 = sc.S1.AsSpan(0, mp);
            for (int a = 0; a < mp; a++)
            {
                var xa = Row(t[a]);
                for (int b = 0; b < mp; b++) g[b] = b == a ? 0 : TensorPrimitives.Dot(xa, Row(t[b]));
                int nc = 0;
                var ns = sc.Ns.AsSpan(0, Math.Max(kn, 1)); var np = sc.Np.AsSpan(0, Math.Max(kn, 1));
                for (int b = 0; b < mp; b++) if (b != a) TopK.Offer(ns, np, ref nc, kn, g[b], b, t);
                var dp = sc.Dp.AsSpan(a * D, D);
                xa.CopyTo(dp);
                float den = 1;
                for (int j = 0; j < nc; j++)
                {
                    float w = Beta * ns[j];
                    den += w;
                    TensorPrimitives.MultiplyAdd(Row(t[np[j]]), w, dp, dp);
                }
                TensorPrimitives.Multiply(dp, 1f / den, dp);
                s1[a] = TensorPrimitives.Dot(qv, dp);
            }
            // q' = max of the d' of the kk best by S1
            var qp = sc.Qp.AsSpan(0, D);
            int c2 = 0;
            var bs = sc.Ns.AsSpan(0, kk); var bp = sc.Np.AsSpan(0, kk);
            for (int a = 0; a < mp; a++) TopK.Offer(bs, bp, ref c2, kk, s1[a], a, t);
            qp.Fill(float.NegativeInfinity);
            for (int j = 0; j < c2; j++) TensorPrimitives.Max(qp, sc.Dp.AsSpan(bp[j] * D, D), qp);
            var s = sc.S.AsSpan(0, mp);
            for (int a = 0; a < mp; a++) s[a] = (s1[a] + TensorPrimitives.Dot(qp, sc.Dp.AsSpan(a * D, D))) / 2;
            int got = TopK.Select(s, mp, hs, hp, t);
            for (int j = 0; j < got; j++) { Order[(long)q * mp + j] = t[hp[j]]; Scores[(long)q * mp + j] = hs[j]; }
        }
    }
}
