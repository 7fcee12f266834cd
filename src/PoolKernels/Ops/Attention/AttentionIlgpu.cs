using ILGPU;
using PoolKernels.Kernels;
using PoolKernels.Kernels.Attention;

namespace PoolKernels;

/// <summary>sdpa / sdpa_varlen dispatch to the ILGPU kernel: dtypes pick the closed launcher.</summary>
internal static class AttentionIlgpu
{
    private static readonly System.Reflection.MethodInfo LaunchDefinition = typeof(SdpaIlgpu).GetMethod(nameof(SdpaIlgpu.Launch))!;

    private static (Type, Type) Bias(DType t) => t is DType.Bool or DType.U8 ? (typeof(byte), typeof(BoolBias)) : IlgpuTypes.Element(t);

    public static void Run(IlgpuDevice g, SdpaParams p, DeviceTensor q, DeviceTensor k, DeviceTensor v, DeviceTensor? attnMask, DeviceTensor? keyPadding,
        DeviceTensor? cuQ, DeviceTensor? cuK, DeviceTensor output, DeviceTensor lse, float[] mods)
    {
        DeviceTensor? widenQ = null, widenK = null, dMods = null;
        if (cuQ is not null && cuK is not null && cuQ.DType != cuK.DType)
        {
            // one index type per kernel: widen both to I64 (B+1 values)
            widenQ = g.Upload(cuQ.ToTensor().To(DType.I64)); widenK = g.Upload(cuK.ToTensor().To(DType.I64));
            cuQ = widenQ; cuK = widenK;
        }
        try
        {
            if (mods.Length != 0) dMods = g.Upload<float>(mods, mods.Length);
            var launch = IlgpuTypes.Get<SdpaLaunch>(LaunchDefinition, IlgpuTypes.Element(q.DType), Bias(attnMask?.DType ?? DType.Bool),
                IlgpuTypes.Mask(keyPadding?.DType ?? DType.U8), IlgpuTypes.Index(cuQ?.DType ?? DType.I64));
            lock (g.Gate)
            {
                ArrayView<byte> Opt(DeviceTensor? t) => t is null ? g.Dummy.View : g.Bytes(t);
                launch(g.Accelerator, g.Accelerator.DefaultStream, g.Bytes(q), g.Bytes(k), g.Bytes(v), Opt(attnMask), Opt(keyPadding), Opt(cuQ), Opt(cuK),
                    (dMods is null ? g.Dummy.View.AsContiguous() : g.Bytes(dMods)).Cast<float>(), g.Bytes(output).Cast<float>(), g.Bytes(lse).Cast<float>(), p);
                g.Accelerator.Synchronize();
            }
        }
        finally { widenQ?.Dispose(); widenK?.Dispose(); dMods?.Dispose(); }
    }
}
