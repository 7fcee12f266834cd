using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace PoolKernels.Kernels.Heads;

/// <summary>The sizes of a pooling-head backward call: batch B, tokens (layers) N, width D, latents R, heads H, head dim
/// dh, FF width F, rows P of pos_emb (multi_layer only, else 0); the variant and normalize.</summary>
internal readonly record struct HeadDims(int B, int N, int D, int R, int H, int Dh, int F, int P, bool NvEmbed, bool MultiLayer,
    bool Normalize)
{
    public int HD => H * Dh;
    /// <summary>Query rows (R for the resampler, N for nvembed) and key rows.</summary>
    public int Tq => NvEmbed ? N : R;
    public int Tk => NvEmbed ? R : N;

    /// <summary>The number of weight-gradient entries and the offset of each, in <see cref="HeadGrad"/> order.</summary>
    public int Offsets(Span<int> off)
    {
        ReadOnlySpan<int> sizes =
        [
            R * D, P * D, D, D, D, D, HD * D, 2 * HD * D, D * HD, D, D, 2 * F * D, 2 * F, D * F, D,
        ];
        int at = 0;
        for (int i = 0; i < sizes.Length; i++) { off[i] = at; at += sizes[i]; }
        off[sizes.Length] = at;
        return at;
    }
}

/// <summary>The weight gradients in the order of PoolingHead.Names (state-dict order).</summary>
internal enum HeadGrad
{
    Latents, PosEmb, N0W, N0B, NCW, NCB, ToQ, ToKv, ToOut, N1W, N1B, Net0W, Net0B, Net2W, Net2B, Count,
}

/// <summary>A head's weights as F32 arrays (to_kv whole: K rows then V rows).</summary>
internal sealed class HeadWeightArrays
{
    public required float[] Latents, PosEmb, N0W, N0B, NCW, NCB, Wq, Wkv, Wout, N1W, N1B, W1, B1, W2, B2;
}

/// <summary>Per-item scratch of the backward (sized once for a <see cref="HeadDims"/>; every entry written before read).</summary>
internal sealed class HeadBackwardScratch<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public readonly T[] X0, Xh0, Rs0, X, Q, KV, P, O, Y, Xh1, Rs1, Z, H1, G, Pool, DPool, DY2, DG, DH1, DZ, DY, DO, DQ, DKV, DX, DLt, Tmp;

    public HeadBackwardScratch(HeadDims d)
    {
        int tq = d.Tq, tk = d.Tk, hd = d.HD;
        X0 = new T[d.N * d.D]; Xh0 = new T[d.N * d.D]; Rs0 = new T[d.N]; X = new T[d.N * d.D];
        Q = new T[tq * hd]; KV = new T[tk * 2 * hd]; P = new T[d.H * tq * tk]; O = new T[tq * hd];
        Y = new T[tq * d.D]; Xh1 = new T[tq * d.D]; Rs1 = new T[tq]; Z = new T[tq * d.D]; H1 = new T[tq * 2 * d.F]; G = new T[tq * d.F];
        Pool = new T[d.D]; DPool = new T[d.D]; DY2 = new T[tq * d.D]; DG = new T[tq * d.F]; DH1 = new T[tq * 2 * d.F];
        DZ = new T[tq * d.D]; DY = new T[tq * d.D]; DO = new T[tq * hd]; DQ = new T[tq * hd]; DKV = new T[tk * 2 * hd];
        DX = new T[d.N * d.D]; DLt = new T[d.R * d.D]; Tmp = new T[Math.Max(d.N, d.R) * d.D];
    }
}

