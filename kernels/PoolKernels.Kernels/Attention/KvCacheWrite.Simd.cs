namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>kv_cache_write</c>, managed: each row (one [Hkv, E] block, contiguous in both the new tensor and the cache slot) is
/// one block copy; rows are spread over the <see cref="WorkerPool"/> in chunks of about 64 KiB. Slots are distinct (checked
/// by the API), so the copies never overlap and the result is the same for any thread count. Allocates nothing.
/// </summary>
internal static unsafe class KvCacheWriteSimd
{
    /// <summary>Copies every row to its slot on <paramref name="pool"/>. Arguments are assumed validated.</summary>
    public static void Run(ReadOnlySpan<byte> rows, Span<byte> cache, ReadOnlySpan<long> slots, int rowBytes, WorkerPool pool)
    {
        if (slots.IsEmpty || rowBytes == 0) return;
        fixed (byte* r = rows) fixed (byte* c = cache) fixed (long* s = slots)
        {
            var job = Job.Cached ??= new Job();
            job.Rows = r; job.Cache = c; job.Slots = s; job.RowBytes = rowBytes; job.Count = slots.Length;
            job.Chunk = Math.Max(1, 65536 / rowBytes);
            pool.Run(job, (slots.Length + job.Chunk - 1) / job.Chunk);
            job.Rows = null; job.Cache = null; job.Slots = null;
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal byte* Rows, Cache;
        internal long* Slots;
        internal int RowBytes, Count, Chunk;

        public void Execute(int item, int worker)
        {
            int n1 = Math.Min(Count, (item + 1) * Chunk);
            for (int n = item * Chunk; n < n1; n++)
                Buffer.MemoryCopy(Rows + (long)n * RowBytes, Cache + Slots[n] * RowBytes, RowBytes, RowBytes);
        }
    }
}
