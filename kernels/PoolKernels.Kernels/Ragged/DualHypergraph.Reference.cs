namespace PoolKernels.Kernels.Ragged;

/// <summary>
/// <c>dual_hypergraph</c>: edges become nodes; every original node with &gt;= 2 incidences becomes a hyperedge (in
/// increasing node id) whose members are its incident edges in increasing id; with loops, one singleton hyperedge
/// per edge follows. A self-loop (v,v) is an incidence of v twice, so it is a member of hyperedge v twice.
/// Computed on the host for every backend: it is an O(V + E) integer counting sort whose output sizes depend on
/// the data, the kind of work a GPU kernel would only slow down (two launches and a device-wide scan for a few
/// thousand integers); its outputs feed <c>gather_segment_pool</c>, which runs on the device.
/// </summary>
internal static class DualHypergraphReference
{
    /// <summary>Builds the incidence for validated edges (endpoints in [0, numNodes)).</summary>
    public static DualHypergraphResult Run(ReadOnlySpan<long> src, ReadOnlySpan<long> dst, int numNodes, bool addLoops)
    {
        int e = src.Length;
        var count = new long[numNodes];
        for (int i = 0; i < e; i++) { count[src[i]]++; count[dst[i]]++; }
        var hid = new long[numNodes];
        long h0 = 0;
        for (int v = 0; v < numNodes; v++) hid[v] = count[v] >= 2 ? h0++ : -1;
        long h = h0 + (addLoops ? e : 0);
        var hOff = new long[h + 1];
        var hNode = new long[h];
        for (int v = 0; v < numNodes; v++)
            if (hid[v] >= 0) { hOff[hid[v] + 1] = count[v]; hNode[hid[v]] = v; }
        for (long j = h0; j < h; j++) { hOff[j + 1] = 1; hNode[j] = -1; }
        for (long j = 0; j < h; j++) hOff[j + 1] += hOff[j];
        var members = new long[hOff[h]];
        var fill = new long[h];
        for (int i = 0; i < e; i++)
        {
            long u = hid[src[i]], w = hid[dst[i]];
            if (u >= 0) members[hOff[u] + fill[u]++] = i;
            if (w >= 0) members[hOff[w] + fill[w]++] = i;
            if (addLoops) members[hOff[h0 + i]] = i;
        }
        var mOff = new long[e + 1];
        var mh = new long[members.Length];
        for (int i = 0; i < e; i++)
        {
            long u = hid[src[i]], w = hid[dst[i]];
            long p = mOff[i];
            if (u >= 0 && w >= 0) { mh[p++] = Math.Min(u, w); mh[p++] = Math.Max(u, w); }
            else if (u >= 0) mh[p++] = u;
            else if (w >= 0) mh[p++] = w;
            if (addLoops) mh[p++] = h0 + i;
            mOff[i + 1] = p;
        }
        return new DualHypergraphResult(hOff, members, hNode, mOff, mh);
    }
}