/// <summary>What does not depend on the input, computed once per call: Lt = LNctx(latents) (with its x̂ and 1/σ) and the
/// resampler's queries Lt·Wqᵀ [R, H·dh] or nvembed's keys|values Lt·Wkvᵀ [R, 2·H·dh].</summary>
internal sealed class HeadBackwardShared<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public readonly T[] Lt, XhC, RsC, Proj;

    public HeadBackwardShared(HeadDims d)
    {
        Lt = new T[d.R * d.D]; XhC = new T[d.R * d.D]; RsC = new T[d.R];
        Proj = new T[d.R * (d.NvEmbed ? 2 : 1) * d.HD];
    }

    public void Compute(HeadDims d, HeadWeightArrays w)
    {
        var lat = HeadBackward<T>.Widen(w.Latents, XhC); // XhC is overwritten by the LayerNorm below
        HeadBackward<T>.LnForward(lat, w.NCW, w.NCB, Lt, XhC, RsC, d.R, d.D);
        if (d.NvEmbed) HeadBackward<T>.LinearFwd(Lt, w.Wkv, Proj, d.R, 2 * d.HD, d.D);
        else HeadBackward<T>.LinearFwd(Lt, w.Wq, Proj, d.R, d.HD, d.D);
    }
}

/// <summary>
/// <c>latent_attention_pool_backward</c> / <c>multi_layer_pool_backward</c> for one batch item, generic over the
/// accumulation type (double: the reference oracle; float: simd and the host-staged ILGPU path). The forward is recomputed
/// for the item (softmax probabilities kept, [H, Tq, Tk]), then the chain rule backwards: normalize, mean, FF block
/// (Linear, GEGLU with the exact GELU derivative Φ(g) + g·φ(g), Linear, LayerNorm), the residual, to_out, the attention
/// (dS = P ⊙ (dP − rowsum(dO ⊙ O)), a row with no kept key contributes 0), the projections and the two LayerNorms.
/// Every weight's gradient of the item is written (not accumulated) into its own partial buffer; the caller sums the
/// partials over the batch in item order, so the bits do not depend on threads. Every sum runs in a fixed order.
/// </summary>
internal static class HeadBackward<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private static T C(double v) => T.CreateTruncating(v);
    private static T C(float v) => T.CreateTruncating(v);

    internal static ReadOnlySpan<T> Widen(ReadOnlySpan<float> src, Span<T> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = C(src[i]);
        return dst[..src.Length];
    }

    /// <summary>LayerNorm (eps 1e-5, biased variance), keeping x̂ and 1/σ per row.</summary>
    internal static void LnForward(ReadOnlySpan<T> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<T> y, Span<T> xhat, Span<T> rstd,
        int rows, int dim)
    {
        T n = T.CreateTruncating(dim), eps = C(1e-5);
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * dim, dim);
            T mean = T.Zero;
            for (int i = 0; i < dim; i++) mean += xr[i];
            mean /= n;
            T var = T.Zero;
            for (int i = 0; i < dim; i++) { T d = xr[i] - mean; var += d * d; }
            var /= n;
            T rs = T.One / T.Sqrt(var + eps);
            rstd[r] = rs;
            for (int i = 0; i < dim; i++)
            {
                T h = (xr[i] - mean) * rs;
                xhat[r * dim + i] = h;
                y[r * dim + i] = h * C(w[i]) + C(b[i]);
            }
        }
    }

    /// <summary>LayerNorm backward: dx = (1/σ)·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂)), dx̂ = dy ⊙ w; dw += Σ dy ⊙ x̂, db += Σ dy
    /// (rows in order). dx is added to when <paramref name="accumulate"/>, else written.</summary>
    internal static void LnBackward(ReadOnlySpan<T> dy, ReadOnlySpan<T> xhat, ReadOnlySpan<T> rstd, ReadOnlySpan<float> w, Span<T> dx,
        Span<T> dw, Span<T> db, int rows, int dim, bool accumulate)
    {
        T n = T.CreateTruncating(dim);
        for (int r = 0; r < rows; r++)
        {
            T s1 = T.Zero, s2 = T.Zero;
            for (int i = 0; i < dim; i++)
            {
                T g = dy[r * dim + i], h = xhat[r * dim + i];
                dw[i] += g * h; db[i] += g;
                T gh = g * C(w[i]);
                s1 += gh; s2 += gh * h;
            }
            s1 /= n; s2 /= n;
            for (int i = 0; i < dim; i++)
            {
                T v = rstd[r] * (dy[r * dim + i] * C(w[i]) - s1 - xhat[r * dim + i] * s2);
                if (accumulate) dx[r * dim + i] += v; else dx[r * dim + i] = v;
            }
        }
    }

    /// <summary>y [m,n] = x [m,k] · Wᵀ (W [n,k] as PyTorch's Linear.weight).</summary>
    internal static void LinearFwd(ReadOnlySpan<T> x, ReadOnlySpan<float> w, Span<T> y, int m, int n, int k)
    {
        if (typeof(T) == typeof(float))
        {
            // float: vectorized dot products (TensorPrimitives; a fixed order per shape, so the bits do not depend on threads)
            var xf = MemoryMarshal.Cast<T, float>(x);
            var yf = MemoryMarshal.Cast<T, float>(y);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) yf[i * n + j] = TensorPrimitives.Dot(xf.Slice(i * k, k), w.Slice(j * k, k));
            return;
        }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                T s = T.Zero;
                for (int t = 0; t < k; t++) s += x[i * k + t] * C(w[j * k + t]);
                y[i * n + j] = s;
            }
    }

    /// <summary>dx [m,k] = dy [m,n] · W (W [n,k]); added to dx when <paramref name="accumulate"/>.</summary>
    private static void LinearDx(ReadOnlySpan<T> dy, ReadOnlySpan<float> w, Span<T> dx, int m, int n, int k, bool accumulate)
    {
        if (typeof(T) == typeof(float))
        {
            // float: dx row i (+)= Σ_j dy[i,j]·W row j, j in order (vectorized axpy)
            var dyf = MemoryMarshal.Cast<T, float>(dy);
            var dxf = MemoryMarshal.Cast<T, float>(dx);
            for (int i = 0; i < m; i++)
            {
                var row = dxf.Slice(i * k, k);
                if (!accumulate) row.Clear();
                for (int j = 0; j < n; j++) TensorPrimitives.MultiplyAdd(w.Slice(j * k, k), dyf[i * n + j], row, row);
            }
            return;
        }
        for (int i = 0; i < m; i++)
            for (int t = 0; t < k; t++)
            {
                T s = T.Zero;
                for (int j = 0; j < n; j++) s += dy[i * n + j] * C(w[j * k + t]);
                if (accumulate) dx[i * k + t] += s; else dx[i * k + t] = s;
            }
    }

    /// <summary>dW [n,k] += dyᵀ · x (dy [m,n], x [m,k]), rows i in order.</summary>
    private static void LinearDw(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, Span<T> dw, int m, int n, int k)
    {
        if (typeof(T) == typeof(float))
        {
            // float: dW row j += dy[i,j]·x row i, i in order (vectorized axpy)
            var dyf = MemoryMarshal.Cast<T, float>(dy);
            var xf = MemoryMarshal.Cast<T, float>(x);
            var dwf = MemoryMarshal.Cast<T, float>(dw);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    var row = dwf.Slice(j * k, k);
                    TensorPrimitives.MultiplyAdd(xf.Slice(i * k, k), dyf[i * n + j], row, row);
                }
            return;
        }
        for (int j = 0; j < n; j++)
            for (int t = 0; t < k; t++)
            {
                T s = T.Zero;
                for (int i = 0; i < m; i++) s += dy[i * n + j] * x[i * k + t];
                dw[j * k + t] += s;
            }
    }

    private static double Gelu(double g) => HeadsReference.Gelu(g);

    /// <summary>d gelu / dg = Φ(g) + g·φ(g).</summary>
    private static double GeluGrad(double g) =>
        0.5 * (1 + HeadsReference.Erf(g / Math.Sqrt(2))) + g * Math.Exp(-0.5 * g * g) / Math.Sqrt(2 * Math.PI);

    /// <summary>One batch item. <paramref name="x0"/> [N,D]: the item's tokens (multi_layer: layers + pos_emb) as floats;
    /// <paramref name="keep"/> [N]: resampler: the key mask (1 keeps; empty = all); nvembed: 1 for the tokens the mean
    /// takes. <paramref name="dOut"/> [D]. Writes <paramref name="dx0"/> [N,D] and this item's weight gradients into
    /// <paramref name="g"/> (laid out by <see cref="HeadDims.Offsets"/>; cleared here).</summary>
    public static void Item(HeadDims d, HeadWeightArrays w, HeadBackwardShared<T> sh, HeadBackwardScratch<T> s, ReadOnlySpan<float> x0,
        ReadOnlySpan<byte> keep, ReadOnlySpan<float> dOut, Span<float> dx0, Span<T> g, ReadOnlySpan<int> off)
    {
        g.Clear();
        int n = d.N, dim = d.D, r = d.R, hd = d.HD, f = d.F, tq = d.Tq, tk = d.Tk;
        Recompute(d, w, sh, s, x0, keep);
        ReadOnlySpan<T> q = d.NvEmbed ? s.Q : sh.Proj, kv = d.NvEmbed ? sh.Proj : s.KV;
        T scale = T.One / T.Sqrt(T.CreateTruncating(d.Dh));
        int cnt = PoolRows(d, w, s, keep);
        // ---------------- backward: normalize, mean
        if (d.Normalize)
        {
            T nrm2 = T.Zero, dot = T.Zero;
            for (int c = 0; c < dim; c++) nrm2 += s.Pool[c] * s.Pool[c];
            T nrm = T.Sqrt(nrm2);
            if (nrm > C(1e-12))
            {
                for (int c = 0; c < dim; c++) dot += s.Pool[c] * C(dOut[c]);
                dot /= nrm2;
                for (int c = 0; c < dim; c++) s.DPool[c] = (C(dOut[c]) - s.Pool[c] * dot) / nrm;
            }
            else
                for (int c = 0; c < dim; c++) s.DPool[c] = C(dOut[c]) / C(1e-12);
        }
        else
            for (int c = 0; c < dim; c++) s.DPool[c] = C(dOut[c]);
        T share = cnt == 0 ? T.Zero : T.One / T.CreateTruncating(cnt);
        for (int i = 0; i < tq; i++)
        {
            bool p = Pooled(d, keep, i);
            for (int c = 0; c < dim; c++) s.DY2[i * dim + c] = p ? s.DPool[c] * share : T.Zero;
        }
        // ---------------- FF block
        LinearDw(s.DY2, s.G, Slot(g, off, HeadGrad.Net2W), tq, dim, f);
        var db2 = Slot(g, off, HeadGrad.Net2B);
        for (int i = 0; i < tq; i++)
            for (int c = 0; c < dim; c++) db2[c] += s.DY2[i * dim + c];
        LinearDx(s.DY2, w.W2, s.DG, tq, dim, f, accumulate: false);
        for (int i = 0; i < tq; i++)
            for (int j = 0; j < f; j++)
            {
                T a = s.H1[i * 2 * f + j];
                double gv = double.CreateTruncating(s.H1[i * 2 * f + f + j]);
                T dg = s.DG[i * f + j];
                s.DH1[i * 2 * f + j] = dg * C(Gelu(gv));
                s.DH1[i * 2 * f + f + j] = dg * a * C(GeluGrad(gv));
            }
        LinearDw(s.DH1, s.Z, Slot(g, off, HeadGrad.Net0W), tq, 2 * f, dim);
        var db1 = Slot(g, off, HeadGrad.Net0B);
        for (int i = 0; i < tq; i++)
            for (int j = 0; j < 2 * f; j++) db1[j] += s.DH1[i * 2 * f + j];
        LinearDx(s.DH1, w.W1, s.DZ, tq, 2 * f, dim, accumulate: false);
        s.DY2.AsSpan(0, tq * dim).CopyTo(s.DY);
        LnBackward(s.DZ, s.Xh1, s.Rs1, w.N1W, s.DY, Slot(g, off, HeadGrad.N1W), Slot(g, off, HeadGrad.N1B), tq, dim, accumulate: true);
        // ---------------- residual and to_out
        if (!d.NvEmbed) s.DY.AsSpan(0, r * dim).CopyTo(Slot(g, off, HeadGrad.Latents));
        LinearDw(s.DY, s.O, Slot(g, off, HeadGrad.ToOut), tq, dim, hd);
        LinearDx(s.DY, w.Wout, s.DO, tq, dim, hd, accumulate: false);
        // ---------------- attention
        AttentionBackward(d, q, kv, s.P, s.O, s.DO, scale, s.DQ, s.DKV);
        var tmp = s.Tmp.AsSpan(0, Math.Max(n, r) * dim);
        if (d.NvEmbed)
        {
            // dX = dQ·Wq (queries from the tokens); keys/values from the latents
            LinearDw(s.DQ, s.X, Slot(g, off, HeadGrad.ToQ), n, hd, dim);
            LinearDx(s.DQ, w.Wq, s.DX, n, hd, dim, accumulate: false);
            LinearDw(s.DKV, sh.Lt, Slot(g, off, HeadGrad.ToKv), r, 2 * hd, dim);
            LinearDx(s.DKV, w.Wkv, s.DLt, r, 2 * hd, dim, accumulate: false);
        }
        else
        {
            LinearDw(s.DQ, sh.Lt, Slot(g, off, HeadGrad.ToQ), r, hd, dim);
            LinearDx(s.DQ, w.Wq, s.DLt, r, hd, dim, accumulate: false);
            LinearDw(s.DKV, s.X, Slot(g, off, HeadGrad.ToKv), n, 2 * hd, dim);
            LinearDx(s.DKV, w.Wkv, s.DX, n, 2 * hd, dim, accumulate: false);
        }
        LnBackward(s.DLt, sh.XhC, sh.RsC, w.NCW, Slot(g, off, HeadGrad.Latents), Slot(g, off, HeadGrad.NCW), Slot(g, off, HeadGrad.NCB),
            r, dim, accumulate: true);
        // d x0 = LN0 backward (+ the residual in nvembed)
        LnBackward(s.DX, s.Xh0, s.Rs0, w.N0W, tmp, Slot(g, off, HeadGrad.N0W), Slot(g, off, HeadGrad.N0B), n, dim, accumulate: false);
        if (d.NvEmbed) for (int i = 0; i < n * dim; i++) tmp[i] += s.DY[i];
        for (int i = 0; i < n * dim; i++) dx0[i] = float.CreateTruncating(tmp[i]);
        if (d.MultiLayer) tmp[..(n * dim)].CopyTo(Slot(g, off, HeadGrad.PosEmb));
    }

    /// <summary>The forward of one item up to the FF block's GEGLU (X0, LN0, projections, attention P and O, Y, LN1, H1, G).</summary>
    private static void Recompute(HeadDims d, HeadWeightArrays w, HeadBackwardShared<T> sh, HeadBackwardScratch<T> s,
        ReadOnlySpan<float> x0, ReadOnlySpan<byte> keep)
    {
        int n = d.N, dim = d.D, hd = d.HD, f = d.F, tq = d.Tq;
        Widen(x0, s.X0);
        LnForward(s.X0, w.N0W, w.N0B, s.X, s.Xh0, s.Rs0, n, dim);
        if (d.NvEmbed) LinearFwd(s.X, w.Wq, s.Q, n, hd, dim);
        else LinearFwd(s.X, w.Wkv, s.KV, n, 2 * hd, dim);
        ReadOnlySpan<T> q = d.NvEmbed ? s.Q : sh.Proj, kv = d.NvEmbed ? sh.Proj : s.KV;
        bool keyMask = !d.NvEmbed && !keep.IsEmpty;
        T scale = T.One / T.Sqrt(T.CreateTruncating(d.Dh));
        Attention(d, q, kv, keyMask ? keep : default, scale, s.P, s.O);
        // Y = O·Woutᵀ + residual (latents or the tokens)
        LinearFwd(s.O, w.Wout, s.Y, tq, dim, hd);
        for (int i = 0; i < tq * dim; i++) s.Y[i] += d.NvEmbed ? s.X0[i] : C(w.Latents[i]);
        LnForward(s.Y, w.N1W, w.N1B, s.Z, s.Xh1, s.Rs1, tq, dim);
        LinearFwd(s.Z, w.W1, s.H1, tq, 2 * f, dim);
        for (int i = 0; i < tq; i++)
            for (int j = 0; j < 2 * f; j++) s.H1[i * 2 * f + j] += C(w.B1[j]);
        for (int i = 0; i < tq; i++)
            for (int j = 0; j < f; j++)
                s.G[i * f + j] = s.H1[i * 2 * f + j] * C(Gelu(double.CreateTruncating(s.H1[i * 2 * f + f + j])));
    }

    /// <summary>The mean the head takes (over the R latents, or nvembed's kept tokens) of Y + G·W2ᵀ + b2 into s.Pool; returns
    /// the number of rows it takes.</summary>
    private static int PoolRows(HeadDims d, HeadWeightArrays w, HeadBackwardScratch<T> s, ReadOnlySpan<byte> keep)
    {
        int tq = d.Tq, dim = d.D, f = d.F;
        int cnt = 0;
        for (int i = 0; i < tq; i++) if (Pooled(d, keep, i)) cnt++;
        // pooled = mean over those rows of Y + G·W2ᵀ + b2 (only needed for normalize)
        s.Pool.AsSpan().Clear();
        if (cnt > 0)
        {
            for (int i = 0; i < tq; i++)
            {
                if (!Pooled(d, keep, i)) continue;
                for (int c = 0; c < dim; c++)
                {
                    T v = s.Y[i * dim + c] + C(w.B2[c]);
                    for (int j = 0; j < f; j++) v += s.G[i * f + j] * C(w.W2[c * f + j]);
                    s.Pool[c] += v;
                }
            }
            T inv = T.One / T.CreateTruncating(cnt);
            for (int c = 0; c < dim; c++) s.Pool[c] *= inv;
        }
        return cnt;
    }

    /// <summary>The forward of one item in <typeparamref name="T"/> (the recompute the backward runs): out [D] = normalize?(pooled).
    /// Used by the tests' finite differences.</summary>
    public static void Forward(HeadDims d, HeadWeightArrays w, HeadBackwardShared<T> sh, HeadBackwardScratch<T> s, ReadOnlySpan<float> x0,
        ReadOnlySpan<byte> keep, Span<T> output)
    {
        sh.Compute(d, w);
        Recompute(d, w, sh, s, x0, keep);
        PoolRows(d, w, s, keep);
        T nrm2 = T.Zero;
        for (int c = 0; c < d.D; c++) nrm2 += s.Pool[c] * s.Pool[c];
        T scale = d.Normalize ? T.One / T.Max(T.Sqrt(nrm2), C(1e-12)) : T.One;
        for (int c = 0; c < d.D; c++) output[c] = s.Pool[c] * scale;
    }

    private static Span<T> Slot(Span<T> g, ReadOnlySpan<int> off, HeadGrad k) => g[off[(int)k]..off[(int)k + 1]];

    private static bool Pooled(HeadDims d, ReadOnlySpan<byte> keep, int i) => !d.NvEmbed || keep[i] != 0;

    /// <summary>Per query row i and head h: S = scale·q·kᵀ over the kept keys, P = softmax (0 on a row with no kept key),
    /// O = P·V. q [Tq, H·dh], kv [Tk, 2·H·dh] (K columns first).</summary>
    private static void Attention(HeadDims d, ReadOnlySpan<T> q, ReadOnlySpan<T> kv, ReadOnlySpan<byte> keyKeep, T scale, Span<T> p,
        Span<T> o)
    {
        int tq = d.Tq, tk = d.Tk, hd = d.HD, dh = d.Dh;
        for (int h = 0; h < d.H; h++)
            for (int i = 0; i < tq; i++)
            {
                var pr = p.Slice((h * tq + i) * tk, tk);
                T mx = T.NegativeInfinity;
                for (int j = 0; j < tk; j++)
                {
                    if (!keyKeep.IsEmpty && keyKeep[j] == 0) { pr[j] = T.NegativeInfinity; continue; }
                    T sc = T.Zero;
                    for (int e = 0; e < dh; e++) sc += q[i * hd + h * dh + e] * kv[j * 2 * hd + h * dh + e];
                    sc *= scale;
                    pr[j] = sc;
                    if (sc > mx) mx = sc;
                }
                var orow = o.Slice(i * hd + h * dh, dh);
                orow.Clear();
                if (T.IsNegativeInfinity(mx)) { pr.Clear(); continue; }
                T sum = T.Zero;
                for (int j = 0; j < tk; j++)
                {
                    T e = T.IsNegativeInfinity(pr[j]) ? T.Zero : T.Exp(pr[j] - mx);
                    pr[j] = e; sum += e;
                }
                for (int j = 0; j < tk; j++) pr[j] /= sum;
                for (int j = 0; j < tk; j++)
                {
                    T pj = pr[j];
                    if (pj == T.Zero) continue;
                    for (int e = 0; e < dh; e++) orow[e] += pj * kv[j * 2 * hd + hd + h * dh + e];
                }
            }
    }

    /// <summary>dP = dO·Vᵀ, dS = P ⊙ (dP − dO·O), dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO (query rows in order).</summary>
    private static void AttentionBackward(HeadDims d, ReadOnlySpan<T> q, ReadOnlySpan<T> kv, ReadOnlySpan<T> p, ReadOnlySpan<T> o,
        ReadOnlySpan<T> dO, T scale, Span<T> dq, Span<T> dkv)
    {
        int tq = d.Tq, tk = d.Tk, hd = d.HD, dh = d.Dh;
        dq[..(tq * hd)].Clear();
        dkv[..(tk * 2 * hd)].Clear();
        for (int h = 0; h < d.H; h++)
            for (int i = 0; i < tq; i++)
            {
                var pr = p.Slice((h * tq + i) * tk, tk);
                T di = T.Zero;
                for (int e = 0; e < dh; e++) di += dO[i * hd + h * dh + e] * o[i * hd + h * dh + e];
                for (int j = 0; j < tk; j++)
                {
                    T pj = pr[j];
                    if (pj == T.Zero) continue;
                    T dp = T.Zero;
                    for (int e = 0; e < dh; e++) dp += dO[i * hd + h * dh + e] * kv[j * 2 * hd + hd + h * dh + e];
                    T ds = pj * (dp - di) * scale;
                    for (int e = 0; e < dh; e++)
                    {
                        dq[i * hd + h * dh + e] += ds * kv[j * 2 * hd + h * dh + e];
                        dkv[j * 2 * hd + h * dh + e] += ds * q[i * hd + h * dh + e];
                        dkv[j * 2 * hd + hd + h * dh + e] += pj * dO[i * hd + h * dh + e];
                    }
                }
            }
    }
}
