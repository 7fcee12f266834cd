using PoolKernels.Kernels.Attention;

namespace PoolKernels;

internal static class AttentionIlgpu
{
    public static void Run(IlgpuDevice g, SdpaParams p, DeviceTensor q, DeviceTensor k, DeviceTensor v, DeviceTensor? attnMask, DeviceTensor? keyPadding,
        DeviceTensor? cuQ, DeviceTensor? cuK, DeviceTensor output, DeviceTensor lse) => throw new NotSupportedException("sdpa on ILGPU: not yet");
}
