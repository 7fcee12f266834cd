namespace PoolKernels;

/// <summary>Binds host tensors to a device for one call of a host-tensor overload: zero-copy wrappers on the
/// CPU devices, uploads on ILGPU devices (freed when the scope ends). The results it hands out live in pooled memory
/// (<see cref="PooledMemory"/>) that the result's disposal returns; results not taken go back when the scope ends.</summary>
internal sealed class HostScope(Device device) : IDisposable
{
    private readonly List<DeviceTensor> _owned = [];
    private List<(DeviceTensor Tensor, IDisposable Owner)>? _pooled;

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
        DeviceTensor d;
        if (device is CpuDevice)
        {
            device.ThrowIfDisposed();
            var dims = (int[])shape.Clone();
            var (memory, owner) = PooledMemory.Rent(PoolKernels.Shape.HostBytes(dtype, dims));
            d = new DeviceTensor(device, dtype, dims, memory, null);
            if (owner is not null) (_pooled ??= []).Add((d, owner));
        }
        else d = device.Allocate(dtype, shape);
        _owned.Add(d);
        return d;
    }

    /// <summary>The host tensor of an output: on the CPU devices the output's own (pooled) memory, handed over to the
    /// result; on ILGPU devices a download into pooled memory.</summary>
    public HostTensor Result(DeviceTensor d)
    {
        if (device is CpuDevice)
        {
            IDisposable? owner = null;
            if (_pooled is not null)
                for (int i = 0; i < _pooled.Count; i++)
                    if (ReferenceEquals(_pooled[i].Tensor, d)) { owner = _pooled[i].Owner; _pooled.RemoveAt(i); break; }
            return new HostTensor(d.DType, d.ShapeArray, d.Host, owner);
        }
        var (memory, pooled) = PooledMemory.Rent(d.Bytes);
        try { d.CopyToBytes(memory.Span); }
        catch { pooled?.Dispose(); throw; }
        return new HostTensor(d.DType, d.ShapeArray, memory, pooled);
    }

    /// <summary>Copies an in-place result back into the host tensor it was bound from (nothing when the binding is the host
    /// memory itself, as on the CPU devices).</summary>
    public static void WriteBack(DeviceTensor bound, HostTensor host)
    {
        if (bound.Buffer is not null) bound.CopyToBytes(host.Data.Span);
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        if (_pooled is not null) foreach (var (_, owner) in _pooled) owner.Dispose();
    }
}
