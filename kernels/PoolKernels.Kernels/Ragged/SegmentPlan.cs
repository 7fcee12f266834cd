namespace PoolKernels.Kernels.Ragged;

/// <summary>One unit of segment work. <see cref="Slot"/> &lt; 0: the whole segments [Seg0, Seg1), entries
/// [Start, End), each reduced and finalized into its output row. <see cref="Slot"/> &gt;= 0: the piece [Start, End)
/// of the long segment Seg0, reduced raw into partial row <see cref="Slot"/> (combined later by the fix-up).</summary>
internal struct SegmentItem
{
    /// <summary>First segment and one past the last.</summary>
    public int Seg0, Seg1;
    /// <summary>Partial row of a piece, or -1 for whole segments.</summary>
    public int Slot;
    /// <summary>Entry range covered.</summary>
    public long Start, End;
}

/// <summary>A segment too long for one item: its pieces are partial rows [Slot0, Slot0 + Pieces).</summary>
internal struct LongSegment
{
    /// <summary>The segment.</summary>
    public int Seg;
    /// <summary>First partial row and number of pieces.</summary>
    public int Slot0, Pieces;
}

/// <summary>
/// Splits a CSR segmentation into balanced work items, so that very uneven segments (one segment of a million
/// entries beside millions of empty ones) still spread evenly over threads: short segments are grouped up to
/// <c>rowsPerItem</c> entries and <c>maxSegs</c> segments per item (so a run of empty segments costs one item per
/// <c>maxSegs</c>), and a segment longer than <c>rowsPerItem</c> is cut into at most <c>maxPieces</c> pieces whose
/// partial results a small fix-up combines. Work splits by rows, not only by segment. Built on the host in
/// O(S) from the validated offsets (the same pass that checks them); buffers are reused across calls.
/// </summary>
internal sealed class SegmentPlan
{
    /// <summary>The items (first <see cref="ItemCount"/> valid).</summary>
    public SegmentItem[] Items = new SegmentItem[16];
    /// <summary>Number of items.</summary>
    public int ItemCount;
    /// <summary>The long segments (first <see cref="LongCount"/> valid).</summary>
    public LongSegment[] Longs = new LongSegment[4];
    /// <summary>Number of long segments.</summary>
    public int LongCount;
    /// <summary>Partial rows needed.</summary>
    public int Slots;

    /// <summary>Builds the plan for validated offsets.</summary>
    public void Build<TOff>(ReadOnlySpan<TOff> offsets, long rowsPerItem, int maxSegs, int maxPieces) where TOff : unmanaged
    {
        int segs = offsets.Length - 1;
        ItemCount = 0; LongCount = 0; Slots = 0;
        rowsPerItem = Math.Max(1, rowsPerItem);
        int s = 0;
        while (s < segs)
        {
            long a = Elements.ToInt64(offsets[s]), b = Elements.ToInt64(offsets[s + 1]), len = b - a;
            if (len > rowsPerItem)
            {
                long piece = Math.Max(rowsPerItem, (len + maxPieces - 1) / maxPieces);
                int pieces = (int)((len + piece - 1) / piece);
                if (LongCount == Longs.Length) Array.Resize(ref Longs, Longs.Length * 2);
                Longs[LongCount++] = new LongSegment { Seg = s, Slot0 = Slots, Pieces = pieces };
                for (int p = 0; p < pieces; p++)
                    Add(new SegmentItem
                    {
                        Seg0 = s,
                        Seg1 = s + 1,
                        Slot = Slots + p,
                        Start = a + p * piece,
                        End = Math.Min(b,
                        a + (p + 1) * piece)
                    });
                Slots += pieces;
                s++;
                continue;
            }
            int s1 = s;
            long rows = 0, end = a;
            while (s1 < segs && s1 - s < maxSegs)
            {
                long e = Elements.ToInt64(offsets[s1 + 1]), l = e - end;
                if (l > rowsPerItem || (rows + l > rowsPerItem && s1 > s)) break;
                rows += l; end = e; s1++;
            }
            Add(new SegmentItem { Seg0 = s, Seg1 = s1, Slot = -1, Start = a, End = end });
            s = s1;
        }
    }

    private void Add(SegmentItem item)
    {
        if (ItemCount == Items.Length) Array.Resize(ref Items, Items.Length * 2);
        Items[ItemCount++] = item;
    }
}
