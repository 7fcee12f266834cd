using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>spatiotemporal_pool</c>, ILGPU: one thread per (b, output row, d) for out and one per (b, region, d) for regions;
/// neighbouring threads read neighbouring d (coalesced).
/// </summary>
internal static class SpatioTemporalPoolIlgpu
{
    /// <summary>out; <paramref name="i"/> runs over B·(F+N)·D.</summary>
    [GpuKernel]
    public static void OutKernel(Index1D i, ArrayView<float> x, ArrayView<float> output, int frames, int patches, int dim)
    {
        int d = i % dim, rest = i / dim, row = rest % (frames + patches), b = rest / (frames + patches);
        float s = 0;
        int count = row < frames ? patches : frames;
        for (int j = 0; j < count; j++)
        {
            int f = row < frames ? row : j, n = row < frames ? j : row - frames;
            s += x[(((long)b * frames + f) * patches + n) * dim + d];
        }
        output[i] = count == 0 ? 0 : s / count;
    }

    /// <summary>regions; <paramref name="i"/> runs over B·R·D.</summary>
    [GpuKernel]
    public static void RegionKernel(Index1D i, ArrayView<float> x, ArrayView<byte> masks, ArrayView<float> regions, int frames, int patches,
        int dim, int regionCount, int maskSize)
    {
        int d = i % dim, rest = i / dim, r = rest % regionCount, b = rest / regionCount;
        long mBase = ((long)b * regionCount + r) * frames * patches;
        float s = 0;
        int kept = 0;
        for (int f = 0; f < frames; f++)
            for (int n = 0; n < patches; n++)
            {
                if (!MaskBytes.Keep(masks, maskSize, mBase + (long)f * patches + n)) continue;
                s += x[(((long)b * frames + f) * patches + n) * dim + d];
                kept++;
            }
        regions[i] = kept == 0 ? 0 : s / kept;
    }

    /// <summary>Launches out and, when <paramref name="maskSize"/> > 0, regions.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<byte> masks,
        ArrayView<float> output, ArrayView<float> regions,
        int batch, int frames, int patches, int dim, int regionCount, int maskSize)
    {
        long n = (long)batch * (frames + patches) * dim;
        if (n > 0)
        {
            var k = KernelCache.Get(accelerator, OutKernel,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int>(OutKernel));
            k(stream, checked((int)n), x, output, frames, patches, dim);
        }
        long m = (long)batch * regionCount * dim;
        if (maskSize > 0 && m > 0)
        {
            var k = KernelCache.Get(accelerator, RegionKernel,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int, int, int,
                    int>(RegionKernel));
            k(stream, checked((int)m), x, masks, regions, frames, patches, dim, regionCount, maskSize);
        }
    }
}
