using System.Runtime.CompilerServices;

namespace PoolKernels.Kernels.Attention;

/// <summary>
/// Everything a kernel of any backend needs to walk one <c>sdpa</c> or <c>sdpa_varlen</c> problem, as plain numbers
/// (ILGPU passes it by value). Element (b, h, i, e) of q lives at QBatch·b + QHead·h + QRow·i + e; for
/// <c>sdpa_varlen</c> sequence b starts at row cu_seqlens[b] instead (QBatch unused), so <c>bhtd</c>, <c>bthd</c> and
/// packed batches are one code path. Likewise k, v, out and lse (lse has no e).
/// </summary>
internal struct SdpaParams
{
    /// <summary>Batch (sequences), query heads, key/value heads, head dims of q/k and of v.</summary>
    public int Batch, Hq, Hkv, E, Ev;
    /// <summary>Sequence lengths (sdpa); for sdpa_varlen Tq/Tk hold the largest sequence (grid sizing only).</summary>
    public int Tq, Tk;
    /// <summary>1 for sdpa_varlen: per-sequence offsets and lengths from cu_seqlens.</summary>
    public int Varlen;
    /// <summary>1 for sdpa_paged: key/value row j of sequence b is row <see cref="PagedRow"/> of the caches [P,S,Hkv,E]
    /// (the kernels get seq_lens where sdpa_varlen gets cu_seqlens_q and block_table where it gets cu_seqlens_k); Tk holds
    /// the longest sequence (grid sizing only).</summary>
    public int Paged;
    /// <summary>sdpa_paged: slots per page (S), the row stride of block_table (its maxPages) and the cache's page count P.</summary>
    public int PageSize, TableStride, Pages;
    /// <summary>Element strides of q, k, v, out and lse (lse's row/head strides; its "e" does not exist).</summary>
    public long QBatch, QHead, QRow, KBatch, KHead, KRow, VBatch, VHead, VRow, OBatch, OHead, ORow, LBatch, LHead, LRow;
    /// <summary>0 none, 1 top_left, 2 bottom_right (<see cref="SdpaCausal"/>).</summary>
    public int Causal;
    /// <summary>Window bounds relative to the diagonal i + o; -1 = unbounded.</summary>
    public int WindowLeft, WindowRight;
    /// <summary>Multiplier of q·k.</summary>
    public float Scale;
    /// <summary>1 when attn_mask [B|1, Hq|1, Tq, Tk] is given; its batch and head strides (0 when broadcast).</summary>
    public int HasAttnMask;
    /// <summary>Batch and head strides of attn_mask in elements (0 for a broadcast dim of size 1).</summary>
    public long MaskBatch, MaskHead;
    /// <summary>1 when key_padding_mask [B, Tk] is given.</summary>
    public int HasKeyPadding;
    /// <summary>Score modifiers (docs/operations.md "Masked attention"): softcap (0 = off) turns s into
    /// softcap·tanh(s/softcap) before any bias; ALiBi adds -slope·|i + o - j| with the slopes at mods[AlibiBatch·b + h]
    /// (AlibiBatch = Hq for [B,Hq] slopes, 0 for [Hq]); a sink adds e^{mods[SinkBase + h]} to the softmax denominator.</summary>
    public float Softcap;
    /// <summary>1 when alibi_slopes are given (in the modifier buffer from offset 0).</summary>
    public int HasAlibi;
    /// <summary>Element stride of alibi_slopes over the batch: Hq for [B,Hq], 0 for [Hq].</summary>
    public int AlibiBatch;
    /// <summary>1 when sinks [Hq] are given, at offset <see cref="SinkBase"/> of the modifier buffer.</summary>
    public int HasSinks, SinkBase;

    /// <summary>True when a modifier changes the scores themselves (softcap or ALiBi; sinks only change the denominator).</summary>
    public readonly bool ModifiesScores => Softcap > 0 || HasAlibi != 0;

    /// <summary>The diagonal offset o of query row i: Tk - Tq for bottom_right, else 0 (windows and ALiBi use it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly int Offset(int tq, int tk) => Causal == 2 ? tk - tq : 0;

    /// <summary>ILGPU tiling (set by the launcher): query rows per group, keys per tile, row stride of the K tile in
    /// shared memory (E rounded up to odd, against bank conflicts), query blocks per (sequence, head).</summary>
    public int BlockQ, BlockK, KStride, QBlocks;

    /// <summary>The cache row of key j of sequence b: block_table[b, j / S]·S + j % S (the table entry given as a long).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly long PagedRow(long tableEntry, int j) => tableEntry * PageSize + j % PageSize;

    /// <summary>Query heads per key/value head (Hq / Hkv).</summary>
    public readonly int Group => Hq / Hkv;

    /// <summary>
    /// The contiguous key range [lo, hi] (inclusive; empty when hi &lt; lo) that causal and window bounds allow for query
    /// row i of a sequence of tq queries and tk keys: with o = tk - tq for bottom_right, else 0, j &lt;= i + o when causal,
    /// i + o - window_left &lt;= j &lt;= i + o + window_right for the bounds that are not -1. Monotonic in i, so a block of
    /// query rows [i0, i1] needs keys [lo(i0), hi(i1)] only: everything outside is skipped.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void KeyRange(int i, int tq, int tk, out int lo, out int hi)
    {
        long diag = (long)i + (Causal == 2 ? tk - tq : 0);
        long l = 0, h = tk - 1L;
        if (Causal != 0 && diag < h) h = diag;
        if (WindowRight >= 0 && diag + WindowRight < h) h = diag + WindowRight;
        if (WindowLeft >= 0 && diag - WindowLeft > l) l = diag - WindowLeft;
        if (h < l) { lo = 0; hi = -1; return; }
        lo = (int)l; hi = (int)h;
    }

    /// <summary>The keys [lo, hi] any of the query rows i0..i1 may see (the union of their <see cref="KeyRange"/>s, as one
    /// interval since both ends grow with i); empty when hi &lt; lo. Key tiles outside it are never visited.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void BlockKeyRange(int i0, int i1, int tq, int tk, out int lo, out int hi)
    {
        long o = Causal == 2 ? tk - tq : 0, d0 = i0 + o, d1 = i1 + o;
        long l = 0, h = tk - 1L;
        if (Causal != 0 && d1 < h) h = d1;
        if (WindowRight >= 0 && d1 + WindowRight < h) h = d1 + WindowRight;
        if (WindowLeft >= 0 && d0 - WindowLeft > l) l = d0 - WindowLeft;
        if (h < l) { lo = 0; hi = -1; return; }
        lo = (int)l; hi = (int)h;
    }
}
