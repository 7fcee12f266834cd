using System.Numerics.Tensors;

namespace PoolKernels.Kernels.Sequence;

/// <summary>
/// <c>sequence_pool</c>, managed SIMD: one pass over <c>hidden</c> for all requested modes.
/// Work items are (batch row, block of <c>block</c> features); each streams the kept rows of
/// its block once, updating only the accumulators its modes need (TensorPrimitives, Vector512/256),
/// in float. The accumulators live on the stack, so a call allocates nothing.
/// </summary>
internal static unsafe class SequencePoolSimd
{
    /// <summary>Default features per work item: 4 accumulators + 2 scratch rows of this size stay in L1.
    /// Tunable (<c>block</c>, 16..1024).</summary>
    public const int DefaultBlock = 256;
    /// <summary>Largest block (the stack scratch is 6·block floats).</summary>
    public const int MaxBlock = 1024;

    /// <summary>Runs the operation on <paramref name="pool"/> (default <see cref="WorkerPool.Shared"/>); row b of the
    /// result starts at output[b·outStride] (default dims). <paramref name="pGroups"/> (GGeM, empty = off; G divides
    /// dim) replaces p in the gem block: feature d uses pGroups[d / (dim / G)].</summary>
    public static void Run<T, TMask, TIdx>(ReadOnlySpan<T> hidden, ReadOnlySpan<TMask> mask, ReadOnlySpan<TIdx> prefixLen,
        Span<float> output, int batch, int seqLen, int dim, ReadOnlySpan<SequencePoolMode> modes, float p, float eps, int dims,
        bool normalize, WorkerPool? pool = null, int outStride = -1, int block = DefaultBlock, int maxWorkers = int.MaxValue,
        ReadOnlySpan<float> pGroups = default)
        where T : unmanaged where TMask : unmanaged where TIdx : unmanaged
    {
        if (batch == 0 || dims == 0) return;
        pool ??= WorkerPool.Shared;
        if (outStride < 0) outStride = dims;
        block = Math.Clamp(block, 16, MaxBlock);
        int blocks = (dim + block - 1) / block;
        fixed (T* h = hidden) fixed (TMask* m = mask) fixed (TIdx* pl = prefixLen) fixed (float* o = output) fixed (SequencePoolMode* md
            = modes)
        fixed (float* pg = pGroups)
        {
            var job = Job<T, TMask, TIdx>.Cached ??= new();
            job.Hidden = h; job.Mask = m; job.Prefix = prefixLen.IsEmpty ? null : pl; job.Out = o; job.Modes = md;
            job.ModeCount = modes.Length; job.Batch = batch; job.SeqLen = seqLen; job.Dim = dim; job.Dims = dims; job.OutStride
                = outStride; job.P = p; job.Eps = eps;
            job.PGroups = pGroups.IsEmpty ? null : pg; job.GroupSize = pGroups.IsEmpty ? 0 : dim / pGroups.Length;
            job.Blocks = blocks; job.Block = block;
            foreach (var mode in modes)
            {
                job.NeedSum |= mode is SequencePoolMode.Mean or SequencePoolMode.MeanSqrtLen;
                job.NeedWeighted |= mode == SequencePoolMode.WeightedMean;
                job.NeedMax |= mode == SequencePoolMode.Max;
                job.NeedGem |= mode == SequencePoolMode.Gem;
            }
            pool.Run(job, batch * blocks, maxWorkers);
            job.NeedSum = job.NeedWeighted = job.NeedMax = job.NeedGem = false;
            job.PGroups = null;
        }
        if (normalize)
            for (int b = 0; b < batch; b++) NormalizeInPlace(output.Slice(b * outStride, dims));
    }

    /// <summary>v / max(‖v‖₂, 1e-12), as F.normalize.</summary>
    public static void NormalizeInPlace(Span<float> v)
    {
        float norm = TensorPrimitives.Norm(v);
        TensorPrimitives.Multiply(v, 1f / MathF.Max(norm, 1e-12f), v);
    }

    private sealed class Job<T, TMask, TIdx> : IParallelJob where T : unmanaged where TMask : unmanaged where TIdx : unmanaged
    {
        [ThreadStatic] internal static Job<T, TMask, TIdx>? Cached;
        internal T* Hidden; internal TMask* Mask; internal TIdx* Prefix; internal float* Out; internal SequencePoolMode* Modes;
        internal float* PGroups; // GGeM: null = off, else G values, feature d uses PGroups[d / GroupSize]
        internal int ModeCount, Batch, SeqLen, Dim, Dims, OutStride, Blocks, Block, GroupSize;
        internal float P, Eps;
        internal bool NeedSum, NeedWeighted, NeedMax, NeedGem;

