using System.Runtime.CompilerServices;

namespace PoolKernels.Kernels.Retrieval;

/// <summary>
/// The one ranking order every retrieval kernel uses: higher score first, equal scores by lower id; NaN ranks below
/// every number (NaNs among themselves by id). It is a strict total order over distinct ids, so "the next best after
/// (s, id)" is well defined, which the GPU selection relies on.
/// </summary>
internal static class Ranking
{
    /// <summary>True when (a, ia) ranks before (b, ib).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Better(float a, long ia, float b, long ib)
    {
        bool an = float.IsNaN(a), bn = float.IsNaN(b);
        if (an | bn) return an && bn ? ia < ib : bn;
        return a > b || (a == b && ia < ib);
    }

    /// <summary>Double form for the reference.</summary>
    public static bool Better(double a, long ia, double b, long ib)
    {
        bool an = double.IsNaN(a), bn = double.IsNaN(b);
        if (an | bn) return an && bn ? ia < ib : bn;
        return a > b || (a == b && ia < ib);
    }

    /// <summary>Positions 0..n−1 sorted best first by (scores[p], ids[p] or p) (reference; allocates).</summary>
    public static int[] Sorted(double[] scores, long[]? ids = null)
    {
        var order = Enumerable.Range(0, scores.Length).ToArray();
        Array.Sort(order, (x, y) => x == y ? 0 : Better(scores[x], ids?[x] ?? x, scores[y], ids?[y] ?? y) ? -1 : 1);
        return order;
    }
}

/// <summary>
/// A bounded "keep the k best" heap over (score, position) pairs in caller-owned spans: the root is the worst kept
/// entry, so a stream of N candidates costs O(N log k) and O(k) memory (no full score row needed).
/// Tie ids are <c>ids[position]</c> when ids is given, else the position itself.
/// </summary>
internal static class TopK
{
    private static long Id(ReadOnlySpan<long> ids, int p) => ids.IsEmpty ? p : ids[p];

    // true when entry a ranks after entry b
    private static bool Worse(Span<float> s, Span<int> p, ReadOnlySpan<long> ids, int a, int b) => Ranking.Better(s[b], Id(ids, p[b]), s[a],
        Id(ids, p[a]));

    /// <summary>Offers a candidate to the heap of capacity <paramref name="k"/> holding <paramref name="count"/> entries.</summary>
    public static void Offer(Span<float> s, Span<int> p, ref int count, int k, float score, int position, ReadOnlySpan<long> ids = default)
    {
        if (k == 0) return;
        if (count < k)
        {
            int i = count++;
            s[i] = score; p[i] = position;
            while (i > 0)
            {
                int parent = (i - 1) / 2;
                if (!Worse(s, p, ids, i, parent)) break;
                Swap(s, p, i, parent); i = parent;
            }
            return;
        }
        if (!Ranking.Better(score, Id(ids, position), s[0], Id(ids, p[0]))) return;
        s[0] = score; p[0] = position;
        SiftDown(s, p, ids, 0, count);
    }

    private static void SiftDown(Span<float> s, Span<int> p, ReadOnlySpan<long> ids, int i, int n)
    {
        while (true)
        {
            int l = 2 * i + 1, r = l + 1, w = i;
            if (l < n && Worse(s, p, ids, l, w)) w = l;
            if (r < n && Worse(s, p, ids, r, w)) w = r;
            if (w == i) return;
            Swap(s, p, i, w); i = w;
        }
    }

    private static void Swap(Span<float> s, Span<int> p, int a, int b)
    {
        (s[a], s[b]) = (s[b], s[a]);
        (p[a], p[b]) = (p[b], p[a]);
    }

    /// <summary>Sorts the <paramref name="count"/> kept entries best first, in place.</summary>
    public static void SortBestFirst(Span<float> s, Span<int> p, int count, ReadOnlySpan<long> ids = default)
    {
        for (int end = count - 1; end > 0; end--)
        {
            Swap(s, p, 0, end);    // the worst goes last
            SiftDown(s, p, ids, 0, end);
        }
    }

    /// <summary>The best <paramref name="k"/> of <paramref name="scores"/> (positions and scores best first, into the first k
    /// entries of the spans); returns min(k, scores.Length).</summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<float> outScores, Span<int> outPositions,
        ReadOnlySpan<long> ids = default)
    {
        int count = 0;
        for (int i = 0; i < scores.Length; i++) Offer(outScores, outPositions, ref count, k, scores[i], i, ids);
        SortBestFirst(outScores, outPositions, count, ids);
        return count;
    }
}
