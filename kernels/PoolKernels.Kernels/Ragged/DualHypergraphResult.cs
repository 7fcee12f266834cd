namespace PoolKernels;

/// <summary>The dual hypergraph incidence (DHT, Jo et al. 2021) as CSR in both directions.</summary>
/// <param name="HyperedgeOffsets">[H+1].</param>
/// <param name="HyperedgeMembers">Edge ids of each hyperedge, ascending.</param>
/// <param name="HyperedgeNode">[H]: original node id, -1 for loop hyperedges.</param>
/// <param name="MemberOffsets">[E+1].</param>
/// <param name="MemberHyperedges">Hyperedges of each edge, ascending.</param>
public sealed record DualHypergraphResult(long[] HyperedgeOffsets, long[] HyperedgeMembers, long[] HyperedgeNode, long[] MemberOffsets,
    long[] MemberHyperedges);
