using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Training;

/// <summary>
/// <c>info_nce</c>, managed SIMD (the rules of <see cref="InfoNceReference"/>, in float): four phases on the
/// <see cref="WorkerPool"/>, each output written by exactly one item in a fixed order, so the bits do not depend on the thread
/// count: (1) normalized rows â, ĉ; (2) per anchor b the similarity row S[b,·] (one dot per candidate), its logsumexp, the
/// gradient row G[b,·] and dâ_b = Σ_j G[b,j]·ĉ_j; (3) per candidate dĉ_j = Σ_b G[b,j]·â_b (b in order); (4) the
/// normalization backward of every row. The loss is summed over b in order. O(B·N) memory for G (the batch's logits), no
/// more; a steady-state call allocates nothing (scratch is kept and grown).
/// </summary>
internal static class InfoNceSimd
{
    /// <summary>Runs the operation on <paramref name="pool"/>. Arguments are assumed validated.</summary>
    public static unsafe void Run(ReadOnlySpan<float> anchors, ReadOnlySpan<float> candidates, int b, int n, int d, float scale,
        bool cosine,
        Span<float> loss, Span<float> dAnchors, Span<float> dCandidates, WorkerPool pool)
    {
        var job = Job.Cached ??= new Job();
        job.B = b; job.N = n; job.D = d; job.Scale = scale; job.Cosine = cosine;
        Grow(ref job.Hat, (long)(b + n) * d); Grow(ref job.DHat, (long)(b + n) * d); Grow(ref job.Norm, b + n);
        Grow(ref job.G, (long)b * n); Grow(ref job.RowLoss, b);
        fixed (float* a = anchors) fixed (float* c = candidates) fixed (float* da = dAnchors) fixed (float* dc = dCandidates)
        {
            job.A = a; job.C = c; job.DA = da; job.DC = dc;
            job.Phase = 1; pool.Run(job, b + n);
            job.Phase = 2; pool.Run(job, b);
            job.Phase = 3; pool.Run(job, n);
            job.Phase = 4; pool.Run(job, b + n);
            job.A = null; job.C = null; job.DA = null; job.DC = null;
        }
        float total = 0;
        for (int i = 0; i < b; i++) total += job.RowLoss[i];
        loss[0] = b == 0 ? 0f : total / b;
    }

    private static void Grow(ref float[] a, long length)
    {
        if (a.Length < length) a = new float[checked((int)length)];
    }

    private sealed unsafe class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* A, C, DA, DC;
        internal int B, N, D, Phase;
        internal float Scale;
        internal bool Cosine;
        internal float[] Hat = [], DHat = [], Norm = [], G = [], RowLoss = [];

        public void Execute(int item, int worker)
        {
            int b = B, n = N, d = D;
            switch (Phase)
            {
                case 1: // â, ĉ (rows 0..B-1 anchors, B..B+N-1 candidates)
                    {
                        var x = new ReadOnlySpan<float>(item < b ? A + (long)item * d : C + (long)(item - b) * d, d);
                        var xh = Hat.AsSpan(item * d, d);
                        float nrm = Cosine ? TensorPrimitives.Norm(x) : 1f;
                        Norm[item] = nrm;
                        TensorPrimitives.Multiply(x, Cosine ? 1f / MathF.Max(nrm, 1e-12f) : 1f, xh);
                        break;
                    }
                case 2: // S[b,·], logsumexp, G[b,·], dâ_b
                    {
                        var ah = Hat.AsSpan(item * d, d);
                        var g = G.AsSpan(item * n, n);
                        for (int j = 0; j < n; j++) g[j] = Scale * TensorPrimitives.Dot(ah, Hat.AsSpan((b + j) * d, d));
                        float m = TensorPrimitives.Max(g), sum = 0;
                        for (int j = 0; j < n; j++) sum += MathF.Exp(g[j] - m);
                        float lse = m + MathF.Log(sum);
                        RowLoss[item] = lse - g[item];
                        float w = Scale / b;
                        for (int j = 0; j < n; j++) g[j] = (MathF.Exp(g[j] - lse) - (j == item ? 1f : 0f)) * w;
                        var dah = DHat.AsSpan(item * d, d);
                        dah.Clear();
                        for (int j = 0; j < n; j++) TensorPrimitives.MultiplyAdd(Hat.AsSpan((b + j) * d, d), g[j], dah, dah);
                        break;
                    }
                case 3: // dĉ_j = Σ_b G[b,j]·â_b, b in order
                    {
                        var dch = DHat.AsSpan((b + item) * d, d);
                        dch.Clear();
                        for (int i = 0; i < b; i++) TensorPrimitives.MultiplyAdd(Hat.AsSpan(i * d, d), G[i * n + item], dch, dch);
                        break;
                    }
                default: // through the normalization
                    {
                        var xh = Hat.AsSpan(item * d, d);
                        var dxh = DHat.AsSpan(item * d, d);
                        var dx = new Span<float>(item < b ? DA + (long)item * d : DC + (long)(item - b) * d, d);
                        float nrm = Norm[item];
                        if (!Cosine) dxh.CopyTo(dx);
                        else if (nrm < 1e-12f) TensorPrimitives.Multiply(dxh, 1e12f, dx);
                        else
                        {
                            float proj = TensorPrimitives.Dot(xh, dxh);
                            TensorPrimitives.MultiplyAdd(xh, -proj, dxh, dx);
                            TensorPrimitives.Multiply(dx, 1f / nrm, dx);
                        }
                        break;
                    }
            }
        }
    }
}
