using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Spatial;

/// <summary>
/// <c>scale_gem</c>, ILGPU. p = inf: one group per (s,b) row computes its norm (shared-memory sum), then one thread per
/// (b,d) takes the max over s of x/norm. Finite p: one group reduces γ = min(x) (NaN-propagating, shared memory), then
/// one thread per (b,d) accumulates over s.
/// </summary>
internal static class ScaleGemIlgpu
{
    /// <summary>Row norms: one group per row of <paramref name="dim"/> entries; writes max(‖row‖, 1e-12).</summary>
    [GpuKernel]
    public static void NormKernel(ArrayView<float> x, ArrayView<float> norms, int dim)
    {
        long row = (long)Grid.IdxX * dim;
        float ss = 0;
        for (int d = Group.IdxX; d < dim; d += Group.DimX) { float v = x[row + d]; ss += v * v; }
        float n = Numerics.MaxNaN(XMath.Sqrt(GroupReduce.Sum(ss)), 1e-12f);
        if (Group.IdxX == 0) norms[Grid.IdxX] = n;
    }

    /// <summary>γ = min of the first <paramref name="count"/> entries of x: one group.</summary>
    [GpuKernel]
    public static void MinKernel(ArrayView<float> x, ArrayView<float> result, long count)
    {
        var shared = SharedMemory.Allocate<float>(GroupReduce.MaxGroup);
        float m = float.PositiveInfinity;
        for (long i = Group.IdxX; i < count; i += Group.DimX) m = Numerics.MinNaN(m, x[i]);
        int tid = Group.IdxX;
        shared[tid] = m;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s >>= 1)
        {
            if (tid < s) shared[tid] = Numerics.MinNaN(shared[tid], shared[tid + s]);
            Group.Barrier();
        }
        if (tid == 0) result[0] = shared[0];
    }

    /// <summary>The pooling kernel; <paramref name="i"/> runs over B·D. <paramref name="aux"/> holds the S·B norms (p = inf) or
    /// γ.</summary>
    [GpuKernel]
    public static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> aux, ArrayView<float> output, int scales, int batch, int dim,
        float p)
    {
        int b = i / dim, d = i % dim;
        if (b >= batch) return;
        bool inf = p == float.PositiveInfinity;
        float gamma = inf ? 0 : aux[0];
        float acc = inf ? float.NegativeInfinity : 0;
        for (int s = 0; s < scales; s++)
        {
            float v = x[((long)s * batch + b) * dim + d];
            if (inf) acc = Numerics.MaxNaN(acc, v / aux[(long)s * batch + b]);
            else acc += XMath.Pow(v - gamma, p);
        }
        output[i] = inf ? acc : XMath.Pow(acc / scales, 1f / p) + gamma;
    }

    /// <summary>Runs both steps; allocates the small auxiliary buffer on the accelerator.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> output, int scales,
        int batch, int dim, float p,
        Func<long, ArrayView<float>> temp)
    {
        if (batch == 0 || dim == 0 || scales == 0) return;
        bool inf = float.IsPositiveInfinity(p);
        var aux = temp(inf ? (long)scales * batch : 1); // freed by the caller's scope once the stream is idle
        int group = GroupReduce.GroupSize(accelerator);
        if (inf)
        {
            var nk = KernelCache.Get(accelerator, NormKernel, a => a.LoadKernel<ArrayView<float>, ArrayView<float>, int>(NormKernel));
            nk(stream, new KernelConfig(scales * batch, group), x, aux, dim);
        }
        else
        {
            var mk = KernelCache.Get(accelerator, MinKernel, a => a.LoadKernel<ArrayView<float>, ArrayView<float>, long>(MinKernel));
            mk(stream, new KernelConfig(1, group), x, aux, (long)scales * batch * dim);
        }
        var k = KernelCache.Get(accelerator, Kernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, float>(Kernel));
        k(stream, batch * dim, x, aux, output, scales, batch, dim, p);
    }
}
