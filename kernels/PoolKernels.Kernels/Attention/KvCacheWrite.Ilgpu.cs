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
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> rows, ArrayView<byte> cache, ArrayView<long> slots,
        int count, int rowBytes)
    {
        long total = (long)count * (rowBytes / 2);
        if (total == 0) return;
        var kernel = KernelCache.Get(accelerator, Kernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<ushort>, ArrayView<ushort>, ArrayView<long>, int>(Kernel));
        kernel(stream, checked((int)total), rows.Cast<ushort>(), cache.Cast<ushort>(), slots, rowBytes / 2);
    }
}
