using ILGPU;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Retrieval;

/// <summary>Widens a F16/BF16/I8/U8 corpus to float32 on the device (one thread per element), for the ILGPU retrieval
/// kernels, which read float rows.</summary>
internal static class DbElementsIlgpu
{
    /// <summary>dst[i] = the number element i of raw holds (kind as in <see cref="DbElements"/>).</summary>
    [GpuKernel]
    public static void WidenKernel(Index1D i, ArrayView<byte> raw, ArrayView<float> dst, int kind)
    {
        float v;
        if (kind == DbElements.F16) v = Numerics.HalfBitsToFloat((ushort)(raw[2L * i] | (raw[2L * i + 1] << 8)));
        else if (kind == DbElements.BF16) v = Numerics.Bf16BitsToFloat((ushort)(raw[2L * i] | (raw[2L * i + 1] << 8)));
        else if (kind == DbElements.I8) v = (sbyte)raw[i];
        else v = raw[i];
        dst[i] = v;
    }

    /// <summary>Widens <paramref name="count"/> elements.</summary>
    public static void Widen(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> raw, ArrayView<float> dst, long count,
        int kind)
    {
        if (count == 0) return;
        var k = KernelCache.Get(accelerator, WidenKernel, a => a.LoadAutoGroupedKernel<Index1D, ArrayView<byte>,
            ArrayView<float>, int>(WidenKernel));
        k(stream, checked((int)count), raw, dst, kind);
    }
}
