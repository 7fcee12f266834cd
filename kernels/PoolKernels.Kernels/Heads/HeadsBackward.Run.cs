using System.Numerics;

namespace PoolKernels.Kernels.Heads;

/// <summary>
/// A pooling-head backward call's host buffers and its run: the inputs staged as floats (X0 [B,N,D] = hidden widened,
/// + pos_emb for multi_layer; Keep [B,N]; DOut [B,D]), the outputs (DX [B,N,D], Grads: every weight's gradient laid out
/// by <see cref="HeadDims.Offsets"/>), per-item partials of the weight gradients (T [min(B, 8), total]) and per-worker
/// scratch. <see cref="Run"/> computes the items in waves of 8 (on a worker pool when given: one item per work item) and
/// adds each wave's partials to the total in item order: the same bits on every thread count. Sized once per dims; a
/// steady-state call allocates nothing.
/// </summary>
internal abstract class HeadBackwardRun
{
    public readonly HeadDims D;
    public readonly HeadWeightArrays W;
    public readonly float[] X0, DOut, DX, Grads;
    public readonly byte[] Keep;
    public readonly int Total;
    public bool HasKeep;
    protected readonly int[] Off = new int[(int)HeadGrad.Count + 1];

    protected HeadBackwardRun(HeadDims d, HeadWeightArrays w)
    {
        D = d; W = w;
        Total = d.Offsets(Off);
        X0 = new float[d.B * d.N * d.D]; DOut = new float[d.B * d.D]; DX = new float[d.B * d.N * d.D];
        Keep = new byte[d.B * d.N]; Grads = new float[Total];
    }

    /// <summary>The offset of weight gradient <paramref name="k"/> in <see cref="Grads"/> and its length.</summary>
    public (int Offset, int Length) Slot(HeadGrad k) => (Off[(int)k], Off[(int)k + 1] - Off[(int)k]);

    /// <summary>Computes DX and Grads from X0, Keep, DOut (on <paramref name="pool"/> when given, else in order on this thread).</summary>
    public abstract void Run(WorkerPool? pool);
}

/// <summary><see cref="HeadBackwardRun"/> accumulating in <typeparamref name="T"/> (double: reference; float: the others).</summary>
internal sealed class HeadBackwardRun<T> : HeadBackwardRun, IParallelJob where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Items computed together: their partials are kept, then added to the total in item order. A constant (not the
    /// thread count), so the sums are the same on every pool; it bounds the partials' memory to Wave × the weights.</summary>
    public const int Wave = 8;
    private readonly T[] _partial, _total;
    private readonly HeadBackwardShared<T> _shared;
    private HeadBackwardScratch<T>[] _scratch = [];
    private int _first;

    public HeadBackwardRun(HeadDims d, HeadWeightArrays w) : base(d, w)
    {
        _partial = new T[(long)Math.Min(d.B, Wave) * Total];
        _total = new T[Total];
        _shared = new HeadBackwardShared<T>(d);
    }

    public override void Run(WorkerPool? pool)
    {
        int workers = pool?.Workers ?? 1;
        if (_scratch.Length < workers)
        {
            var s = new HeadBackwardScratch<T>[workers];
            for (int i = 0; i < workers; i++) s[i] = i < _scratch.Length ? _scratch[i] : new HeadBackwardScratch<T>(D);
            _scratch = s;
        }
        _shared.Compute(D, W);
        Array.Clear(_total);
        for (_first = 0; _first < D.B; _first += Wave)
        {
            int count = Math.Min(Wave, D.B - _first);
            if (pool is null) for (int i = 0; i < count; i++) Execute(i, 0);
            else pool.Run(this, count);
            // the wave's partials join the total in item order: the same sums as one pass over the batch
            for (int i = 0; i < count; i++)
            {
                var p = _partial.AsSpan((int)((long)i * Total), Total);
                for (int j = 0; j < Total; j++) _total[j] += p[j];
            }
        }
        for (int j = 0; j < Total; j++) Grads[j] = float.CreateTruncating(_total[j]);
    }

    /// <summary>Item <see cref="_first"/> + <paramref name="slot"/> of the batch into partial slot <paramref name="slot"/>.</summary>
    public void Execute(int slot, int worker)
    {
        int nd = D.N * D.D, item = _first + slot;
        HeadBackward<T>.Item(D, W, _shared, _scratch[worker], X0.AsSpan(item * nd, nd),
            HasKeep ? Keep.AsSpan(item * D.N, D.N) : default, DOut.AsSpan(item * D.D, D.D), DX.AsSpan(item * nd, nd),
            _partial.AsSpan((int)((long)slot * Total), Total), Off);
    }
}
