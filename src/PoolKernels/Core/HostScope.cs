namespace PoolKernels;

/// <summary>Binds host tensors to a device for one call of a host-tensor overload: zero-copy wrappers on the
/// CPU devices, uploads on ILGPU devices (freed when the scope ends).</summary>
internal sealed class HostScope(Device device) : IDisposable
{
    private readonly List<DeviceTensor> _owned = [];

    public DeviceTensor Bind(HostTensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        var d = device.Bind(t);
        _owned.Add(d);
        return d;
    }

    public DeviceTensor? BindOptional(HostTensor? t) => t is null ? null : Bind(t);

    public DeviceTensor Output(DType dtype, params int[] shape)
    {
        var d = device.Allocate(dtype, shape);
        _owned.Add(d);
        return d;
    }

    public HostTensor Result(DeviceTensor d) => device.ToHost(d);

    /// <summary>Copies an in-place result back into the host tensor it was bound from (nothing when the binding is the host
    /// memory itself, as on the CPU devices).</summary>
    public static void WriteBack(DeviceTensor bound, HostTensor host)
    {
        if (bound.Buffer is not null) bound.CopyToBytes(host.Data.Span);
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
    }
}
