using System.Runtime.CompilerServices;
using PoolKernels.Kernels.Retrieval;

namespace PoolKernels.Kernels.Quantized;

/// <summary>
/// <c>binary_search</c>, managed: the queries are packed once (<see cref="QuantizeSimd"/>, XOR 0x80 per byte for an I8 db),
/// <see cref="HammingTopkSimd"/> finds each query's min(N, k·multiplier) candidates, and the candidates are rescored in
/// float32 in dimension order, Σ_d ±query_d (the bit picks the sign), into a bounded heap per query (ties lower db row),
/// in parallel over queries. Without rescoring the first k candidates are returned with score D − 2·distance. Scratch is
/// O(Q·(W + k·multiplier)) and grows only.
/// </summary>
internal static unsafe class BinarySearchSimd
{
    /// <summary>Runs into index [Q,k] and score [Q,k]; db holds [N, ceil(D/8)] bytes.</summary>
    public static void Run(ReadOnlySpan<float> query, ReadOnlySpan<byte> db, bool dbSigned, Span<long> index, Span<float> score,
        int queries, int n, int dim, int k, int multiplier, bool rescore, WorkerPool pool)
    {
        if (queries == 0 || k == 0) return;
        int w = (dim + 7) / 8;
        int c = (int)Math.Min(n, (long)k * multiplier);
        var job = Job.Cached ??= new();
        if (job.Packed.Length < (long)queries * w) job.Packed = GC.AllocateUninitializedArray<byte>(checked(queries * w), pinned: true);
        if (job.CandIndex.Length < (long)queries * c)
        {
            job.CandIndex = GC.AllocateUninitializedArray<long>(checked(queries * c), pinned: true);
            job.CandDist = GC.AllocateUninitializedArray<int>(queries * c, pinned: true);
        }
        pool.EnsureScratch(ref job.HeapS, k);
        pool.EnsureScratch(ref job.HeapP, k);
        QuantizeSimd.Run(query, default, default, job.Packed, queries, dim, pack: true, signed: dbSigned, pool);
        fixed (byte* pp = job.Packed) fixed (byte* pd = db) fixed (long* ci = job.CandIndex) fixed (int* cd = job.CandDist)
        fixed (float* pq = query) fixed (long* pi = index) fixed (float* ps = score)
        {
            HammingTopkSimd.Run(pp, pd, ci, cd, queries, n, w, c, pool);
            if (!rescore)
            {
                for (int q = 0; q < queries; q++)
                    for (int j = 0; j < k; j++)
                    {
                        pi[(long)q * k + j] = ci[(long)q * c + j];
                        ps[(long)q * k + j] = dim - 2 * cd[(long)q * c + j];
                    }
                return;
            }
            job.Q = pq; job.Db = pd; job.Index = pi; job.Score = ps; job.Cand = ci;
            job.D = dim; job.W = w; job.K = k; job.C = c; job.Flip = dbSigned ? (byte)0x80 : (byte)0;
            pool.Run(job, queries);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal byte[] Packed = [];
        internal long[] CandIndex = [];
        internal int[] CandDist = [];
        internal float[]?[] HeapS = [];
        internal int[]?[] HeapP = [];
        internal float* Q, Score; internal byte* Db; internal long* Index, Cand; internal int D, W, K, C; internal byte Flip;

        public void Execute(int q, int worker)
        {
            var hs = HeapS[worker]!.AsSpan(0, K); var hp = HeapP[worker]!.AsSpan(0, K);
            float* x = Q + (long)q * D;
            int count = 0;
            for (int j = 0; j < C; j++)
            {
                long r = Cand[(long)q * C + j];
                byte* bits = Db + r * W;
                float s = Rescore(x, bits, D, Flip);
                TopK.Offer(hs, hp, ref count, K, s, (int)r);
            }
            TopK.SortBestFirst(hs, hp, count);
            for (int e = 0; e < count; e++) { Index[(long)q * K + e] = hp[e]; Score[(long)q * K + e] = hs[e]; }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float Rescore(float* x, byte* bits, int dim, byte flip)
        {
            float s = 0;
            for (int d = 0; d < dim; d++)
            {
                int b = (bits[d >> 3] ^ flip) >> (7 - (d & 7));
                // the sign bit of x flipped when the db bit is 0: exact ±x
                s += BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(x[d]) ^ (((b & 1) ^ 1) << 31));
            }
            return s;
        }
    }
}
