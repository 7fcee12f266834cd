using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>sdpa</c> / <c>sdpa_varlen</c> / <c>sdpa_paged</c> with few query rows (decode: Tq ≤ <see cref="MaxRows"/> rows per
/// head group), managed SIMD, split over keys (flash-decoding). Decode reads every key and value once and does little
/// arithmetic per byte, so it is bound by reading K and V: the tiled kernel would compute 64 query lanes for one row.
/// <para>Work items are (sequence b, split of <see cref="SplitKeys"/> keys) when Hq·Tq ≤ <see cref="MaxItemRows"/> — every
/// key/value head, so a cache slot's heads are read in order — else (sequence, key/value head, split). An item serves all
/// query rows of its heads together (GQA: each K and V row is read once for its whole group): scaled q rows are
/// staged as float; per block of <see cref="BlockK"/> keys it computes R×16 scores with a vector dot per (row, key) over E,
/// applies softcap, ALiBi, causal/window bounds and key padding, takes the block max, one rescale of the row's
/// accumulator, P = exp(s - m) by one vector exp, then acc += P·V row by row. F32 rows are read in place from q/k/v or the
/// paged cache (rows with E or Ev not a multiple of the vector width are copied to a zero-padded row first); F16/BF16 rows
/// are widened into a small buffer.</para>
/// <para>Each item writes its partial (m, l, acc) per row; a second pass merges the splits of a (sequence, head) in split
/// order (the attention_combine rule) and adds the sink. The split size is fixed, not derived from the worker count, so a
/// result has the same bits for every thread count and batch position. Scratch (kept between calls): per worker the q rows
/// and two staging rows, and the partials (items·R·(Ev + 2) floats); a steady-state call allocates nothing, and no score
/// matrix exists.</para>
/// </summary>
internal static unsafe class SdpaDecodeSimd
{
    /// <summary>Query rows (group·Tq) an item serves at most; beyond that the tiled kernel is used.</summary>
    public const int MaxRows = 16;
    /// <summary>Keys per split (fixed: results do not depend on the thread count).</summary>
    public const int SplitKeys = 512;
    /// <summary>Keys per block of scores.</summary>
    public const int BlockK = 16;
    /// <summary>Query rows an item serves when it takes every key/value head of its sequence (Hq·Tq at most this): the
    /// heads of one cache slot are contiguous ([P,S,Hkv,E]), so such an item reads whole slots, sequentially.</summary>
    public const int MaxItemRows = 128;

    /// <summary>True when the decode kernel serves <paramref name="p"/>: at most <see cref="MaxRows"/> rows per key/value
    /// head and no attn_mask (a [Tq,Tk] mask per head is the tiled kernel's case).</summary>
    public static bool Serves(in SdpaParams p) => p.HasAttnMask == 0 && p.Hkv > 0 && (long)p.Tq * p.Group <= MaxRows;

    /// <summary>Runs the operation on <paramref name="pool"/>. Arguments are assumed validated; <see cref="Serves"/> holds.</summary>
    public static void Run<T, TMask, TIdx>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<TMask> keyPadding,
        ReadOnlySpan<TIdx> cuQ, ReadOnlySpan<TIdx> cuK, ReadOnlySpan<float> mods, Span<float> output, Span<float> lse, in SdpaParams p,
            WorkerPool pool)
        where T : unmanaged where TMask : unmanaged where TIdx : unmanaged
    {
        if (p.Batch == 0 || p.Tq == 0) return;
        fixed (T* qp = q) fixed (T* kp = k) fixed (T* vp = v) fixed (TMask* pp = keyPadding) fixed (TIdx* cq = cuQ) fixed (TIdx* ck = cuK)
        fixed (float* op = output) fixed (float* lp = lse) fixed (float* mo = mods)
        {
            var job = Job<T, TMask, TIdx>.Cached ??= new();
            job.Q = qp; job.K = kp; job.V = vp; job.KeyPadding = pp; job.CuQ = cq; job.CuK = ck; job.Out = op; job.Lse = lp; job.Mods
                = mo; job.P = p;
            int w = job.Width = SdpaSimd.Lanes;
            job.EP = (p.E + w - 1) / w * w; job.EvP = (p.Ev + w - 1) / w * w;
            job.HeadsPerItem = (long)p.Hq * p.Tq <= MaxItemRows ? p.Hkv : 1;
            job.HeadChunks = p.Hkv / job.HeadsPerItem;
            job.Rows = p.Tq * p.Group * job.HeadsPerItem;
            job.Splits = Math.Max(1, (p.Tk + SplitKeys - 1) / SplitKeys);
            int items = checked(p.Batch * job.HeadChunks * job.Splits);
            long partial = (long)job.Rows * (job.EvP + 2);
            long need = items * partial + 16;
            if (job.Partials.Length < need) job.Partials = GC.AllocateUninitializedArray<float>(checked((int)need), pinned: true);
            // kbuf/vbuf hold one widened slot of every head the item serves (F16/BF16 caches: one conversion per slot)
            pool.EnsureScratch(ref job.Scratch, job.Rows * (job.EP + BlockK + 3) + (long)job.HeadsPerItem * (job.EP + job.EvP) + 64,
                pinned: true);
            pool.Run(job, items);
            job.Merge = true;
            pool.Run(job, p.Batch * job.HeadChunks);
            job.Merge = false;
            job.Q = null; job.K = null; job.V = null; job.Out = null; job.Lse = null; job.Mods = null;
        }
    }

    private sealed class Job<T, TMask, TIdx> : IParallelJob where T : unmanaged where TMask : unmanaged where TIdx : unmanaged
    {
        [ThreadStatic] internal static Job<T, TMask, TIdx>? Cached;
        internal T* Q, K, V; internal TMask* KeyPadding; internal TIdx* CuQ, CuK; internal float* Out, Lse, Mods;
        internal SdpaParams P;
        internal int Width, EP, EvP, Rows, Splits, HeadsPerItem, HeadChunks;
        internal bool Merge;
        internal float[] Partials = [];
        internal float[]?[] Scratch = [];

        public void Execute(int item, int worker)
        {
            if (Merge) { MergeSplits(item); return; }
            if (Width == 16) Execute<Vector512<float>, V512>(item, worker);
            else if (Width == 8) Execute<Vector256<float>, V256>(item, worker);
            else Execute<Vector128<float>, V128>(item, worker);
        }

        /// <summary>Where sequence b lives (<see cref="SdpaHost.Sequence{TIdx}(in SdpaParams, TIdx*, TIdx*, int, out int, out int,
        /// out long, out long, out long, out long, out long)"/>).</summary>
        private void Sequence(int b, out int tq, out int tk, out long qb, out long kb, out long vb, out long ob, out long lb) =>
            SdpaHost.Sequence(P, CuQ, CuK, b, out tq, out tk, out qb, out kb, out vb, out ob, out lb);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private long KeyRow(in SdpaParams p, int b, int j) =>
            p.Paged == 0 ? j : p.PagedRow(Elements.ToInt64(CuK[(long)b * p.TableStride + j / p.PageSize]), j);

        /// <summary>A row of <paramref name="n"/> elements as floats padded with zeros to <paramref name="np"/>: in place for
        /// F32 when n = np, else widened or copied into <paramref name="buf"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float* Row(T* src, int n, int np, float* buf)
        {
            if (typeof(T) == typeof(float) && n == np) return (float*)src;
            var dst = new Span<float>(buf, np);
            Elements.AsFloats(new ReadOnlySpan<T>(src, n), dst).CopyTo(dst);
            dst[n..].Clear();
            return buf;
        }

        private static void Widen(T* src, int n, float* dst)
        {
            var d = new Span<float>(dst, n);
            Elements.AsFloats(new ReadOnlySpan<T>(src, n), d).CopyTo(d);
        }

        private void Execute<TV, TOps>(int item, int worker) where TV : struct where TOps : struct, IVec<TV>
        {
            ref readonly var p = ref P;
            int split = item % Splits, bc = item / Splits, chunk = bc % HeadChunks, b = bc / HeadChunks;
            Sequence(b, out int tq, out int tk, out long qb, out long kb, out long vb, out _, out _);
            int rows = Rows, group = p.Group, e = p.E, ev = p.Ev, ep = EP, evp = EvP, w = TOps.Width, hp = HeadsPerItem, hk0 = chunk * hp;
            int perHead = group * p.Tq; // rows of one key/value head: r = hl·perHead + g·Tq + i
            float* part = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Partials)) + (long)item * rows * (evp + 2);
            float* acc = part, m = part + (long)rows * evp, l = m + rows;
            new Span<float>(acc, rows * evp).Clear();
            new Span<float>(m, rows).Fill(float.NegativeInfinity);
            new Span<float>(l, rows).Clear();
            int j0 = split * SplitKeys, j1 = Math.Min(tk, j0 + SplitKeys);
            if (j0 >= j1) return;

            float* qf = WorkerPool.Aligned64(Scratch[worker]!), s = qf + (long)rows * ep, kbuf = s + rows * BlockK,
                vbuf = kbuf + (long)hp * ep;
            int* rLo = (int*)(vbuf + (long)hp * evp), rHi = rLo + rows;
            // a slot's heads [hp, E] are contiguous and unpadded: widen them with one conversion (non-F32 caches)
            bool slotK = typeof(T) != typeof(float) && ep == e && p.KHead == e, slotV = typeof(T) != typeof(float) && evp == ev
                && p.VHead == ev;
            float* slope = (float*)(rHi + rows);
            int lo = int.MaxValue, hi = int.MinValue;
            for (int r = 0; r < rows; r++)
            {
                int hl = r / perHead, g = r / p.Tq % group, i = r % p.Tq, h = (hk0 + hl) * group + g;
                if (i < tq)
                {
                    p.KeyRange(i, tq, tk, out rLo[r], out rHi[r]);
                    float sc = p.Scale;
                    var dst = new Span<float>(qf + (long)r * ep, ep);
                    Elements.AsFloats(new ReadOnlySpan<T>(Q + qb + p.QHead * h + p.QRow * i, e), dst).CopyTo(dst);
                    dst[e..].Clear();
                    for (int d = 0; d < e; d++) dst[d] *= sc;
                }
                else { rLo[r] = 0; rHi[r] = -1; new Span<float>(qf + (long)r * ep, ep).Clear(); }
                if (rHi[r] >= rLo[r]) { lo = Math.Min(lo, rLo[r]); hi = Math.Max(hi, rHi[r]); }
                slope[r] = p.HasAlibi != 0 ? Mods[p.AlibiBatch * b + h] : 0f;
            }
            j0 = Math.Max(j0, lo); j1 = Math.Min(j1, hi + 1);
            int off = p.Offset(tq, tk);
            // F32 rows read in place: four query rows of a head share each K and V load (register-blocked; same bits)
            bool inPlace = typeof(T) == typeof(float) && ep == e && evp == ev;
            long* keyRow = stackalloc long[BlockK];
            int* kept = stackalloc int[BlockK];
            for (int t0 = j0; t0 < j1; t0 += BlockK)
            {
                int nk = Math.Min(BlockK, j1 - t0), nkept = 0;
                if (inPlace)
                {
                    for (int jj = 0; jj < nk; jj++)
                    {
                        int j = t0 + jj;
                        if (p.HasKeyPadding == 0 || Elements.Keep(KeyPadding[(long)b * tk + j]))
                        {
                            keyRow[jj] = KeyRow(p, b,
                            j); kept[nkept++] = jj;
                        }
                        else for (int r = 0; r < rows; r++) s[r * BlockK + jj] = float.NegativeInfinity;
                    }
                    for (int hl = 0; hl < hp; hl++)
                        BlockScores<TV, TOps>(qf, s, (float*)K + kb + p.KHead * (hk0 + hl), keyRow, kept, nkept, t0, hl * perHead,
                            (hl + 1) * perHead, rLo, rHi, slope, off);
                }
                else
                {
                    // scores s[r, jj] = scale·q_r·k_j (lanes past nk and masked keys -inf); a slot's heads are read in order
                    for (int jj = 0; jj < nk; jj++)
                    {
                        int j = t0 + jj;
                        bool keep = p.HasKeyPadding == 0 || Elements.Keep(KeyPadding[(long)b * tk + j]);
                        if (!keep) { for (int r = 0; r < rows; r++) s[r * BlockK + jj] = float.NegativeInfinity; continue; }
                        long row = KeyRow(p, b, j);
                        if (slotK) Widen(K + kb + p.KHead * hk0 + p.KRow * row, hp * e, kbuf);
                        for (int hl = 0; hl < hp; hl++)
                        {
                            float* kr = slotK ? kbuf + (long)hl * e : Row(K + kb + p.KHead * (hk0 + hl) + p.KRow * row, e, ep, kbuf);
                            for (int r = hl * perHead; r < (hl + 1) * perHead; r++)
                            {
                                if (j < rLo[r] || j > rHi[r]) { s[r * BlockK + jj] = float.NegativeInfinity; continue; }
                                float* qr = qf + (long)r * ep;
                                TV d0 = default, d1 = default;
                                int c = 0;
                                for (; c + 2 * w <= ep; c += 2 * w)
                                {
                                    d0 = TOps.Fma(TOps.Load(qr + c), TOps.Load(kr + c), d0);
                                    d1 = TOps.Fma(TOps.Load(qr + c + w), TOps.Load(kr + c + w), d1);
                                }
                                if (c < ep) d0 = TOps.Fma(TOps.Load(qr + c), TOps.Load(kr + c), d0);
                                float x = TOps.HSum(TOps.Add(d0, d1));
                                if (p.Softcap > 0) x = SoftCap(x, p.Softcap);
                                if (p.HasAlibi != 0) x -= slope[r] * MathF.Abs((float)((long)(r % p.Tq) + off - j));
                                s[r * BlockK + jj] = x;
                            }
                        }
                    }
                }
                for (int r = 0; r < rows; r++)
                    for (int jj = nk; jj < BlockK; jj++) s[r * BlockK + jj] = float.NegativeInfinity;
                // online softmax per row: block max, one rescale, P = exp(s - m)
                for (int r = 0; r < rows; r++)
                {
                    float* sr = s + r * BlockK;
                    float mx = m[r];
                    for (int jj = 0; jj < nk; jj++) mx = MathF.Max(mx, sr[jj]); // NaN propagates (MathF.Max)
                    if (mx == float.NegativeInfinity) { new Span<float>(sr, BlockK).Clear(); continue; } // nothing allowed yet: P = 0
                    if (mx != m[r])
                    {
                        float c = MathF.Exp(m[r] - mx); // 0 when m = -inf
                        TensorScale(acc + (long)r * evp, evp, c);
                        l[r] *= c; m[r] = mx;
                    }
                    var mv = TOps.Broadcast(mx);
                    TV sum = default;
                    for (int jj = 0; jj < BlockK; jj += w)
                    {
                        var pv = TOps.Exp(TOps.Sub(TOps.Load(sr + jj), mv));
                        TOps.Store(sr + jj, pv);
                        sum = TOps.Add(sum, pv);
                    }
                    l[r] += TOps.HSum(sum);
                }
                if (inPlace)
                {
                    // the kept keys of the block and their rows, as the score pass listed them
                    for (int hl = 0; hl < hp; hl++)
                        BlockValues<TV, TOps>(acc, s, (float*)V + vb + p.VHead * (hk0 + hl), keyRow, kept, nkept, hl * perHead,
                            (hl + 1) * perHead, evp, p.VRow);
                }
                else
                {
                    // acc_r += Σ_j P[r, j]·v_j (a slot's heads read in order; the rows' accumulators stay in L1)
                    for (int jj = 0; jj < nk; jj++)
                    {
                        int j = t0 + jj;
                        if (p.HasKeyPadding != 0 && !Elements.Keep(KeyPadding[(long)b * tk + j])) continue;
                        long row = KeyRow(p, b, j);
                        if (slotV) Widen(V + vb + p.VHead * hk0 + p.VRow * row, hp * ev, vbuf);
                        for (int hl = 0; hl < hp; hl++)
                        {
                            float* vr = slotV ? vbuf + (long)hl * ev : Row(V + vb + p.VHead * (hk0 + hl) + p.VRow * row, ev, evp, vbuf);
                            for (int r = hl * perHead; r < (hl + 1) * perHead; r++)
                            {
                                float pr = s[r * BlockK + jj];
                                if (pr == 0f) continue;
                                var pv = TOps.Broadcast(pr);
                                float* ar = acc + (long)r * evp;
                                for (int c = 0; c < evp; c += w) TOps.Store(ar + c, TOps.Fma(pv, TOps.Load(vr + c), TOps.Load(ar + c)));
                            }
                        }
                    }
                }
            }
        }

        /// <summary>Scores of rows [r0, r1) (one key/value head, whose K rows start at <paramref name="kh"/>) against the kept
        /// keys of the block starting at key t0: four rows at a time share each K load; per row the dot runs as in the
        /// generic loop (two accumulators over alternate vectors, then one horizontal sum), so the bits are the same.</summary>
        private void BlockScores<TV, TOps>(float* qf, float* s, float* kh, long* keyRow, int* kept, int nkept, int t0, int r0, int r1,
            int* rLo, int* rHi, float* slope, int off) where TV : struct where TOps : struct, IVec<TV>
        {
            ref readonly var p = ref P;
            int ep = EP, w = TOps.Width;
            long kRow = p.KRow;
            int r = r0;
            for (; r + 4 <= r1; r += 4)
            {
                float* q0 = qf + (long)r * ep, q1 = q0 + ep, q2 = q1 + ep, q3 = q2 + ep;
                for (int x = 0; x < nkept; x++)
                {
                    int jj = kept[x];
                    float* kr = kh + kRow * keyRow[jj];
                    TV a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
                    int c = 0;
                    for (; c + 2 * w <= ep; c += 2 * w)
                    {
                        TV k0 = TOps.Load(kr + c), k1 = TOps.Load(kr + c + w);
                        a0 = TOps.Fma(TOps.Load(q0 + c), k0, a0); b0 = TOps.Fma(TOps.Load(q0 + c + w), k1, b0);
                        a1 = TOps.Fma(TOps.Load(q1 + c), k0, a1); b1 = TOps.Fma(TOps.Load(q1 + c + w), k1, b1);
                        a2 = TOps.Fma(TOps.Load(q2 + c), k0, a2); b2 = TOps.Fma(TOps.Load(q2 + c + w), k1, b2);
                        a3 = TOps.Fma(TOps.Load(q3 + c), k0, a3); b3 = TOps.Fma(TOps.Load(q3 + c + w), k1, b3);
                    }
                    if (c < ep)
                    {
                        TV k0 = TOps.Load(kr + c);
                        a0 = TOps.Fma(TOps.Load(q0 + c), k0, a0); a1 = TOps.Fma(TOps.Load(q1 + c), k0, a1);
                        a2 = TOps.Fma(TOps.Load(q2 + c), k0, a2); a3 = TOps.Fma(TOps.Load(q3 + c), k0, a3);
                    }
                    int j = t0 + jj;
                    Score(s, r, jj, j, TOps.HSum(TOps.Add(a0, b0)), rLo, rHi, slope, off);
                    Score(s, r + 1, jj, j, TOps.HSum(TOps.Add(a1, b1)), rLo, rHi, slope, off);
                    Score(s, r + 2, jj, j, TOps.HSum(TOps.Add(a2, b2)), rLo, rHi, slope, off);
                    Score(s, r + 3, jj, j, TOps.HSum(TOps.Add(a3, b3)), rLo, rHi, slope, off);
                }
            }
            for (; r < r1; r++)
            {
                float* qr = qf + (long)r * ep;
                for (int x = 0; x < nkept; x++)
                {
                    int jj = kept[x];
                    float* kr = kh + kRow * keyRow[jj];
                    TV d0 = default, d1 = default;
                    int c = 0;
                    for (; c + 2 * w <= ep; c += 2 * w)
                    {
                        d0 = TOps.Fma(TOps.Load(qr + c), TOps.Load(kr + c), d0);
                        d1 = TOps.Fma(TOps.Load(qr + c + w), TOps.Load(kr + c + w), d1);
                    }
                    if (c < ep) d0 = TOps.Fma(TOps.Load(qr + c), TOps.Load(kr + c), d0);
                    Score(s, r, jj, t0 + jj, TOps.HSum(TOps.Add(d0, d1)), rLo, rHi, slope, off);
                }
            }
        }

        /// <summary>Stores row r's score of key j: −inf outside the row's key range, else the dot with softcap and ALiBi.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Score(float* s, int r, int jj, int j, float x, int* rLo, int* rHi, float* slope, int off)
        {
            ref readonly var p = ref P;
            if (j < rLo[r] || j > rHi[r]) { s[r * BlockK + jj] = float.NegativeInfinity; return; }
            if (p.Softcap > 0) x = SoftCap(x, p.Softcap);
            if (p.HasAlibi != 0) x -= slope[r] * MathF.Abs((float)((long)(r % p.Tq) + off - j));
            s[r * BlockK + jj] = x;
        }

        /// <summary>acc_r += Σ_j P[r, j]·v_j over the kept keys of the block, rows [r0, r1) of one key/value head. Four rows
        /// whose probabilities are all nonzero keep their accumulators in registers across the block's keys (each element
        /// still adds the keys in order, with one FMA each: the same bits as row by row); other rows skip P = 0 as the
        /// generic loop does.</summary>
        private static void BlockValues<TV, TOps>(float* acc, float* s, float* vh, long* keyRow, int* kept, int nkept, int r0, int r1,
            int evp, long vRow) where TV : struct where TOps : struct, IVec<TV>
        {
            int w = TOps.Width;
            int r = r0;
            for (; r + 4 <= r1; r += 4)
            {
                bool dense = true;
                for (int x = 0; x < nkept && dense; x++)
                {
                    int jj = kept[x];
                    dense = s[r * BlockK + jj] != 0f && s[(r + 1) * BlockK + jj] != 0f && s[(r + 2) * BlockK + jj] != 0f
                        && s[(r + 3) * BlockK + jj] != 0f;
                }
                if (!dense)
                {
                    for (int rr = r; rr < r + 4; rr++) RowValues<TV, TOps>(acc, s, vh, keyRow, kept, nkept, rr, evp,
                    vRow); continue;
                }
                float* s0 = s + r * BlockK, s1 = s0 + BlockK, s2 = s1 + BlockK, s3 = s2 + BlockK;
                float* c0 = acc + (long)r * evp, c1 = c0 + evp, c2 = c1 + evp, c3 = c2 + evp;
                for (int c = 0; c < evp; c += w)
                {
                    TV a0 = TOps.Load(c0 + c), a1 = TOps.Load(c1 + c), a2 = TOps.Load(c2 + c), a3 = TOps.Load(c3 + c);
                    for (int x = 0; x < nkept; x++)
                    {
                        int jj = kept[x];
                        TV vv = TOps.Load(vh + vRow * keyRow[jj] + c);
                        a0 = TOps.Fma(TOps.Broadcast(s0[jj]), vv, a0);
                        a1 = TOps.Fma(TOps.Broadcast(s1[jj]), vv, a1);
                        a2 = TOps.Fma(TOps.Broadcast(s2[jj]), vv, a2);
                        a3 = TOps.Fma(TOps.Broadcast(s3[jj]), vv, a3);
                    }
                    TOps.Store(c0 + c, a0); TOps.Store(c1 + c, a1); TOps.Store(c2 + c, a2); TOps.Store(c3 + c, a3);
                }
            }
            for (; r < r1; r++) RowValues<TV, TOps>(acc, s, vh, keyRow, kept, nkept, r, evp, vRow);
        }

        private static void RowValues<TV, TOps>(float* acc, float* s, float* vh, long* keyRow, int* kept, int nkept, int r, int evp,
            long vRow) where TV : struct where TOps : struct, IVec<TV>
        {
            int w = TOps.Width;
            float* ar = acc + (long)r * evp;
            for (int x = 0; x < nkept; x++)
            {
                int jj = kept[x];
                float pr = s[r * BlockK + jj];
                if (pr == 0f) continue;
                var pv = TOps.Broadcast(pr);
                float* vr = vh + vRow * keyRow[jj];
                for (int c = 0; c < evp; c += w) TOps.Store(ar + c, TOps.Fma(pv, TOps.Load(vr + c), TOps.Load(ar + c)));
            }
        }

        private static void TensorScale(float* x, int n, float c)
            => System.Numerics.Tensors.TensorPrimitives.Multiply(new ReadOnlySpan<float>(x, n), c,
            new Span<float>(x, n));

        /// <summary>cap·tanh(x/cap) as the vector form (Cephes tanhf).</summary>
        private static float SoftCap(float x, float cap)
        {
            float y = x / cap, a = MathF.Abs(y), t;
            if (a < 0.625f)
            {
                float z = y * y;
                t = ((((TanhConst.T0 * z + TanhConst.T1) * z + TanhConst.T2) * z + TanhConst.T3) * z + TanhConst.T4) * z * y + y;
            }
            else
            {
                float ex = MathF.Exp(-2f * a);
                t = (1f - ex) / (1f + ex);
                if (y < 0f) t = -t;
            }
            return cap * t;
        }

        /// <summary>Merges the splits of (sequence, key/value head) <paramref name="bhk"/> in split order, adds the sink and
        /// writes out and lse of its rows.</summary>
        private void MergeSplits(int bhk)
        {
            ref readonly var p = ref P;
            int chunk = bhk % HeadChunks, b = bhk / HeadChunks, rows = Rows, evp = EvP, ev = p.Ev, group = p.Group;
            int perHead = group * p.Tq, hk0 = chunk * HeadsPerItem;
            Sequence(b, out int tq, out _, out _, out _, out _, out long ob, out long lb);
            float* parts = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Partials));
            long stride = (long)rows * (evp + 2);
            for (int r = 0; r < rows; r++)
            {
                int g = r / p.Tq % group, i = r % p.Tq, h = (hk0 + r / perHead) * group + g;
                if (i >= tq) continue;
                float mm = float.NegativeInfinity;
                for (int sp = 0; sp < Splits; sp++) mm = MathF.Max(mm, parts[(bhk * Splits + sp) * stride + (long)rows * evp + r]);
                float sink = p.HasSinks != 0 ? Mods[p.SinkBase + h] : float.NegativeInfinity;
                float total = 0f;
                bool any = mm != float.NegativeInfinity;
                var dst = new Span<float>(Out + ob + p.OHead * h + p.ORow * i, ev);
                dst.Clear();
                if (any)
                    for (int sp = 0; sp < Splits; sp++)
                    {
                        float* part = parts + (bhk * Splits + sp) * stride;
                        float ms = part[(long)rows * evp + r], ls = part[(long)rows * evp + rows + r];
                        if (ms == float.NegativeInfinity) continue;
                        float c = MathF.Exp(ms - mm);
                        total += ls * c;
                        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(part + (long)r * evp, ev), c, dst,
                            dst);
                    }
                float top = mm, scale = 1f;
                if (p.HasSinks != 0)
                {
                    top = any ? MathF.Max(mm, sink) : sink;
                    scale = any ? MathF.Exp(mm - top) : 0f;
                    total = total * scale + MathF.Exp(sink - top);
                }
                bool rowAny = any && (total > 0 || float.IsNaN(total));
                if (rowAny) System.Numerics.Tensors.TensorPrimitives.Multiply(dst, scale / total, dst);
                else dst.Clear();
                Lse[lb + p.LHead * h + p.LRow * i] = rowAny || p.HasSinks != 0 ? top + MathF.Log(total) : float.NegativeInfinity;
            }
        }
    }
}
