namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>kv_cache_write</c>, reference: row n of the new keys (or values) — n = b·Tn + t, one [Hkv, E] block of
/// rowBytes bytes — goes to cache slot <c>slots[n]</c> (page·S + slot, resolved and checked by the API
/// from block_table and seq_lens: inside the pages the table gives, no slot twice). Element by element, byte exact
/// (the caches keep their dtype). Every other slot keeps its contents.
/// </summary>
internal static class KvCacheWriteReference
{
    /// <summary>Copies every row to its slot. Arguments are assumed validated.</summary>
    public static void Run(ReadOnlySpan<byte> rows, Span<byte> cache, ReadOnlySpan<long> slots, int rowBytes)
    {
        for (int n = 0; n < slots.Length; n++)
            for (int c = 0; c < rowBytes; c++) cache[(int)(slots[n] * rowBytes + c)] = rows[n * rowBytes + c];
    }
}
