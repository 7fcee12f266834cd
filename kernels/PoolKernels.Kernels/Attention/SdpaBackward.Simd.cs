using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>sdpa_backward</c> / <c>sdpa_varlen_backward</c>, managed SIMD on the <see cref="WorkerPool"/> (the rules of
/// <see cref="SdpaBackwardReference"/>, in float), FlashAttention-2's recomputation in two passes, each output row
/// written by exactly one item in a fixed order, so the bits do not depend on the thread count (no atomics):
/// (1) per (sequence, query head, block of <see cref="BlockRows"/> query rows): every row's scores over its allowed keys
/// (one row of Tk floats of per-worker scratch, never a Tq×Tk matrix), lse_i, P_ij = e^{s_ij - lse_i},
/// dP_ij = dO_i·v_j, D_i = Σ_j P_ij·dP_ij and dQ_i = scale·Σ_j P_ij·(dP_ij - D_i)·k_j (j ascending); lse and D are kept
/// (2·B·Hq·Tq floats); (2) per (sequence, key/value head, block of key rows): dV_j = Σ P_ij·dO_i and
/// dK_j = scale·Σ dS_ij·q_i over the group's query heads in order, then the rows i ascending, P recomputed from the kept
/// lse. Non-F32 q/k/v and masks are widened into kept scratch first; a steady-state call allocates nothing.
/// </summary>
internal static unsafe class SdpaBackwardSimd
{
    /// <summary>Query (pass 1) or key (pass 2) rows per work item.</summary>
    public const int BlockRows = 16;

    /// <summary>Runs the operation on <paramref name="pool"/>. Arguments are assumed validated; no score modifier is set.</summary>
    public static void Run<T, TBias, TMask, TIdx>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<TBias> attnMask,
        ReadOnlySpan<TMask> keyPadding, ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK, ReadOnlySpan<float> dOut, Span<float> dq,
        Span<float> dk, Span<float> dv, in SdpaParams p, WorkerPool pool)
        where T : struct where TBias : unmanaged where TMask : unmanaged where TIdx : unmanaged
    {
        if (p.Hkv == 0 || p.Batch == 0) { dq.Clear(); dk.Clear(); dv.Clear(); return; }
        var job = Job.Cached ??= new Job();
        job.P = p;
        bool f32 = typeof(T) == typeof(float);
        Grow(ref job.QF, f32 ? 0 : q.Length); Grow(ref job.KF, f32 ? 0 : k.Length); Grow(ref job.VF, f32 ? 0 : v.Length);
        ReadOnlySpan<float> qf = Elements.AsFloats(q, job.QF), kf = Elements.AsFloats(k, job.KF), vf = Elements.AsFloats(v, job.VF);
        ReadOnlySpan<float> bias = default;
        if (p.HasAttnMask != 0)
        {
            if (typeof(TBias) == typeof(byte) || typeof(TBias) == typeof(bool))
            {
                Grow(ref job.Bias, attnMask.Length);
                for (int i = 0; i < attnMask.Length; i++) job.Bias[i] = SdpaHost.Bias(attnMask[i]);
                bias = job.Bias.AsSpan(0, attnMask.Length);
            }
            else
            {
                Grow(ref job.Bias, typeof(TBias) == typeof(float) ? 0 : attnMask.Length);
                bias = Elements.AsFloats(attnMask, job.Bias);
            }
        }
        if (job.Keep.Length < keyPadding.Length) job.Keep = new byte[keyPadding.Length];
        if (p.HasKeyPadding != 0)
            for (int i = 0; i < keyPadding.Length; i++) job.Keep[i] = Elements.Keep(keyPadding[i]) ? (byte)1 : (byte)0;
        if (job.Cu.Length < 2L * (p.Batch + 1)) job.Cu = new long[2 * (p.Batch + 1)];
        if (p.Varlen != 0)
            for (int i = 0; i <= p.Batch; i++) { job.Cu[i] = Elements.ToInt64(cuQ[i]); job.Cu[p.Batch + 1 + i] = Elements.ToInt64(cuK[i]); }
        Grow(ref job.Lse, (long)p.Batch * p.Hq * p.Tq); Grow(ref job.D, (long)p.Batch * p.Hq * p.Tq);
        pool.EnsureScratch(ref job.Rows, 2L * p.Tk + 1);
        int qBlocks = (p.Tq + BlockRows - 1) / BlockRows, kBlocks = (p.Tk + BlockRows - 1) / BlockRows;
        fixed (float* pq = qf) fixed (float* pk = kf) fixed (float* pv = vf) fixed (float* pb = bias) fixed (float* pdo = dOut)
        fixed (float* pdq = dq) fixed (float* pdk = dk) fixed (float* pdv = dv) fixed (long* cu = job.Cu) fixed (byte* keep = job.Keep)
        {
            job.Q = pq; job.K = pk; job.V = pv; job.B = pb; job.DO = pdo; job.DQ = pdq; job.DK = pdk; job.DV = pdv; job.CuQ = cu;
            job.CuK = cu + p.Batch + 1; job.KeepK = keep;
            // rows a varlen grid does not reach (none: every row belongs to a sequence) and an empty sequence stay as cleared
            job.QBlocks = qBlocks; job.KBlocks = kBlocks;
            job.Phase = 1; pool.Run(job, p.Batch * p.Hq * qBlocks);
            job.Phase = 2; pool.Run(job, p.Batch * p.Hkv * kBlocks);
            job.Q = job.K = job.V = job.B = job.DO = job.DQ = job.DK = job.DV = null; job.CuQ = job.CuK = null; job.KeepK = null;
        }
    }

    private static void Grow(ref float[] a, long length)
    {
        if (a.Length < length) a = new float[checked((int)length)];
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal SdpaParams P;
        internal float* Q, K, V, B, DO, DQ, DK, DV;
        internal long* CuQ, CuK;
        internal byte* KeepK;
        internal int Phase, QBlocks, KBlocks;
        internal float[] QF = [], KF = [], VF = [], Bias = [], Lse = [], D = [];
        internal byte[] Keep = [];
        internal long[] Cu = [];
        internal float[]?[] Rows = [];

        /// <summary>The score of (i, j) of head h, -inf when a mask forbids the key (the causal/window range is the caller's).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private float Score(in SdpaParams p, int b, int h, int i, int j, int tk, float* qi, float* kj)
        {
            if (p.HasKeyPadding != 0 && KeepK[b * tk + j] == 0) return float.NegativeInfinity;
            float bias = 0f;
            if (p.HasAttnMask != 0)
            {
                bias = B[p.MaskBatch * b + p.MaskHead * h + (long)i * tk + j];
                if (bias == float.NegativeInfinity) return bias;
            }
            return p.Scale * TensorPrimitives.Dot(new ReadOnlySpan<float>(qi, p.E), new ReadOnlySpan<float>(kj, p.E)) + bias;
        }

        public void Execute(int item, int worker)
        {
            ref readonly var p = ref P;
            if (Phase == 1) QueryBlock(p, item, worker);
            else KeyBlock(p, item);
        }

        private void QueryBlock(in SdpaParams p, int item, int worker)
        {
            int bh = item / QBlocks, i0 = item % QBlocks * BlockRows, h = bh % p.Hq, b = bh / p.Hq, hk = h / p.Group;
            SdpaHost.Sequence(p, CuQ, CuK, b, out int tq, out int tk, out long qb, out long kb, out long vb, out long ob, out _);
            fixed (float* rows = Rows[worker])
            {
                float* sc = rows, dpv = rows + p.Tk;
                int e = p.E, ev = p.Ev;
                for (int i = i0; i < Math.Min(tq, i0 + BlockRows); i++)
                {
                    float* qi = Q + qb + p.QHead * h + p.QRow * i, doi = DO + ob + p.OHead * h + p.ORow * i;
                    var dqi = new Span<float>(DQ + qb + p.QHead * h + p.QRow * i, e);
                    dqi.Clear();
                    long stat = ((long)b * p.Hq + h) * p.Tq + i;
                    p.KeyRange(i, tq, tk, out int lo, out int hi);
                    float m = float.NegativeInfinity;
                    for (int j = lo; j <= hi; j++)
                    {
                        float s = Score(p, b, h, i, j, tk, qi, K + kb + p.KHead * hk + p.KRow * j);
                        sc[j - lo] = s;
                        if (!(s <= m)) m = float.IsNaN(m) ? m : s;
                    }
                    if (m == float.NegativeInfinity) { Lse[stat] = float.NegativeInfinity; D[stat] = 0f; continue; }
                    float sum = 0f;
                    for (int j = lo; j <= hi; j++) sum += MathF.Exp(sc[j - lo] - m);
                    float lse = m + MathF.Log(sum), d = 0f;
                    var dOi = new ReadOnlySpan<float>(doi, ev);
                    for (int j = lo; j <= hi; j++)
                    {
                        float s = sc[j - lo];
                        if (s == float.NegativeInfinity) { sc[j - lo] = 0f; continue; }
                        float pr = MathF.Exp(s - lse), dp = TensorPrimitives.Dot(dOi,
                            new ReadOnlySpan<float>(V + vb + p.VHead * hk + p.VRow * j, ev));
                        sc[j - lo] = pr; dpv[j - lo] = dp;
                        d += pr * dp;
                    }
                    for (int j = lo; j <= hi; j++)
                    {
                        float pr = sc[j - lo];
                        if (pr == 0f) continue;
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(K + kb + p.KHead * hk + p.KRow * j, e),
                            pr * (dpv[j - lo] - d) * p.Scale, dqi, dqi);
                    }
                    Lse[stat] = lse; D[stat] = d;
                }
            }
        }

        private void KeyBlock(in SdpaParams p, int item)
        {
            int bhk = item / KBlocks, j0 = item % KBlocks * BlockRows, hk = bhk % p.Hkv, b = bhk / p.Hkv, group = p.Group;
            SdpaHost.Sequence(p, CuQ, CuK, b, out int tq, out int tk, out long qb, out long kb, out long vb, out long ob, out _);
            int e = p.E, ev = p.Ev;
            for (int j = j0; j < Math.Min(tk, j0 + BlockRows); j++)
            {
                float* kj = K + kb + p.KHead * hk + p.KRow * j;
                var vj = new ReadOnlySpan<float>(V + vb + p.VHead * hk + p.VRow * j, ev);
                var dkj = new Span<float>(DK + kb + p.KHead * hk + p.KRow * j, e);
                var dvj = new Span<float>(DV + vb + p.VHead * hk + p.VRow * j, ev);
                dkj.Clear(); dvj.Clear();
                if (p.HasKeyPadding != 0 && KeepK[b * tk + j] == 0) continue;
                for (int h = hk * group; h < (hk + 1) * group; h++)
                    for (int i = 0; i < tq; i++)
                    {
                        p.KeyRange(i, tq, tk, out int lo, out int hi);
                        if (j < lo || j > hi) continue;
                        long stat = ((long)b * p.Hq + h) * p.Tq + i;
                        float lse = Lse[stat];
                        if (lse == float.NegativeInfinity) continue;
                        float* qi = Q + qb + p.QHead * h + p.QRow * i;
                        float s = Score(p, b, h, i, j, tk, qi, kj);
                        if (s == float.NegativeInfinity) continue;
                        float pr = MathF.Exp(s - lse);
                        if (pr == 0f) continue;
                        var dOi = new ReadOnlySpan<float>(DO + ob + p.OHead * h + p.ORow * i, ev);
                        TensorPrimitives.MultiplyAdd(dOi, pr, dvj, dvj);
                        float ds = pr * (TensorPrimitives.Dot(dOi, vj) - D[stat]) * p.Scale;
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(qi, e), ds, dkj, dkj);
                    }
            }
        }
    }
}
