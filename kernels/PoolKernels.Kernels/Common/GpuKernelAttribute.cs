namespace PoolKernels.Kernels;

/// <summary>
/// Marks an ILGPU kernel entry point so the PTX check compiles it for sm_80 and sm_90 and assembles it with
/// ptxas. A generic kernel names one closed instantiation to compile (its type arguments, in order); apply the
/// attribute several times for several instantiations.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
internal sealed class GpuKernelAttribute(params Type[] typeArguments) : Attribute
{
    /// <summary>Type arguments of the instantiation to compile (empty for non-generic kernels).</summary>
    public Type[] TypeArguments { get; } = typeArguments;
}
