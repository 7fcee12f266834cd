namespace PoolKernels;

/// <summary>Binds host tensors to a device for one call of a host-tensor overload: zero-copy wrappers on the
/// CPU devices, uploads on ILGPU devices (freed when the scope ends).</summary>
internal sealed class HostScope(Device device) : IDisposable
{
    private readonly List<DeviceTensor> _owned = [];

    public DeviceTensor Bind(HostTensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (device is CpuDevice) return new DeviceTensor(device, t.DType, t.ShapeArray, t.Data, null);
        var d = device.Upload(t);
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

    public HostTensor Result(DeviceTensor d) => device is CpuDevice ? new HostTensor(d.DType, d.ShapeArray, d.Host, owned: true) : d.ToTensor();

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
    }
}
