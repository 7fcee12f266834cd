using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Quantized;

/// <summary>
/// <c>quantize</c>, ILGPU: a ranges kernel (one thread per dimension: min, max and a non-finite flag over the rows, read
/// back by the host, which validates them before anything is quantized), a levels kernel (one thread per element, the
/// double arithmetic of <see cref="QuantizeMath.Level"/>) and a packing kernel (one thread per output byte).
/// </summary>
internal static class QuantizeIlgpu
{
    /// <summary>ranges[d] = min, ranges[D + d] = max over the rows of dimension d; ranges[2D + d] = 1 when one is not finite.</summary>
    [GpuKernel]
    public static void RangesKernel(Index1D d, ArrayView<float> data, ArrayView<float> ranges, int rows, int dim)
    {
        float lo = data[d], hi = lo, bad = 0;
        for (int r = 0; r < rows; r++)
        {
            float x = data[(long)r * dim + d];
            if ((Interop.FloatAsInt(x) & 0x7FFFFFFFu) >= 0x7F800000u) bad = 1; // NaN or ±inf, tested on the bits (fast-math proof)
            if (x < lo) lo = x;
            if (x > hi) hi = x;
        }
        ranges[d] = lo; ranges[dim + d] = hi; ranges[2 * dim + d] = bad;
    }

    /// <summary>One int8/uint8 element; ranges [2,D] (start row, end row).</summary>
    [GpuKernel]
    public static void LevelsKernel(Index1D i, ArrayView<float> x, ArrayView<float> ranges, ArrayView<byte> output, int dim, int flip)
    {
        int d = (int)(i % dim);
        double start = ranges[d];
        double step = ((double)ranges[dim + d] - start) / 255.0;
        int q = 0;
        float xi = x[i];
        if (step != 0 && (Interop.FloatAsInt(xi) & 0x7FFFFFFFu) <= 0x7F800000u) // NaN gives 0 (bits: some OpenCL compilers assume no NaN)
        {
            double t = ((double)xi - start) / step;
            q = t >= 255.0 ? 255 : t > 0 ? (int)t : 0;
        }
        output[i] = (byte)(q ^ flip);
    }

    /// <summary>One packed byte of row i / w, bits 8b..8b+7 (first dimension in bit 7).</summary>
    [GpuKernel]
    public static void PackKernel(Index1D i, ArrayView<float> x, ArrayView<byte> output, int dim, int w, int flip)
    {
        long row = i / w; int b = (int)(i % w);
        int v = 0;
        for (int j = 0; j < 8; j++)
        {
            int d = b * 8 + j;
            if (d < dim && Positive(x[row * dim + d])) v |= 0x80 >> j;
        }
        output[i] = (byte)(v ^ flip);
    }

    /// <summary>x &gt; 0 on the bits: +0 &lt; bits &lt;= +inf (−0, negatives and NaN are not; a positive subnormal is), whatever
    /// the device compiler assumes about NaN or denormals.</summary>
    private static bool Positive(float x)
    {
        int b = (int)Interop.FloatAsInt(x);
        return b > 0 && b <= 0x7F800000;
    }

    /// <summary>Per-dimension ranges of [rows, dim] into <paramref name="ranges"/> (3·dim floats).</summary>
    public static void Ranges(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> data, ArrayView<float> ranges,
        int rows, int dim)
    {
        var k = KernelCache.Get(accelerator, RangesKernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(RangesKernel));
        k(stream, dim, data, ranges, rows, dim);
    }

    /// <summary>Quantizes x [N,D] into output: levels with ranges [2,D] (F32), or packed bits.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> ranges,
        ArrayView<byte> output,
        int n, int dim, bool pack, bool signed)
    {
        if (n == 0 || dim == 0) return;
        int flip = signed ? 0x80 : 0;
        if (pack)
        {
            int w = (dim + 7) / 8;
            var pk = KernelCache.Get(accelerator, PackKernel,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<byte>, int, int, int>(PackKernel));
            pk(stream, (int)((long)n * w), x, output, dim, w, flip);
        }
        else
        {
            var lk = KernelCache.Get(accelerator, LevelsKernel,
                a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<byte>, int, int>(LevelsKernel));
            lk(stream, (int)((long)n * dim), x, ranges, output, dim, flip);
        }
    }
}
