using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>kv_cache_write</c>, ILGPU: one thread per 16-bit unit of the rows (every cache dtype is F32, F16 or BF16, so a row of
/// [Hkv, E] elements is a whole number of 16-bit units): unit c of row n goes to unit c of slot <c>slots[n]</c>. In place on
/// the device; distinct slots (checked by the API) make the writes disjoint.
/// </summary>
internal static class KvCacheWriteIlgpu
{
    /// <summary>The kernel: index over rows·units.</summary>
    [GpuKernel]
    public static void Kernel(Index1D index, ArrayView<ushort> rows, ArrayView<ushort> cache, ArrayView<long> slots, int units)
    {
        long n = index / units, c = index - n * units;
        cache[slots[n] * units + c] = rows[index];
    }

    /// <summary>Launches <see cref="Kernel"/> on <paramref name="stream"/> for rows of <paramref name="rowBytes"/> bytes.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> rows, ArrayView<byte> cache,
        ArrayView<long> slots,
        int count, int rowBytes)
    {
        long total = (long)count * (rowBytes / 2);
        if (total == 0) return;
        var kernel = KernelCache.Get(accelerator, Kernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<ushort>, ArrayView<ushort>, ArrayView<long>, int>(Kernel));
        kernel(stream, checked((int)total), rows.Cast<ushort>(), cache.Cast<ushort>(), slots, rowBytes / 2);
    }

    /// <summary>Sizes of <see cref="ResolveKernel"/>: B, Tn, 16-bit units per row, slots per page, maxPages, pages.</summary>
    internal struct Dims
    {
        public int B, Tn, Units, Slots, MaxPages, Pages;
    }

    /// <summary>The write with the slots resolved on the device (block_table and seq_lens device-resident, not checked on the
    /// host): unit c of row n = b·Tn + t goes to position seq_lens[b] + t through the table; a position whose page index is
    /// past maxPages, or whose entry is not a page of the cache, is not written (never out of bounds).</summary>
    [GpuKernel(typeof(int), typeof(I32Index), typeof(int), typeof(I32Index))]
    [GpuKernel(typeof(long), typeof(I64Index), typeof(long), typeof(I64Index))]
    public static void ResolveKernel<TT, TTOp, TL, TLOp>(Index1D index, ArrayView<ushort> rows, ArrayView<ushort> cache,
        ArrayView<TT> table,
        ArrayView<TL> lens, Dims p)
        where TT : unmanaged where TTOp : struct, IIndexReader<TT> where TL : unmanaged where TLOp : struct, IIndexReader<TL>
    {
        long n = index / p.Units, c = index - n * p.Units;
        int b = (int)(n / p.Tn), t = (int)(n - (long)b * p.Tn);
        long pos = default(TLOp).Get(lens[b]) + t;
        if (pos < 0) return;
        long pi = pos / p.Slots;
        if (pi >= p.MaxPages) return;
        long page = default(TTOp).Get(table[(long)b * p.MaxPages + pi]);
        if (page < 0 || page >= p.Pages) return;
        cache[(page * p.Slots + pos % p.Slots) * p.Units + c] = rows[index];
    }

    /// <summary>Launches <see cref="ResolveKernel"/> for rows of <paramref name="rowBytes"/> bytes (closed over the table's
    /// and the lengths' index types by <paramref name="tableI64"/> and <paramref name="lensI64"/>).</summary>
    public static void LaunchResolved(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> rows, ArrayView<byte> cache,
        ArrayView<byte> table, bool tableI64, ArrayView<byte> lens, bool lensI64, int b, int tn, int rowBytes, int slots, int maxPages,
            int pages)
    {
        long total = (long)b * tn * (rowBytes / 2);
        if (total == 0) return;
        var p = new Dims { B = b, Tn = tn, Units = rowBytes / 2, Slots = slots, MaxPages = maxPages, Pages = pages };
        if (tableI64 && lensI64) Resolved<long, I64Index, long, I64Index>(accelerator, stream, rows, cache, table, lens, total, p);
        else if (tableI64) Resolved<long, I64Index, int, I32Index>(accelerator, stream, rows, cache, table, lens, total, p);
        else if (lensI64) Resolved<int, I32Index, long, I64Index>(accelerator, stream, rows, cache, table, lens, total, p);
        else Resolved<int, I32Index, int, I32Index>(accelerator, stream, rows, cache, table, lens, total, p);
    }

    private static void Resolved<TT, TTOp, TL, TLOp>(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> rows,
        ArrayView<byte> cache,
        ArrayView<byte> table, ArrayView<byte> lens, long total, Dims p)
        where TT : unmanaged where TTOp : struct, IIndexReader<TT> where TL : unmanaged where TLOp : struct, IIndexReader<TL>
    {
        var kernel = KernelCache.Get(accelerator, ResolveKernel<TT, TTOp, TL, TLOp>,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<ushort>, ArrayView<ushort>, ArrayView<TT>, ArrayView<TL>, Dims>(
                ResolveKernel<TT, TTOp, TL, TLOp>));
        kernel(stream, checked((int)total), rows.Cast<ushort>(), cache.Cast<ushort>(), table.Cast<TT>(), lens.Cast<TL>(), p);
    }
}
