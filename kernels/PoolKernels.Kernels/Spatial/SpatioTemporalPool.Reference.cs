namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>spatiotemporal_pool</c> (Video-ChatGPT / RACCooN), scalar reference (double). x is [B,F,N,D] (frames × patches).
/// out [B,F+N,D]: rows 0..F−1 are the per-frame means over patches, rows F..F+N−1 the per-patch means over frames.
/// With region_masks [B,R,F,N] (raw bytes of <c>maskSize</c>-byte elements), regions [B,R,D] = the mean of x over the
/// kept (f,n); an empty region gives 0.
/// </summary>
internal static class SpatioTemporalPoolReference
{
    /// <summary>Runs into out and (when maskSize > 0) regions.</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<byte> regionMasks, int maskSize, Span<float> output, Span<float> regions,
        int batch, int frames, int patches, int dim, int regionCount)
    {
        for (int b = 0; b < batch; b++)
            for (int d = 0; d < dim; d++)
            {
                for (int f = 0; f < frames; f++)
                {
                    double s = 0;
                    for (int n = 0; n < patches; n++) s += x[(int)((((long)b * frames + f) * patches + n) * dim + d)];
                    output[(int)(((long)b * (frames + patches) + f) * dim + d)] = patches == 0 ? 0 : (float)(s / patches);
                }
                for (int n = 0; n < patches; n++)
                {
                    double s = 0;
                    for (int f = 0; f < frames; f++) s += x[(int)((((long)b * frames + f) * patches + n) * dim + d)];
                    output[(int)(((long)b * (frames + patches) + frames + n) * dim + d)] = frames == 0 ? 0 : (float)(s / frames);
                }
                if (maskSize == 0) continue;
                for (int r = 0; r < regionCount; r++)
                {
                    double s = 0; int count = 0;
                    for (int f = 0; f < frames; f++)
                        for (int n = 0; n < patches; n++)
                            if (MaskBytes.Keep(regionMasks, maskSize, (((long)b * regionCount + r) * frames + f) * patches
                                + n)) { s += x[(int)((((long)b * frames + f) * patches + n) * dim + d)]; count++; }
                    regions[(int)(((long)b * regionCount + r) * dim + d)] = count == 0 ? 0 : (float)(s / count);
                }
            }
    }
}
