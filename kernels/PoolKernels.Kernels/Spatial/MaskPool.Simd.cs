using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.CompilerServices;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>mask_pool</c>, managed: out[b,q,c] = Σ_p w_q[p]·x[b,c,p] / (Σ_p w_q[p] + eps), a [Q,HW]·[C,HW]ᵀ product per batch.
/// With AVX-512 a k-blocked dot-product GEMM (4 masks × 6 channels register tile, see the comment at <c>RunDot</c>);
/// otherwise a work item is (b, block of 16 masks): the 16 weight planes are built in per-worker scratch (bilinear
/// resize fused into the weight computation, no resized mask tensor), then x[b] is read once per block, 4 channel planes
/// × 4 weight planes at a time through the <see cref="DotTile"/> register micro-kernel.
/// </summary>
public static unsafe class MaskPoolSimd
{
    private const int QBlock = 16;

    /// <summary>Runs into output [B,Q,C].</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> masks, Span<float> output, int batch, int channels, int height, int width,
        int queries, int mh, int mw, MaskType type, float threshold, float eps, WorkerPool pool)
    {
        if ((long)batch * queries * channels == 0) return;
        int hw = height * width;
        fixed (float* px = x) fixed (float* pm = masks) fixed (float* po = output)
        {
            if (Vector512.IsHardwareAccelerated && hw > 0)
            {
                RunDot(px, pm, po, batch, channels, height, width, queries, mh, mw, type, threshold, eps, pool);
                return;
            }
            var job = Job.Cached ??= new();
            job.X = px; job.M = pm; job.Out = po; job.B = batch; job.C = channels; job.H = height; job.W = width; job.Q = queries;
            job.MH = mh; job.MW = mw; job.Type = type; job.Threshold = threshold; job.Eps = eps;
            job.QBlocks = (queries + QBlock - 1) / QBlock;
            if (job.Scratch is null || job.Scratch.Length < pool.Workers) job.Scratch = new float[pool.Workers][];
            for (int w = 0; w < pool.Workers; w++)
                if (job.Scratch[w] is null || job.Scratch[w].Length < QBlock * hw) job.Scratch[w] = new float[QBlock * hw];
            pool.Run(job, batch * job.QBlocks);
        }
    }

    /// <summary>The weight plane of one mask: bilinear resize (when sizes differ) fused with the weight rule.</summary>
    public static void ComputeWeights(float* m, int mh, int mw, int height, int width, MaskType type, float threshold, Span<float> wts)
    {
        int hw = height * width;
        if (mh == height && mw == width)
        {
            var src = new ReadOnlySpan<float>(m, hw);
            switch (type)
            {
                case MaskType.Soft: src.CopyTo(wts); break;
                case MaskType.SigmoidNormalized: TensorPrimitives.Sigmoid(src, wts); break;
                default: for (int i = 0; i < hw; i++) wts[i] = Bilinear.Weight(src[i], (int)type, threshold); break;
            }
            return;
        }
        for (int h = 0; h < height; h++)
        {
            Bilinear.Taps(h, mh, height, out int h0, out int h1, out float lh);
            for (int w = 0; w < width; w++)
            {
                Bilinear.Taps(w, mw, width, out int w0, out int w1, out float lw);
                float v = (1 - lh) * ((1 - lw) * m[h0 * mw + w0] + lw * m[h0 * mw + w1]) + lh * ((1 - lw) * m[h1 * mw + w0] + lw * m[h1 * mw + w1]);
                wts[h * width + w] = Bilinear.Weight(v, (int)type, threshold);
            }
        }
    }

    // AVX-512 path: out[b,q,c] = (w_q · x_c) / (Σ w_q + eps), both operands K-contiguous rows of HW floats: a dot-product
    // GEMM, no transposition. Soft masks of the output size are their own weights; other masks become weight planes
    // [B,Q,HW] first (Phase 1, items b × 16 masks). Phase 2 items are (b, block of ≤ 128 masks, block of channel groups).
    // Per k block of KB floats the item copies its weight rows into 64-byte-aligned scratch [rows][KB] (zero-padded to a
    // multiple of 16, summing them for the denominators on the way), then per group of 6 channels copies their rows into
    // aligned scratch [6][KB] (24 KB, L1) and runs a register tile of 4 masks × 6 channels (24 zmm accumulators, 10
    // aligned loads per 24 FMAs) over every mask group; partial sums go through per-worker vector scratch (≤ 1 MB), summed
    // horizontally once at the end. The copies make the kernel independent of the caller's alignment and of H·W % 16.
    // Tried ([8,256,64,64], 100 masks, same process, min of 36 calls): reading operands in place 10.2 ms on 64-byte-aligned
    // input but 15-25 ms on managed arrays (split loads), copying 9.0 ms on both; k blocks of 256/512/1024/2048 floats:
    // 1024 best (~15% over 512); 1 vs 2 vs 4 channel blocks per batch: 7.6/7.6/7.9 ms (FMA loop of the same FLOPs 4.8 ms).
    // Before (the packed broadcast GEMM of the heads, x rows packed in scalar code, masks transposed): 21 ms.
    private const int TQ = 4, TC = 6, KB = 1024;

    private static void RunDot(float* x, float* m, float* o, int batch, int channels, int height, int width, int queries, int mh, int mw,
        MaskType type, float threshold, float eps, WorkerPool pool)
    {
        int hw = height * width;
        bool direct = type == MaskType.Soft && mh == height && mw == width;
        var wj = WeightJob.Cached ??= new();
        if (!direct)
        {
            long wLen = (long)batch * queries * hw;
            if (wj.Weights.Length < wLen) wj.Weights = GC.AllocateUninitializedArray<float>((int)wLen, pinned: true);
        }
        fixed (float* wp = wj.Weights)
        {
            if (!direct)
            {
                wj.M = m; wj.Wts = wp; wj.B = batch; wj.H = height; wj.W = width; wj.Q = queries; wj.MH = mh; wj.MW = mw;
                wj.Type = type; wj.Threshold = threshold; wj.QBlocks = (queries + QBlock - 1) / QBlock;
                pool.Run(wj, batch * wj.QBlocks);
            }
            var dj = DotJob.Cached ??= new();
            // Items (b, block of mask groups, block of channel groups): at most 32 mask groups (128 weight rows, 512 KB
            // per k block in L2) and as many channel groups as keep the item's partial tiles within 1 MB; then split
            // channels further until there are 4 items per worker.
            int cGroups = (channels + TC - 1) / TC, qGroups = (queries + TQ - 1) / TQ;
            dj.QBlocks = (qGroups + 31) / 32;
            dj.QGroupsPerItem = (qGroups + dj.QBlocks - 1) / dj.QBlocks;
            int cap = Math.Max(1, (1 << 18) / (dj.QGroupsPerItem * TQ * TC * 16));
            int blocks = Math.Max((cGroups + cap - 1) / cap, (4 * pool.Workers + batch * dj.QBlocks - 1) / (batch * dj.QBlocks));
            dj.GroupsPerItem = (cGroups + Math.Min(blocks, cGroups) - 1) / Math.Min(blocks, cGroups);
            dj.CBlocks = (cGroups + dj.GroupsPerItem - 1) / dj.GroupsPerItem;
            // per worker: tiles [groups][qgroups][24][16] | weight rows [4·qgroups][KB] | channel rows [6][KB] | denominators
            int rows = dj.QGroupsPerItem * TQ;
            long need = (long)dj.GroupsPerItem * dj.QGroupsPerItem * TQ * TC * 16 + (long)rows * KB + TC * KB + rows + 16;
            if (dj.Scratch.Length < pool.Workers) Array.Resize(ref dj.Scratch, pool.Workers);
            for (int w = 0; w < pool.Workers; w++)
                if (dj.Scratch[w] is null || dj.Scratch[w]!.Length < need) dj.Scratch[w] = GC.AllocateUninitializedArray<float>((int)need, pinned: true);
            dj.X = x; dj.Wts = direct ? m : wp; dj.Out = o; dj.C = channels; dj.Q = queries; dj.HW = hw; dj.Eps = eps;
            pool.Run(dj, batch * dj.QBlocks * dj.CBlocks);
        }
    }

    private sealed class WeightJob : IParallelJob
    {
        [ThreadStatic] internal static WeightJob? Cached;
        internal float[] Weights = [];
        internal float* M, Wts; internal int B, H, W, Q, MH, MW, QBlocks; internal MaskType Type; internal float Threshold;

        public void Execute(int item, int worker)
        {
            int b = item / QBlocks, q0 = item % QBlocks * QBlock, q1 = Math.Min(Q, q0 + QBlock), hw = H * W;
            for (int q = q0; q < q1; q++)
            {
                long at = (long)b * Q + q;
                ComputeWeights(M + at * MH * MW, MH, MW, H, W, Type, Threshold, new Span<float>(Wts + at * hw, hw));
            }
        }
    }

    private sealed class DotJob : IParallelJob
    {
        [ThreadStatic] internal static DotJob? Cached;
        internal float[]?[] Scratch = [];
        internal float* X, Wts, Out; internal int C, Q, HW, GroupsPerItem, CBlocks, QGroupsPerItem, QBlocks; internal float Eps;

        public void Execute(int item, int worker)
        {
            int cb = item % CBlocks, qb = item / CBlocks % QBlocks, b = item / CBlocks / QBlocks;
            int g0 = cb * GroupsPerItem, g1 = Math.Min((C + TC - 1) / TC, g0 + GroupsPerItem);
            int qLo = qb * QGroupsPerItem * TQ, nq = Math.Min(Q, qLo + QGroupsPerItem * TQ) - qLo, qGroups = (nq + TQ - 1) / TQ;
            int hw = HW;
            float* xb = X + (long)b * C * hw, wb = Wts + ((long)b * Q + qLo) * hw;
            var buf = Scratch[worker]!;
            float* acc = (float*)(((nint)Unsafe.AsPointer(ref buf[0]) + 63) & ~(nint)63); // pinned; 64-byte aligned, all parts multiples of 16 floats
            float* wpk = acc + (long)GroupsPerItem * QGroupsPerItem * TQ * TC * 16, xpk = wpk + (long)QGroupsPerItem * TQ * KB, den = xpk + TC * KB;
            new Span<float>(den, nq).Clear();
            for (int k0 = 0; k0 < hw; k0 += KB)
            {
                int kc = Math.Min(KB, hw - k0), kcp = (kc + 15) & ~15;
                for (int i = 0; i < nq; i++)
                {
                    var src = new ReadOnlySpan<float>(wb + (long)i * hw + k0, kc);
                    var dst = new Span<float>(wpk + (long)i * kcp, kcp);
                    src.CopyTo(dst);
                    dst[kc..].Clear();
                    den[i] += TensorPrimitives.Sum(src);
                }
                for (int g = g0; g < g1; g++)
                {
                    int c0 = g * TC;
                    for (int j = 0; j < TC; j++)
                    {
                        // a short last group repeats its last channel (computed, not stored)
                        var dst = new Span<float>(xpk + j * kcp, kcp);
                        new ReadOnlySpan<float>(xb + (long)Math.Min(c0 + j, C - 1) * hw + k0, kc).CopyTo(dst);
                        dst[kc..].Clear();
                    }
                    float* tiles = acc + (long)(g - g0) * QGroupsPerItem * TQ * TC * 16;
                    for (int qg = 0; qg < qGroups; qg++)
                    {
                        int q0 = qg * TQ; // a short last mask group repeats its last row
                        float* a0 = wpk + (long)Math.Min(q0, nq - 1) * kcp, a1 = wpk + (long)Math.Min(q0 + 1, nq - 1) * kcp;
                        float* a2 = wpk + (long)Math.Min(q0 + 2, nq - 1) * kcp, a3 = wpk + (long)Math.Min(q0 + 3, nq - 1) * kcp;
                        Dot4x6(a0, a1, a2, a3, xpk, xpk + kcp, xpk + 2 * kcp, xpk + 3 * kcp, xpk + 4 * kcp, xpk + 5 * kcp, kcp / 16,
                            tiles + qg * TQ * TC * 16, k0 == 0);
                    }
                }
            }
            // horizontal sums and the division by the mask weight
            for (int g = g0; g < g1; g++)
                for (int i = 0; i < nq; i++)
                {
                    float* tile = acc + ((long)(g - g0) * QGroupsPerItem + i / TQ) * TQ * TC * 16 + i % TQ * TC * 16;
                    float d = den[i] + Eps;
                    float* dst = Out + ((long)b * Q + qLo + i) * C + g * TC;
                    for (int j = 0; j < TC && g * TC + j < C; j++)
                        dst[j] = d == 0 ? 0 : Vector512.Sum(Vector512.Load(tile + j * 16)) / d;
                }
        }
    }

    /// <summary>acc[i·6 + j] (+)= Σ_s a_i[16s..16s+15] ⊙ b_j[16s..16s+15] for s &lt; steps: 4 × 6 lane-wise partial dot products.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot4x6(float* a0, float* a1, float* a2, float* a3, float* b0, float* b1, float* b2, float* b3, float* b4, float* b5,
        int steps, float* acc, bool first)
    {
        Vector512<float> c00, c01, c02, c03, c04, c05, c10, c11, c12, c13, c14, c15, c20, c21, c22, c23, c24, c25, c30, c31, c32, c33, c34, c35;
        if (first)
        {
            c00 = c01 = c02 = c03 = c04 = c05 = c10 = c11 = c12 = c13 = c14 = c15 = default;
            c20 = c21 = c22 = c23 = c24 = c25 = c30 = c31 = c32 = c33 = c34 = c35 = default;
        }
        else
        {
            c00 = Vector512.Load(acc); c01 = Vector512.Load(acc + 16); c02 = Vector512.Load(acc + 32); c03 = Vector512.Load(acc + 48); c04 = Vector512.Load(acc + 64); c05 = Vector512.Load(acc + 80);
            c10 = Vector512.Load(acc + 96); c11 = Vector512.Load(acc + 112); c12 = Vector512.Load(acc + 128); c13 = Vector512.Load(acc + 144); c14 = Vector512.Load(acc + 160); c15 = Vector512.Load(acc + 176);
            c20 = Vector512.Load(acc + 192); c21 = Vector512.Load(acc + 208); c22 = Vector512.Load(acc + 224); c23 = Vector512.Load(acc + 240); c24 = Vector512.Load(acc + 256); c25 = Vector512.Load(acc + 272);
            c30 = Vector512.Load(acc + 288); c31 = Vector512.Load(acc + 304); c32 = Vector512.Load(acc + 320); c33 = Vector512.Load(acc + 336); c34 = Vector512.Load(acc + 352); c35 = Vector512.Load(acc + 368);
        }
        for (nint t = 0, n = (nint)steps * 16; t < n; t += 16)
        {
            var x0 = Vector512.Load(b0 + t); var x1 = Vector512.Load(b1 + t); var x2 = Vector512.Load(b2 + t);
            var x3 = Vector512.Load(b3 + t); var x4 = Vector512.Load(b4 + t); var x5 = Vector512.Load(b5 + t);
            var y = Vector512.Load(a0 + t);
            c00 = Vector512.FusedMultiplyAdd(y, x0, c00); c01 = Vector512.FusedMultiplyAdd(y, x1, c01); c02 = Vector512.FusedMultiplyAdd(y, x2, c02);
            c03 = Vector512.FusedMultiplyAdd(y, x3, c03); c04 = Vector512.FusedMultiplyAdd(y, x4, c04); c05 = Vector512.FusedMultiplyAdd(y, x5, c05);
            y = Vector512.Load(a1 + t);
            c10 = Vector512.FusedMultiplyAdd(y, x0, c10); c11 = Vector512.FusedMultiplyAdd(y, x1, c11); c12 = Vector512.FusedMultiplyAdd(y, x2, c12);
            c13 = Vector512.FusedMultiplyAdd(y, x3, c13); c14 = Vector512.FusedMultiplyAdd(y, x4, c14); c15 = Vector512.FusedMultiplyAdd(y, x5, c15);
            y = Vector512.Load(a2 + t);
            c20 = Vector512.FusedMultiplyAdd(y, x0, c20); c21 = Vector512.FusedMultiplyAdd(y, x1, c21); c22 = Vector512.FusedMultiplyAdd(y, x2, c22);
            c23 = Vector512.FusedMultiplyAdd(y, x3, c23); c24 = Vector512.FusedMultiplyAdd(y, x4, c24); c25 = Vector512.FusedMultiplyAdd(y, x5, c25);
            y = Vector512.Load(a3 + t);
            c30 = Vector512.FusedMultiplyAdd(y, x0, c30); c31 = Vector512.FusedMultiplyAdd(y, x1, c31); c32 = Vector512.FusedMultiplyAdd(y, x2, c32);
            c33 = Vector512.FusedMultiplyAdd(y, x3, c33); c34 = Vector512.FusedMultiplyAdd(y, x4, c34); c35 = Vector512.FusedMultiplyAdd(y, x5, c35);
        }
        c00.Store(acc); c01.Store(acc + 16); c02.Store(acc + 32); c03.Store(acc + 48); c04.Store(acc + 64); c05.Store(acc + 80);
        c10.Store(acc + 96); c11.Store(acc + 112); c12.Store(acc + 128); c13.Store(acc + 144); c14.Store(acc + 160); c15.Store(acc + 176);
        c20.Store(acc + 192); c21.Store(acc + 208); c22.Store(acc + 224); c23.Store(acc + 240); c24.Store(acc + 256); c25.Store(acc + 272);
        c30.Store(acc + 288); c31.Store(acc + 304); c32.Store(acc + 320); c33.Store(acc + 336); c34.Store(acc + 352); c35.Store(acc + 368);
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, M, Out; internal int B, C, H, W, Q, MH, MW, QBlocks; internal MaskType Type; internal float Threshold, Eps;
        internal float[][]? Scratch;

        private float* XRow(int b, int c) => X + ((long)b * C + c) * H * W;

        public void Execute(int item, int worker)
        {
            int b = item / QBlocks, q0 = item % QBlocks * QBlock, nq = Math.Min(QBlock, Q - q0), hw = H * W;
            var scratch = Scratch![worker];
            Span<float> denom = stackalloc float[QBlock];
            for (int j = 0; j < nq; j++)
            {
                var wts = scratch.AsSpan(j * hw, hw);
                ComputeWeights(M + ((long)b * Q + q0 + j) * MH * MW, MH, MW, H, W, Type, Threshold, wts);
                denom[j] = TensorPrimitives.Sum(wts) + Eps;
            }
            float* t = stackalloc float[16];
            fixed (float* w = scratch)
            {
                for (int c = 0; c < C; c += 4)
                {
                    int mc = Math.Min(4, C - c);
                    float* x0 = XRow(b, c), x1 = XRow(b, c + Math.Min(1, mc - 1)), x2 = XRow(b, c + Math.Min(2, mc - 1)), x3 = XRow(b, c + Math.Min(3, mc - 1));
                    for (int j = 0; j < nq; j += 4)
                    {
                        int mj = Math.Min(4, nq - j);
                        DotTile.Dot4x4(x0, x1, x2, x3, w + (long)j * hw, w + (long)(j + Math.Min(1, mj - 1)) * hw, w + (long)(j + Math.Min(2, mj - 1)) * hw,
                            w + (long)(j + Math.Min(3, mj - 1)) * hw, hw, t);
                        for (int a = 0; a < mc; a++)
                            for (int e = 0; e < mj; e++)
                                Out[((long)b * Q + q0 + j + e) * C + c + a] = denom[j + e] == 0 ? 0 : t[a * 4 + e] / denom[j + e];
                    }
                }
            }
        }
    }
}
