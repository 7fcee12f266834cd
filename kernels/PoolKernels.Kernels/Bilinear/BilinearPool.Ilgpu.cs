using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>Scalar parameters of the bilinear kernel.</summary>
internal struct BilinearParams
{
    /// <summary>Shape.</summary>
    public int Batch, N, Dx, Dy;
    /// <summary>Flags (0/1).</summary>
    public int HasMask, SignedSqrt;
}

/// <summary>
/// <c>bilinear_pool</c>, ILGPU: one thread per (b, i, j) output, looping over n (neighbouring threads read
/// neighbouring y features); signed square root in the same kernel, normalization by the shared row kernel.
/// </summary>
internal static class BilinearPoolIlgpu
{
    /// <summary>The kernel; <paramref name="i"/> runs over B·Dx·Dy. y is x when absent.</summary>
    [GpuKernel(typeof(byte), typeof(U8Mask))]
    [GpuKernel(typeof(long), typeof(I64Mask))]
    public static void Kernel<TMask, TMaskOp>(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<TMask> mask,
        ArrayView<float> output, BilinearParams p)
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
    {
        long per = (long)p.Dx * p.Dy;
        int b = (int)(i / per);
        if (b >= p.Batch) return;
        int f = (int)(i % per), xi = f / p.Dy, yj = f % p.Dy;
        float acc = 0;
        int count = 0;
        for (int t = 0; t < p.N; t++)
        {
            long row = (long)b * p.N + t;
            if (p.HasMask != 0 && !default(TMaskOp).Keep(mask[row])) continue;
            count++;
            acc += x[row * p.Dx + xi] * y[row * p.Dy + yj];
        }
        float z = count == 0 ? 0f : acc / count;
        if (p.SignedSqrt != 0) z = z < 0 ? -XMath.Sqrt(-z) : XMath.Sqrt(z);
        output[i] = z;
    }

    /// <summary>Launches the kernel and the normalization.</summary>
    public static void Launch<TMask, TMaskOp>(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> y,
        ArrayView<byte> mask, ArrayView<float> output, BilinearParams p, bool normalize)
        where TMask : unmanaged where TMaskOp : struct, IMaskReader<TMask>
    {
        long total = (long)p.Batch * p.Dx * p.Dy;
        if (total == 0) return;
        var k = KernelCache.Get(accelerator, Kernel<TMask, TMaskOp>,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<TMask>, ArrayView<float>,
                BilinearParams>(Kernel<TMask, TMaskOp>));
        k(stream, (int)total, x, y, mask.Cast<TMask>(), output, p);
        if (normalize) Sequence.SequencePoolIlgpu.NormalizeRows(accelerator, stream, output, p.Batch, p.Dx * p.Dy, p.Dx * p.Dy);
    }
}

/// <summary>Signature of <see cref="BilinearPoolIlgpu.Launch{TMask, TMaskOp}"/> once closed.</summary>
internal delegate void BilinearLaunch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> y,
    ArrayView<byte> mask, ArrayView<float> output, BilinearParams p, bool normalize);
