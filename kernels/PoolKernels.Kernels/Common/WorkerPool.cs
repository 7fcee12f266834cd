namespace PoolKernels.Kernels;

/// <summary>A unit of parallel work: items 0..count-1 are handed out dynamically to the workers.</summary>
internal interface IParallelJob
{
    /// <summary>Runs one work item. <paramref name="worker"/> is 0..Workers-1, stable for the call,
    /// so a job can keep per-worker scratch.</summary>
    void Execute(int item, int worker);
}

/// <summary>
/// A fixed set of worker threads that runs <see cref="IParallelJob"/>s without allocating:
/// unlike <c>Parallel.For</c> no delegate, closure or task is created per call. The calling thread
/// works too. When the pool is busy with another caller's job, the new job runs on its caller's
/// thread alone (correct, just not parallel), so any number of threads may call at once.
/// </summary>
internal sealed class WorkerPool
{
    /// <summary>The process-wide pool, one worker per logical core (the caller is one of them).</summary>
    public static WorkerPool Shared { get; } = new(Environment.ProcessorCount);

    private readonly SemaphoreSlim[] _wake;
    private readonly ManualResetEventSlim _done = new(false);
    private readonly object _gate = new();
    private IParallelJob? _job;
    private int _count, _next, _pending;
    private Exception? _error;

    /// <summary>Total workers including the calling thread.</summary>
    public int Workers { get; }

    /// <summary>Creates a pool of <paramref name="workers"/> (>= 1) workers, including the caller.</summary>
    public WorkerPool(int workers)
    {
        Workers = Math.Max(1, workers);
        _wake = new SemaphoreSlim[Workers - 1];
        for (int w = 0; w < _wake.Length; w++)
        {
            _wake[w] = new SemaphoreSlim(0);
            int id = w + 1;
            new Thread(() => Loop(id)) { IsBackground = true, Name = $"PoolKernels worker {id}" }.Start();
        }
    }

    /// <summary>Makes every worker's scratch array hold at least <paramref name="length"/> elements (pinned when asked), before a
    /// run: which worker takes which item varies from call to call, so scratch grown lazily on a worker's first item could
    /// first be allocated in a later, steady-state call. Grows only; a steady state allocates nothing.</summary>
    public void EnsureScratch<T>(ref T[]?[] perWorker, long length, bool pinned = false)
    {
        if (perWorker.Length < Workers) Array.Resize(ref perWorker, Workers);
        for (int w = 0; w < Workers; w++)
            if (perWorker[w] is not { } a || a.Length < length)
                perWorker[w] = pinned ? GC.AllocateUninitializedArray<T>(checked((int)length), pinned: true) : new T[checked((int)length)];
    }

    /// <summary>The first 64-byte aligned address in a pinned float array (<see cref="EnsureScratch"/> with pinned: true):
    /// kernels that stream packed panels size their scratch 16 floats longer and start there, so no vector load splits a
    /// cache line (panels 16 bytes off a line ran the heads' GEMM ~6% slower).</summary>
    public static unsafe float* Aligned64(float[] pinned) =>
        (float*)(((nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref
            System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(pinned)) + 63) & ~(nint)63);

    /// <summary>Runs items 0..<paramref name="count"/>-1 of <paramref name="job"/> on at most <paramref name="maxWorkers"/>
    /// workers (default all; a tuning parameter) and returns when all finished. An exception thrown by an item is
    /// rethrown here.</summary>
    public void Run(IParallelJob job, int count, int maxWorkers = int.MaxValue)
    {
        if (count <= 0) return;
        if (count == 1 || _wake.Length == 0 || maxWorkers <= 1 || !Monitor.TryEnter(_gate))
        {
            for (int i = 0; i < count; i++) job.Execute(i, 0);
            return;
        }
        try
        {
            _job = job; _count = count; _next = 0; _error = null;
            int helpers = Math.Min(Math.Min(_wake.Length, count - 1), maxWorkers - 1);
            _pending = helpers;
            _done.Reset();
            for (int w = 0; w < helpers; w++) _wake[w].Release();
            Work(0);
            if (helpers > 0) _done.Wait();
            _job = null;
            if (_error is { } e) { _error = null; throw new AggregateException(e); }
        }
        finally { Monitor.Exit(_gate); }
    }

    private void Loop(int id)
    {
        while (true)
        {
            _wake[id - 1].Wait();
            Work(id);
            if (Interlocked.Decrement(ref _pending) == 0) _done.Set();
        }
    }

    private void Work(int worker)
    {
        var job = _job!;
        int i;
        while ((i = Interlocked.Increment(ref _next) - 1) < _count)
        {
            try { job.Execute(i, worker); }
            catch (Exception e) { _error ??= e; }
        }
    }
}