        public void Execute(int item, int worker)
        {
            int Block = this.Block;
            int b = item / Blocks, d0 = item % Blocks * Block, n = Math.Min(Block, Dim - d0);
            bool groups = PGroups != null && NeedGem;
            float* buf = stackalloc float[(groups ? 8 : 6) * Block];
            var sum = new Span<float>(buf, n); var wsum = new Span<float>(buf + Block, n);
            var max = new Span<float>(buf + 2 * Block, n); var gem = new Span<float>(buf + 3 * Block, n);
            var scratch = new Span<float>(buf + 4 * Block, n); var tmp = new Span<float>(buf + 5 * Block, n);
            sum.Clear(); wsum.Clear(); gem.Clear(); max.Fill(float.NegativeInfinity);
            // GGeM: the block's one p (plain GeM's path), or NaN with a per-feature p and 1/p row (a block across groups)
            Span<float> pRow = default, invRow = default;
            float p = P;
            if (groups)
            {
                pRow = new Span<float>(buf + 6 * Block, n); invRow = new Span<float>(buf + 7 * Block, n);
                p = GroupGem.Fill(PGroups, GroupSize, d0, pRow, invRow);
            }
            bool perFeature = float.IsNaN(p);

            long skip = Prefix == null ? 0 : Elements.ToInt64(Prefix[b]);
            long seen = 0; int count = 0, first = -1, last = -1; double wtotal = 0;
            TMask* mrow = Mask + (long)b * SeqLen;
            for (int t = 0; t < SeqLen; t++)
            {
                if (!Elements.Keep(mrow[t]) || seen++ < skip) continue;
                if (first < 0) first = t;
                last = t; count++;
                if (!(NeedSum || NeedWeighted || NeedMax || NeedGem)) continue;
                var x = Elements.AsFloats(Row(b, t, d0, n), scratch);
                if (NeedSum) TensorPrimitives.Add(sum, x, sum);
                if (NeedWeighted) { TensorPrimitives.MultiplyAdd(x, (float)(t + 1), wsum, wsum); wtotal += t + 1; }
                if (NeedMax) TensorPrimitives.Max(max, x, max);
                if (NeedGem)
                {
                    TensorPrimitives.Max(x, Eps, tmp);
                    if (perFeature) GroupGem.Pow(tmp, pRow, tmp); else VectorMath.Pow(tmp, p, tmp);
                    TensorPrimitives.Add(gem, tmp, gem);
                }
            }

            for (int m = 0; m < ModeCount; m++)
            {
                int f0 = m * Dim + d0;
                if (f0 >= Dims) break;
                var dst = new Span<float>(Out + (long)b * OutStride + f0, Math.Min(n, Dims - f0));
                if (count == 0) { dst.Clear(); continue; }
                int k = dst.Length;
                switch (Modes[m])
                {
                    case SequencePoolMode.Cls: Elements.AsFloats(Row(b, first, d0, k), scratch).CopyTo(dst); break;
                    case SequencePoolMode.LastToken: Elements.AsFloats(Row(b, last, d0, k), scratch).CopyTo(dst); break;
                    case SequencePoolMode.Mean: TensorPrimitives.Multiply(sum[..k], 1f / count, dst); break;
                    case SequencePoolMode.MeanSqrtLen: TensorPrimitives.Multiply(sum[..k], (float)(1.0 / Math.Sqrt(count)), dst); break;
                    case SequencePoolMode.WeightedMean: TensorPrimitives.Multiply(wsum[..k], (float)(1.0 / wtotal), dst); break;
                    case SequencePoolMode.Max: max[..k].CopyTo(dst); break;
                    case SequencePoolMode.Gem:
                        TensorPrimitives.Multiply(gem[..k], 1f / count, dst);
                        if (perFeature) GroupGem.Pow(dst, invRow[..k], dst);
                        else if (p != 1f) VectorMath.Pow(dst, 1f / p, dst);
                        break;
                }
            }
        }

        private ReadOnlySpan<T> Row(int b, int t, int d0, int n) => new(Hidden + ((long)b * SeqLen + t) * Dim + d0, n);
    }
}
