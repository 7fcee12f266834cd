using System.Buffers;
using System.Runtime.InteropServices;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Attention;

namespace PoolKernels;

/// <summary>
/// Attention for inference engines (docs/operations.md "Masked attention"): <c>sdpa_paged</c> over a paged KV cache with
/// a block table, <c>kv_cache_write</c> into that cache, and <c>attention_combine</c> of partial results over disjoint key
/// sets (split-KV decode, chunked long documents), on every backend.
/// <para>Cache layout (vLLM / FlashAttention <c>block_table</c>): k_cache [P, S, Hkv, E] and v_cache [P, S, Hkv, Ev] hold P
/// pages of S slots; sequence b's position t lives in page block_table[b, t / S], slot t % S, for t &lt; seq_lens[b].
/// Entries of block_table past the pages in use are ignored (they may be -1).</para>
/// </summary>
public static partial class Attention
{
    /// <summary>The options <c>sdpa_paged</c> uses when none are given: causal bottom_right (a new query row i sees the
    /// keys up to position seq_len - Tq + i), scale 1/√E.</summary>
    public static SdpaOptions PagedDefaults { get; } = new() { Causal = SdpaCausal.BottomRight };

    // ---------------------------------------------------------------- sdpa_paged

    /// <summary><c>sdpa_paged</c> on host tensors: q [B,Hq,Tq,E] (F32|F16|BF16), k_cache [P,S,Hkv,E] and v_cache [P,S,Hkv,Ev]
    /// (q's dtype), block_table [B,maxPages] and seq_lens [B] (I32|I64). Exactly <c>sdpa</c> (bhtd) with Tk = seq_lens[b]
    /// per sequence and every score modifier; no attn_mask or key_padding_mask. Returns out [B,Hq,Tq,Ev] and lse [B,Hq,Tq].
    /// <paramref name="options"/> defaults to <see cref="PagedDefaults"/> (bottom_right); its layout must be bhtd.</summary>
    /// <exception cref="ArgumentException">A shape or dtype is invalid, a seq_len is negative or needs more pages than the
    /// table has, or a block_table entry in use is not a page of the cache.</exception>
    public static (HostTensor Out, HostTensor Lse) SdpaPaged(this Device device, HostTensor q, HostTensor kCache, HostTensor vCache,
        HostTensor blockTable, HostTensor seqLens, SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(kCache); ArgumentNullException.ThrowIfNull(vCache);
        ArgumentNullException.ThrowIfNull(blockTable); ArgumentNullException.ThrowIfNull(seqLens);
        options ??= PagedDefaults;
        var plan = PlanPaged(q.Shape, q.DType, kCache.Shape, kCache.DType, vCache.Shape, vCache.DType,
            blockTable.Data.Span, blockTable.DType, blockTable.Shape, seqLens.Data.Span, seqLens.DType, seqLens.Shape, options);
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, plan.OutShape);
        var l = scope.Output(DType.F32, plan.LseShape);
        RunPaged(device, plan, q.DType, In.Of(scope.Bind(q)), In.Of(scope.Bind(kCache)), In.Of(scope.Bind(vCache)), blockTable.Data.Span,
            blockTable.DType, seqLens.Data.Span, seqLens.DType, In.Of<byte>(blockTable.Data.Span), In.Of<byte>(seqLens.Data.Span),
                Out.Of(o),
            Out.Of(l), options.Mods);
        return (scope.Result(o), scope.Result(l));
    }

    /// <summary><c>sdpa_paged</c> on device-resident tensors (an engine's decode step: the caches stay on the device);
    /// output [B,Hq,Tq,Ev] and lse [B,Hq,Tq] F32. On the CPU devices block_table and seq_lens are host memory and checked
    /// like the host overload's (ArgumentException). On an accelerator they are not read back: the kernel clamps each length
    /// to [0, maxPages·S] and skips every key whose table entry is not a page of the cache (so nothing is read out of bounds
    /// and the call adds no synchronization); a table and lengths of different index types are read back once to widen.</summary>
    public static void SdpaPaged(this Device device, DeviceTensor q, DeviceTensor kCache, DeviceTensor vCache, DeviceTensor blockTable,
        DeviceTensor seqLens, DeviceTensor output, DeviceTensor lse, SdpaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(q); ArgumentNullException.ThrowIfNull(kCache); ArgumentNullException.ThrowIfNull(vCache);
        ArgumentNullException.ThrowIfNull(blockTable); ArgumentNullException.ThrowIfNull(seqLens);
        ArgumentNullException.ThrowIfNull(output); ArgumentNullException.ThrowIfNull(lse);
        options ??= PagedDefaults;
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[ (nameof(q), q), (nameof(kCache), kCache), (nameof(vCache),
            vCache),
            (nameof(blockTable), blockTable), (nameof(seqLens), seqLens), (nameof(output), output), (nameof(lse), lse) ])
            Check.SameDevice(device, name, t);
        // host memory (CPU devices): checked for free; on an accelerator the kernel clamps instead of a read-back (one index
        // type per kernel: a mixed I32/I64 pair is read back once and widened)
        bool onHost = blockTable.Buffer is null && seqLens.Buffer is null, mixed = blockTable.DType != seqLens.DType;
        var table = onHost || mixed ? RaggedPooling.HostBytes(blockTable, out _) : default;
        var lens = onHost || mixed ? RaggedPooling.HostBytes(seqLens, out _) : default;
        var plan = PlanPaged(q.Shape, q.DType, kCache.Shape, kCache.DType, vCache.Shape, vCache.DType, table, blockTable.DType,
            blockTable.Shape,
            lens, seqLens.DType, seqLens.Shape, options, checkValues: onHost);
        CheckOutputs(output, lse, plan);
        RunPaged(device, plan, q.DType, In.Of(q), In.Of(kCache), In.Of(vCache), table, blockTable.DType, lens, seqLens.DType,
            In.Of(blockTable),
            In.Of(seqLens), Out.Of(output), Out.Of(lse), options.Mods);
    }

    internal static Plan PlanPaged(ReadOnlySpan<int> qs, DType qt, ReadOnlySpan<int> ks, DType kt, ReadOnlySpan<int> vs, DType vt,
        ReadOnlySpan<byte> table, DType tableType, ReadOnlySpan<int> tableShape, ReadOnlySpan<byte> lens, DType lensType,
            ReadOnlySpan<int> lensShape,
        SdpaOptions options, bool checkValues = true)
    {
        Check.Rank(qs, 4, "q", "[B,Hq,Tq,E]"); Check.Rank(ks, 4, "kCache", "[P,S,Hkv,E]"); Check.Rank(vs, 4, "vCache", "[P,S,Hkv,Ev]");
        CheckFloat(qt, "q");
        if (kt != qt)
            throw new ArgumentException($"k_cache has dtype {kt.Name()} but q has {qt.Name()}; q and the caches must share one dtype.",
            "kCache");
        if (vt != qt)
            throw new ArgumentException($"v_cache has dtype {vt.Name()} but q has {qt.Name()}; q and the caches must share one dtype.",
            "vCache");
        int b = qs[0], hq = qs[1], tq = qs[2], e = qs[3], pages = ks[0], s = ks[1], hkv = ks[2], ev = vs[3];
        if (ks[3] != e) throw new ArgumentException($"k_cache {Shape.Format(ks)} must end in q's head dim E = {e}.", "kCache");
        if (vs[0] != pages || vs[1] != s || vs[2] != hkv)
            throw new ArgumentException($"v_cache {Shape.Format(vs)} must match k_cache {Shape.Format(ks)} in pages, slots and heads.",
                "vCache");
        if (s < 1) throw new ArgumentException($"pages must have at least one slot, got k_cache {Shape.Format(ks)}.", "kCache");
        if (options.Layout != SdpaLayout.Bhtd) throw new ArgumentException("sdpa_paged supports layout bhtd only (q [B,Hq,Tq,E]).",
            nameof(SdpaOptions.Layout));
        options.Validate(e);
        // values unchecked (device-resident on an accelerator): the kernel clamps; Tk is then only an upper bound
        int maxLen = checkValues ? PagedLengths(table, tableType, tableShape, lens, lensType, lensShape, b, pages, s)
            : PagedUpperBound(tableType, tableShape, lensType, lensShape, b, s);
        var p = MakeParams(b, hq, hkv, tq, maxLen, e, ev, options);
        p.KBatch = 0; p.KHead = e; p.KRow = (long)hkv * e;
        p.VBatch = 0; p.VHead = ev; p.VRow = (long)hkv * ev;
        p.Paged = 1; p.PageSize = s; p.TableStride = tableShape[1]; p.Pages = pages;
        return new Plan(p, true, tq);
    }

    /// <summary>Checks block_table [B, maxPages] and seq_lens [B] (I32|I64, read in place) against a cache of
    /// <paramref name="pages"/> pages of <paramref name="slots"/> slots; returns the longest sequence.</summary>
    private static int PagedLengths(ReadOnlySpan<byte> table, DType tableType, ReadOnlySpan<int> tableShape, ReadOnlySpan<byte> lens,
        DType lensType,
        ReadOnlySpan<int> lensShape, int b, int pages, int slots)
    {
        PagedShapes(tableType, tableShape, lensType, lensShape, b);
        return PagedLengthValues(table, tableType, tableShape, lens, lensType, b, pages, slots);
    }

    /// <summary>Checks the dtypes and shapes of block_table [B, maxPages] and seq_lens [B] (not their values).</summary>
    private static void PagedShapes(DType tableType, ReadOnlySpan<int> tableShape, DType lensType, ReadOnlySpan<int> lensShape, int b)
    {
        Check.DTypeIs(tableType, "blockTable", "I32|I64", tableType.IsIndex());
        Check.DTypeIs(lensType, "seqLens", "I32|I64", lensType.IsIndex());
        if (tableShape.Length != 2 || tableShape[0] != b)
            throw new ArgumentException($"block_table must be [B, maxPages] with B = {b}, got {Shape.Format(tableShape)}.", "blockTable");
        if (lensShape.Length != 1 || lensShape[0] != b)
            throw new ArgumentException($"seq_lens must be [B] = [{b}], got {Shape.Format(lensShape)}.", "seqLens");
    }

    /// <summary>The body of <see cref="PagedLengths"/> past the shape checks.</summary>
    private static int PagedLengthValues(ReadOnlySpan<byte> table, DType tableType, ReadOnlySpan<int> tableShape, ReadOnlySpan<byte> lens,
        DType lensType, int b, int pages, int slots)
    {
        int maxPages = tableShape[1];
        long longest = 0;
        for (int i = 0; i < b; i++)
        {
            long len = Index(lens, lensType, i);
            if (len < 0) throw new ArgumentException($"seq_lens[{i}] = {len} is negative.", "seqLens");
            if (len > (long)maxPages * slots)
                throw new ArgumentException($"seq_lens[{i}] = {len} needs {(len + slots - 1) / slots} pages but block_table has "
                    + $"{maxPages} per sequence "
                    + $"(pages of {slots} slots).", "seqLens");
            for (long j = 0; j < (len + slots - 1) / slots; j++)
            {
                long page = Index(table, tableType, (long)i * maxPages + j);
                if (page < 0 || page >= pages)
                    throw new ArgumentException($"block_table[{i}, {j}] = {page} is not a page of the cache (0..{pages - 1}); sequence "
                        + $"{i} uses "
                        + $"{(len + slots - 1) / slots} pages.", "blockTable");
            }
            longest = Math.Max(longest, len);
        }
        if (longest > int.MaxValue) throw new ArgumentException($"seq_lens up to {longest} exceed int.MaxValue keys.", "seqLens");
        return (int)longest;
    }

    private static int PagedUpperBound(DType tableType, ReadOnlySpan<int> tableShape, DType lensType, ReadOnlySpan<int> lensShape, int b,
        int slots)
    {
        PagedShapes(tableType, tableShape, lensType, lensShape, b);
        long bound = (long)tableShape[1] * slots;
        if (bound > int.MaxValue)
            throw new ArgumentException($"block_table [B, {tableShape[1]}] of pages of {slots} slots exceeds int.MaxValue keys.",
            "blockTable");
        return (int)bound;
    }

    private static long Index(ReadOnlySpan<byte> bytes, DType t, long i) =>
        t == DType.I64 ? MemoryMarshal.Cast<byte, long>(bytes)[(int)i] : MemoryMarshal.Cast<byte, int>(bytes)[(int)i];

    // ---------------------------------------------------------------- kv_cache_write

    /// <summary><c>kv_cache_write</c> in place on host caches: writes k_new [B,Tn,Hkv,E] and v_new [B,Tn,Hkv,Ev] at positions
    /// seq_lens[b] + t (seq_lens = the lengths before the write) of k_cache [P,S,Hkv,E] and v_cache [P,S,Hkv,Ev], through
    /// block_table [B,maxPages] (I32|I64). k_new/v_new have the caches' dtype (F32|F16|BF16); every other slot keeps its
    /// contents. seq_lens is not advanced (the caller adds Tn).</summary>
    /// <exception cref="ArgumentException">A shape or dtype is invalid, a position falls outside the pages the table gives
    /// (or the table names a page the cache does not have), or two writes target one slot — all checked before any write.</exception>
    public static void KvCacheWrite(this Device device, HostTensor kNew, HostTensor vNew, HostTensor kCache, HostTensor vCache,
        HostTensor blockTable, HostTensor seqLens)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(kNew); ArgumentNullException.ThrowIfNull(vNew); ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(vCache); ArgumentNullException.ThrowIfNull(blockTable);
        ArgumentNullException.ThrowIfNull(seqLens);
        using var scope = new HostScope(device);
        var kc = scope.Bind(kCache);
        var vc = scope.Bind(vCache);
        // the table and lengths stay host memory (wrappers, never handed to a kernel): the device overload then checks them on
        // the host and rejects bad positions, as on every backend
        var table = new DeviceTensor(device, blockTable.DType, blockTable.ShapeArray, blockTable.Data, null);
        var lens = new DeviceTensor(device, seqLens.DType, seqLens.ShapeArray, seqLens.Data, null);
        device.KvCacheWrite(scope.Bind(kNew), scope.Bind(vNew), kc, vc, table, lens);
        HostScope.WriteBack(kc, kCache); HostScope.WriteBack(vc, vCache);
    }

    /// <summary><c>kv_cache_write</c> in place on device-resident caches (see the host overload). With block_table and
    /// seq_lens in host memory (the CPU devices, and the host overload) the slots are resolved and checked on the host
    /// (ArgumentException before any write). Device-resident on an accelerator, the kernel resolves them itself with no read-back:
    /// a position outside the table's pages is not written, and two positions mapped to one slot leave one of the two
    /// writes (unspecified which).</summary>
    public static void KvCacheWrite(this Device device, DeviceTensor kNew, DeviceTensor vNew, DeviceTensor kCache, DeviceTensor vCache,
        DeviceTensor blockTable, DeviceTensor seqLens)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(kNew); ArgumentNullException.ThrowIfNull(vNew); ArgumentNullException.ThrowIfNull(kCache);
        ArgumentNullException.ThrowIfNull(vCache); ArgumentNullException.ThrowIfNull(blockTable);
        ArgumentNullException.ThrowIfNull(seqLens);
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[ (nameof(kNew), kNew), (nameof(vNew), vNew), (nameof(kCache),
            kCache),
            (nameof(vCache), vCache), (nameof(blockTable), blockTable), (nameof(seqLens), seqLens) ])
            Check.SameDevice(device, name, t);
        ReadOnlySpan<int> kn = kNew.Shape, vn = vNew.Shape, kc = kCache.Shape, vc = vCache.Shape;
        Check.Rank(kn, 4, nameof(kNew), "[B,Tn,Hkv,E]"); Check.Rank(vn, 4, nameof(vNew), "[B,Tn,Hkv,Ev]");
        Check.Rank(kc, 4, nameof(kCache), "[P,S,Hkv,E]"); Check.Rank(vc, 4, nameof(vCache), "[P,S,Hkv,Ev]");
        CheckFloat(kCache.DType, nameof(kCache));
        if (vCache.DType != kCache.DType)
            throw new ArgumentException($"v_cache has dtype {vCache.DType.Name()} but k_cache has {kCache.DType.Name()}.", nameof(vCache));
        if (kNew.DType != kCache.DType)
            throw new ArgumentException($"k_new has dtype {kNew.DType.Name()} but k_cache has {kCache.DType.Name()}; they must match.",
                nameof(kNew));
        if (vNew.DType != vCache.DType)
            throw new ArgumentException($"v_new has dtype {vNew.DType.Name()} but v_cache has {vCache.DType.Name()}; they must match.",
                nameof(vNew));
        if (vc[0] != kc[0] || vc[1] != kc[1] || vc[2] != kc[2])
            throw new ArgumentException($"v_cache {Shape.Format(vc)} must match k_cache {Shape.Format(kc)} in pages, slots and heads.",
                nameof(vCache));
        if (kc[1] < 1) throw new ArgumentException($"pages must have at least one slot, got k_cache {Shape.Format(kc)}.", nameof(kCache));
        if (kn[2] != kc[2] || kn[3] != kc[3])
            throw new ArgumentException($"k_new {Shape.Format(kn)} must be [B,Tn,Hkv,E] with k_cache's Hkv and E ({Shape.Format(kc)}).",
                nameof(kNew));
        if (vn[0] != kn[0] || vn[1] != kn[1] || vn[2] != vc[2] || vn[3] != vc[3])
            throw new ArgumentException($"v_new {Shape.Format(vn)} must be [B,Tn,Hkv,Ev] = [{kn[0]},{kn[1]},{vc[2]},{vc[3]}].",
                nameof(vNew));
        int b = kn[0], tn = kn[1], pages = kc[0], slots = kc[1];
        if (blockTable.Buffer is not null || seqLens.Buffer is not null)
        {
            // device-resident on an accelerator: the kernel resolves the slots itself, no read-back
            PagedShapes(blockTable.DType, blockTable.Shape, seqLens.DType, seqLens.Shape, b);
            if (b * (long)tn == 0) return;
            var resolved = new ResolvedWritePlan(kNew, vNew, kCache, vCache, blockTable, seqLens, b, tn, slots, pages,
                checked(kc[2] * kc[3] * kCache.DType.Size()), checked(vc[2] * vc[3] * vCache.DType.Size()));
            Dispatch.Run(device, ref resolved);
            return;
        }
        var table = RaggedPooling.HostBytes(blockTable, out _);
        var lens = RaggedPooling.HostBytes(seqLens, out _);
        PagedLengths(table, blockTable.DType, blockTable.Shape, lens, seqLens.DType, seqLens.Shape, b, pages, slots);
        int count = checked(b * tn);
        var slotBuf = ArrayPool<long>.Shared.Rent(Math.Max(1, 2 * count));
        try
        {
            var slotSpan = slotBuf.AsSpan(0, count);
            int maxPages = blockTable.Shape[1];
            for (int i = 0; i < b; i++)
                for (int t = 0; t < tn; t++)
                {
                    long pos = Index(lens, seqLens.DType, i) + t, pi = pos / slots;
                    if (pi >= maxPages)
                        throw new ArgumentException($"position {pos} of sequence {i} (seq_lens[{i}] + {t}) needs page {pi}, but "
                            + $"block_table has "
                            + $"{maxPages} per sequence.", nameof(blockTable));
                    long page = Index(table, blockTable.DType, (long)i * maxPages + pi);
                    if (page < 0 || page >= pages)
                        throw new ArgumentException($"block_table[{i}, {pi}] = {page} (position {pos} of sequence {i}) is not a page of "
                            + $"the cache "
                            + $"(0..{pages - 1}).", nameof(blockTable));
                    slotSpan[i * tn + t] = page * slots + pos % slots;
                }
            var sorted = slotBuf.AsSpan(count, count);
            slotSpan.CopyTo(sorted);
            sorted.Sort();
            for (int i = 1; i < count; i++)
                if (sorted[i] == sorted[i - 1])
                    throw new ArgumentException($"two writes target cache slot {sorted[i]} (page {sorted[i] / slots}, slot "
                        + $"{sorted[i] % slots}): "
                        + "block_table gives one page to two positions.", nameof(blockTable));
            if (count == 0) return;
            int kRow = checked(kc[2] * kc[3] * kCache.DType.Size()), vRow = checked(vc[2] * vc[3] * vCache.DType.Size());
            var plan = new WritePlan(In.Of(kNew), In.Of(vNew), kCache, vCache, In.Of<long>(slotSpan), count, kRow, vRow);
            Dispatch.Run(device, ref plan);
        }
        finally { ArrayPool<long>.Shared.Return(slotBuf); }
    }

    /// <summary>A validated kv_cache_write: rows of k_new/v_new to the resolved, distinct slots of the caches (in place).</summary>
    private readonly ref struct WritePlan(In kNew, In vNew, DeviceTensor kCache, DeviceTensor vCache, In slots, int count, int kRow,
        int vRow)
        : IPlan
    {
        private readonly In _kNew = kNew, _vNew = vNew, _slots = slots;

        public void Reference()
        {
            KvCacheWriteReference.Run(_kNew.Host, kCache.Host.Span, _slots.As<long>(), kRow);
            KvCacheWriteReference.Run(_vNew.Host, vCache.Host.Span, _slots.As<long>(), vRow);
        }

        public void Simd(CpuDevice cpu)
        {
            KvCacheWriteSimd.Run(_kNew.Host, kCache.Host.Span, _slots.As<long>(), kRow, cpu.Pool);
            KvCacheWriteSimd.Run(_vNew.Host, vCache.Host.Span, _slots.As<long>(), vRow, cpu.Pool);
        }

        public void Ilgpu(IlgpuScope s)
        {
            var slots = s.In<long>(_slots);
            KvCacheWriteIlgpu.Launch(s.Accelerator, s.Stream, s.In<byte>(_kNew), s.Bytes(kCache), slots, count, kRow);
            KvCacheWriteIlgpu.Launch(s.Accelerator, s.Stream, s.In<byte>(_vNew), s.Bytes(vCache), slots, count, vRow);
        }
    }

    /// <summary>kv_cache_write with device-resident block_table and seq_lens: slots resolved by the kernel; a position outside
    /// the table's pages is not written (the host-memory path rejects it instead).</summary>
    private readonly struct ResolvedWritePlan(DeviceTensor kNew, DeviceTensor vNew, DeviceTensor kCache, DeviceTensor vCache,
        DeviceTensor table,
        DeviceTensor lens, int b, int tn, int slots, int pages, int kRow, int vRow) : IPlan
    {
        public void Reference() => Host();

        public void Simd(CpuDevice cpu) => Host();

        // the same rule on host memory (reached only for tensors of a CPU device, which take the checked path today)
        private void Host()
        {
            var t = table.Host.Span; var l = lens.Host.Span;
            int maxPages = table.Shape[1];
            for (int i = 0; i < b; i++)
                for (int s = 0; s < tn; s++)
                {
                    long pos = Index(l, lens.DType, i) + s, pi = pos / slots;
                    if (pos < 0 || pi >= maxPages) continue;
                    long page = Index(t, table.DType, (long)i * maxPages + pi);
                    if (page < 0 || page >= pages) continue;
                    long slot = page * slots + pos % slots;
                    kNew.Host.Span.Slice((i * tn + s) * kRow, kRow).CopyTo(kCache.Host.Span.Slice((int)(slot * kRow), kRow));
                    vNew.Host.Span.Slice((i * tn + s) * vRow, vRow).CopyTo(vCache.Host.Span.Slice((int)(slot * vRow), vRow));
                }
        }

        public void Ilgpu(IlgpuScope s)
        {
            int maxPages = table.Shape[1];
            bool t64 = table.DType == DType.I64, l64 = lens.DType == DType.I64;
            KvCacheWriteIlgpu.LaunchResolved(s.Accelerator, s.Stream, s.Bytes(kNew), s.Bytes(kCache), s.Bytes(table), t64, s.Bytes(lens),
                l64, b, tn,
                kRow, slots, maxPages, pages);
            KvCacheWriteIlgpu.LaunchResolved(s.Accelerator, s.Stream, s.Bytes(vNew), s.Bytes(vCache), s.Bytes(table), t64, s.Bytes(lens),
                l64, b, tn,
                vRow, slots, maxPages, pages);
        }
    }

    // ---------------------------------------------------------------- attention_combine

    /// <summary><c>attention_combine</c> on host tensors: outs [N, ..., Ev] and lses [N, ...] F32 (N partial results over
    /// disjoint key sets, e.g. [N,B,Hq,Tq,Ev] and [N,B,Hq,Tq], made without sinks) → out [..., Ev], lse [...]:
    /// lse = ln Σ_n e^{lse_n}, out = Σ_n e^{lse_n - lse}·out_n. A partial with lse_n = -inf weighs 0 whatever its out holds;
    /// all -inf gives out 0 and lse -inf. Combining sdpa over disjoint key sets gives sdpa over their union.</summary>
    public static (HostTensor Out, HostTensor Lse) AttentionCombine(this Device device, HostTensor outs, HostTensor lses)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(outs); ArgumentNullException.ThrowIfNull(lses);
        CombineShapes(outs.Shape, outs.DType, lses.Shape, lses.DType, out _, out _, out _);
        using var scope = new HostScope(device);
        var o = scope.Output(DType.F32, outs.ShapeArray[1..]);
        var l = scope.Output(DType.F32, lses.ShapeArray[1..]);
        device.AttentionCombine(scope.Bind(outs), scope.Bind(lses), o, l);
        return (scope.Result(o), scope.Result(l));
    }

    /// <summary><c>attention_combine</c> on device-resident tensors: output = outs' shape without N, lse = lses' shape
    /// without N, both F32.</summary>
    public static void AttentionCombine(this Device device, DeviceTensor outs, DeviceTensor lses, DeviceTensor output, DeviceTensor lse)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(outs); ArgumentNullException.ThrowIfNull(lses);
        ArgumentNullException.ThrowIfNull(output); ArgumentNullException.ThrowIfNull(lse);
        foreach (var (name, t) in (ReadOnlySpan<(string, DeviceTensor?)>)[ (nameof(outs), outs), (nameof(lses), lses), (nameof(output),
            output),
            (nameof(lse), lse) ])
            Check.SameDevice(device, name, t);
        CombineShapes(outs.Shape, outs.DType, lses.Shape, lses.DType, out int n, out int rows, out int ev);
        Check.DTypeIs(output.DType, nameof(output), "F32", output.DType == DType.F32);
        Check.DTypeIs(lse.DType, nameof(lse), "F32", lse.DType == DType.F32);
        if (!output.Shape.SequenceEqual(outs.Shape[1..]))
            throw new ArgumentException($"output must be {Shape.Format(outs.Shape[1..])} (outs without N), got "
                + $"{Shape.Format(output.Shape)}.", nameof(output));
        if (!lse.Shape.SequenceEqual(lses.Shape[1..]))
            throw new ArgumentException($"lse must be {Shape.Format(lses.Shape[1..])} (lses without N), got {Shape.Format(lse.Shape)}.",
                nameof(lse));
        var plan = new CombinePlan(In.Of(outs), In.Of(lses), Out.Of(output), Out.Of(lse), n, rows, ev);
        Dispatch.Run(device, ref plan);
    }

    /// <summary><c>attention_combine</c> over host spans: outs [N, rows, Ev], lses [N, rows], output [rows, Ev], lse [rows]
    /// (rows = B·Hq·Tq). On reference and simd nothing is allocated.</summary>
    public static void AttentionCombine(this Device device, ReadOnlySpan<float> outs, ReadOnlySpan<float> lses, Span<float> output,
        Span<float> lse,
        int splits, int rows, int ev)
    {
        ArgumentNullException.ThrowIfNull(device);
        if ((splits | rows | ev) < 0) throw new ArgumentException($"splits, rows and ev must be >= 0, got {splits}, {rows}, {ev}.",
            nameof(splits));
        if (outs.Length != (long)splits * rows * ev) Check.Length(outs.Length, (long)splits * rows * ev, nameof(outs), "[N,rows,Ev]");
        if (lses.Length != (long)splits * rows) Check.Length(lses.Length, (long)splits * rows, nameof(lses), "[N,rows]");
        if (output.Length != (long)rows * ev) Check.Length(output.Length, (long)rows * ev, nameof(output), "[rows,Ev]");
        if (lse.Length != rows) Check.Length(lse.Length, rows, nameof(lse), "[rows]");
        var plan = new CombinePlan(In.Of(outs), In.Of(lses), Out.Of(output), Out.Of(lse), splits, rows, ev);
        Dispatch.Run(device, ref plan);
    }

    /// <summary>A validated attention_combine: outs [N, rows, Ev], lses [N, rows] → out [rows, Ev], lse [rows].</summary>
    private readonly ref struct CombinePlan(In outs, In lses, Out output, Out lse, int n, int rows, int ev) : IPlan
    {
        private readonly In _outs = outs, _lses = lses;
        private readonly Out _out = output, _lse = lse;

        public void Reference() => AttentionCombineReference.Run(_outs.As<float>(), _lses.As<float>(), _out.As<float>(), _lse.As<float>(),
            n, rows, ev);

        public void Simd(CpuDevice cpu) =>
            AttentionCombineSimd.Run(_outs.As<float>(), _lses.As<float>(), _out.As<float>(), _lse.As<float>(), n, rows, ev, cpu.Pool);

        public void Ilgpu(IlgpuScope s)
        {
            var o = s.Out<float>(_out);
            var l = s.Out<float>(_lse);
            AttentionCombineIlgpu.Launch(s.Accelerator, s.Stream, s.In<float>(_outs), s.In<float>(_lses), o, l, n, rows, ev);
            s.Download(o, _out);
            s.Download(l, _lse);
        }
    }

    private static void CombineShapes(ReadOnlySpan<int> os, DType ot, ReadOnlySpan<int> ls, DType lt, out int n, out int rows, out int ev)
    {
        Check.DTypeIs(ot, "outs", "F32", ot == DType.F32);
        Check.DTypeIs(lt, "lses", "F32", lt == DType.F32);
        if (os.Length < 2)
            throw new ArgumentException($"outs must be [N, ..., Ev] (rank >= 2, e.g. [N,B,Hq,Tq,Ev]), got {Shape.Format(os)}.", "outs");
        if (ls.Length != os.Length - 1 || !ls.SequenceEqual(os[..^1]))
            throw new ArgumentException($"lses must be outs' shape without Ev: {Shape.Format(os[..^1])}, got {Shape.Format(ls)}.", "lses");
        n = os[0]; ev = os[^1];
        long r = 1;
        for (int i = 1; i < ls.Length; i++) r *= ls[i];
        if (r > int.MaxValue) throw new ArgumentException($"lses {Shape.Format(ls)} has more than int.MaxValue rows.", "lses");
        rows = (int)r;
    }
}
