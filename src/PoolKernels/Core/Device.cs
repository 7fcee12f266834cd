using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using PoolKernels.Kernels;

namespace PoolKernels;

/// <summary>How a device runs kernels.</summary>
public enum BackendKind
{
    /// <summary>Scalar C#, double accumulation: the oracle.</summary>
    Reference,
    /// <summary>Managed SIMD (Vector512/256/128, TensorPrimitives), multi-threaded.</summary>
    Simd,
    /// <summary>An ILGPU accelerator: CPU simulator, OpenCL or CUDA.</summary>
    Ilgpu,
}

/// <summary>What <c>poolkernels devices</c> lists for one backend.</summary>
/// <param name="Id">Device id: reference, simd, ilgpu-cpu, opencl:N, cuda:N.</param>
/// <param name="Name">Human-readable name (the accelerator's name for ILGPU devices).</param>
/// <param name="Kind">Backend kind.</param>
/// <param name="MemoryBytes">Device memory in bytes (host memory for CPU backends).</param>
/// <param name="ComputeUnits">Cores or multiprocessors.</param>
/// <param name="IsGpu">True for a GPU (what <c>auto</c> prefers).</param>
public sealed record DeviceInfo(string Id, string Name, BackendKind Kind, long MemoryBytes, int ComputeUnits, bool IsGpu);

/// <summary>
/// A backend that runs PoolKernels operations. Devices are safe to call from many threads at once.
/// Operations are extension methods (see <see cref="SequencePooling"/>); device-resident buffers come from
/// <see cref="Allocate"/> / <see cref="Upload(HostTensor)"/> so calls can be chained without host copies.
/// </summary>
public abstract class Device : IDisposable
{
    /// <summary>Description of this device.</summary>
    public DeviceInfo Info { get; }
    /// <summary>The device id (e.g. "simd", "cuda:0").</summary>
    public string Id => Info.Id;
    /// <summary>The backend kind.</summary>
    public BackendKind Kind => Info.Kind;

    private protected Device(DeviceInfo info) => Info = info;

    /// <summary>Allocates a zero-filled device tensor (the shape is copied).</summary>
    public abstract DeviceTensor Allocate(DType dtype, params int[] shape);

    /// <summary>Copies a host tensor to the device.</summary>
    public DeviceTensor Upload(HostTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var t = Allocate(tensor.DType, tensor.ShapeArray); // Allocate copies it
        t.CopyFromBytes(tensor.Data.Span);
        return t;
    }

    /// <summary>Copies host values to a new device tensor of the given shape.</summary>
    public DeviceTensor Upload<T>(ReadOnlySpan<T> values, params int[] shape) where T : unmanaged
    {
        var t = Allocate(DTypes.Of<T>(), shape);
        t.CopyFrom(values);
        return t;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Id} ({Info.Name})";

    /// <summary>A private copy of a caller's shape array.</summary>
    private protected static int[] Copy(int[] shape) => (int[])(shape ?? throw new ArgumentNullException(nameof(shape))).Clone();

    private volatile bool _disposed;

    /// <summary>True once the device is disposed: every later use of it, or of a tensor on it, throws
    /// <see cref="ObjectDisposedException"/>.</summary>
    public bool IsDisposed => _disposed;

    internal void ThrowIfDisposed()
    {
        if (_disposed) throw new ObjectDisposedException(GetType().Name, $"The device {Id} was disposed.");
    }

    /// <summary>Marks the device disposed (subclasses free their resources after calling this under their lock).</summary>
    private protected void MarkDisposed() => _disposed = true;

    /// <summary>Releases the device's resources. Later calls on the device or its tensors throw
    /// <see cref="ObjectDisposedException"/>; a call running on another thread finishes first (ILGPU devices) or
    /// keeps its managed buffers alive until it ends (CPU devices).</summary>
    public virtual void Dispose() { MarkDisposed(); GC.SuppressFinalize(this); }

    /// <summary>Begins a batch of chained calls on this device: until the returned scope is disposed, operations on
    /// <see cref="DeviceTensor"/>s are enqueued without waiting for the accelerator, and the scope's end waits once.
    /// Outside a batch every call is synchronous. See <see cref="DeviceBatch"/>.</summary>
    /// <example><code>
    /// using (device.BeginBatch())
    /// {
    ///     device.LayerNorm(x, w, b, y);
    ///     device.Linear(y, weight, null, z);
    /// }   // one synchronization here
    /// z.CopyTo(result);
    /// </code></example>
    public virtual DeviceBatch BeginBatch() => new(this, inert: false);

    /// <summary>Ends the outermost batch of this device (waits for its calls, frees their temporaries).</summary>
    internal virtual void EndBatch(List<MemoryBuffer>? kept) { }

    /// <summary>A device tensor over <paramref name="t"/> for one call of a host-tensor overload: a zero-copy wrapper on
    /// the CPU devices, an upload on ILGPU devices.</summary>
    internal abstract DeviceTensor Bind(HostTensor t);

    /// <summary>The result of a host-tensor overload as a host tensor: the bytes themselves on the CPU devices, a copy on
    /// ILGPU devices.</summary>
    internal abstract HostTensor ToHost(DeviceTensor t);

    /// <summary>Copies <paramref name="bytes"/> (t.Bytes of them) into <paramref name="t"/>.</summary>
    internal abstract void Write(DeviceTensor t, ReadOnlySpan<byte> bytes);

    /// <summary>Copies <paramref name="t"/> into <paramref name="bytes"/> (t.Bytes of them), after every call enqueued before.</summary>
    internal abstract void Read(DeviceTensor t, Span<byte> bytes);

    /// <summary>Frees <paramref name="t"/>'s memory (once; after any call still using it).</summary>
    internal abstract void Free(DeviceTensor t);

    /// <summary>Lists every usable backend: reference, simd, then the ILGPU accelerators found.</summary>
    public static IReadOnlyList<DeviceInfo> List() => Devices.List();

    /// <summary>Opens a device by id: reference, simd, ilgpu-cpu, opencl:N, cuda:N or auto
    /// (the first of cuda:0, a GPU opencl:N, simd).</summary>
    public static Device Open(string id) => Devices.Open(id);
}

/// <summary>The CPU devices: <c>reference</c> and <c>simd</c>. Device tensors are host memory.</summary>
public sealed class CpuDevice : Device
{
    /// <summary>The worker pool the SIMD kernels run on.</summary>
    internal WorkerPool Pool { get { ThrowIfDisposed(); return _pool; } }
    private readonly WorkerPool _pool;

    internal CpuDevice(BackendKind kind, WorkerPool pool)
        : base(new DeviceInfo(kind == BackendKind.Reference ? "reference" : "simd",
            kind == BackendKind.Reference ? "scalar reference (double accumulation)"
                : $"managed SIMD ({SimdIsa()}, {pool.Workers} threads, {Architecture()})",
            kind, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, Environment.ProcessorCount, false)) => _pool = pool;

    /// <summary>The process architecture in lower case: x64, arm64, ...</summary>
    internal static string Architecture() => RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();

    /// <summary>The instruction set and vector width the simd kernels run at in this process, as the simd device's name
    /// shows it: <c>AVX-512, 512-bit</c>, <c>AVX2, 256-bit</c>, <c>SSE4.2/Vector128, 128-bit</c> (x64 without AVX2),
    /// <c>NEON, 128-bit</c> (ARM64) or <c>scalar, no hardware intrinsics</c> (DOTNET_EnableHWIntrinsic=0, other CPUs).
    /// The width follows Vector512/256/128.IsHardwareAccelerated, so the DOTNET_Enable* knobs change it.</summary>
    internal static string SimdIsa()
    {
        if (Vector512.IsHardwareAccelerated) return Avx512F.IsSupported ? "AVX-512, 512-bit" : "Vector512, 512-bit";
        if (Vector256.IsHardwareAccelerated) return Avx2.IsSupported ? "AVX2, 256-bit" : "Vector256, 256-bit";
        if (Vector128.IsHardwareAccelerated)
            return AdvSimd.IsSupported ? "NEON, 128-bit" : Sse42.IsSupported ? "SSE4.2/Vector128, 128-bit"
                : Sse41.IsSupported ? "SSE4.1/Vector128, 128-bit" : Sse2.IsSupported ? "SSE2/Vector128, 128-bit" : "Vector128, 128-bit";
        return "scalar, no hardware intrinsics";
    }

    /// <inheritdoc/>
    public override DeviceTensor Allocate(DType dtype, params int[] shape)
    {
        ThrowIfDisposed();
        var dims = Copy(shape); // validated and kept: the caller may reuse its array
        return new(this, dtype, dims, new byte[PoolKernels.Shape.HostBytes(dtype, dims)], null);
    }

    private DeviceBatch? _batch;

    /// <summary>Calls on a CPU device are synchronous: the batch does nothing (one shared instance, nothing allocated).</summary>
    public override DeviceBatch BeginBatch()
    {
        ThrowIfDisposed();
        return _batch ??= new DeviceBatch(this, inert: true);
    }

    internal override DeviceTensor Bind(HostTensor t) => new(this, t.DType, t.ShapeArray, t.Data, null);

    internal override HostTensor ToHost(DeviceTensor t) => new(t.DType, t.ShapeArray, t.Host, owned: true);

    internal override void Write(DeviceTensor t, ReadOnlySpan<byte> bytes) => bytes.CopyTo(t.Host.Span);

    internal override void Read(DeviceTensor t, Span<byte> bytes) => t.Host.Span.CopyTo(bytes);

    // managed memory: a call still running on another thread keeps it alive
    internal override void Free(DeviceTensor t) => t.MarkDisposed();
}

/// <summary>An ILGPU accelerator (<c>ilgpu-cpu</c>, <c>opencl:N</c>, <c>cuda:N</c>). Kernels are compiled once
/// per device and cached; calls are serialized on the accelerator's stream.</summary>
public sealed class IlgpuDevice : Device
{
    private readonly Accelerator _accelerator;

    /// <summary>The ILGPU accelerator; throws <see cref="ObjectDisposedException"/> once the device is disposed.</summary>
    public Accelerator Accelerator { get { ThrowIfDisposed(); return _accelerator; } }
    /// <summary>Held by every use of the accelerator (calls, copies, allocation, Dispose).</summary>
    internal readonly object Gate = new();
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _dummy;
    private long _synchronizations;

    internal IlgpuDevice(DeviceInfo info, Accelerator accelerator) : base(info)
    {
        _accelerator = accelerator;
        _dummy = accelerator.Allocate1D<byte>(64);
        _dummy.MemSetToZero();
        accelerator.Synchronize();
    }

    /// <summary>A small zeroed buffer passed for absent optional inputs.</summary>
    internal MemoryBuffer1D<byte, Stride1D.Dense> Dummy { get { ThrowIfDisposed(); return _dummy; } }

    // small immutable host arrays (sdpa's modifier buffer), uploaded once per device and kept until it is disposed
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<float[], MemoryBuffer1D<float,
        Stride1D.Dense>> _constants = new();
    private readonly List<MemoryBuffer1D<float, Stride1D.Dense>> _constantBuffers = [];

    /// <summary>The device copy of <paramref name="values"/>, an array the caller never changes (such as
    /// <see cref="SdpaOptions"/>' modifier buffer): uploaded, with one synchronization, on first use only, so a batched call
    /// that passes it does not wait for a host copy. Freed with the device. Called under <see cref="Gate"/>.</summary>
    internal ArrayView<float> Constant(float[] values)
    {
        if (_constants.TryGetValue(values, out var b)) return b.View;
        b = _accelerator.Allocate1D<float>(values.Length);
        b.View.CopyFromCPU(_accelerator.DefaultStream, values);
        Synchronize();
        _constants.Add(values, b);
        _constantBuffers.Add(b);
        return b.View;
    }

    /// <summary>How many times the library waited for this accelerator (tests count them).</summary>
    internal long Synchronizations => Interlocked.Read(ref _synchronizations);

    /// <summary>True while work enqueued by a batched call may still be running (read and written under <see cref="Gate"/>).</summary>
    internal bool Pending { get; set; }

    /// <summary>Waits for the accelerator's stream (under <see cref="Gate"/>).</summary>
    internal void Synchronize()
    {
        _accelerator.Synchronize();
        Pending = false;
        Interlocked.Increment(ref _synchronizations);
    }

    /// <inheritdoc/>
    public override DeviceTensor Allocate(DType dtype, params int[] shape)
    {
        var dims = Copy(shape); // validated and kept: the caller may reuse its array
        long bytes = PoolKernels.Shape.Bytes(dtype, dims);
        lock (Gate) // not while Dispose runs
        {
            var buffer = Accelerator.Allocate1D<byte>(Math.Max(bytes, 8));
            buffer.MemSetToZero(); // on the stream: ordered before every later call
            if (DeviceBatch.Current(this) is null) Synchronize();
            else Pending = true;
            return new DeviceTensor(this, dtype, dims, default, buffer);
        }
    }

    internal override DeviceTensor Bind(HostTensor t) => Upload(t);

    internal override HostTensor ToHost(DeviceTensor t) => t.ToTensor();

    internal override void Write(DeviceTensor t, ReadOnlySpan<byte> bytes)
    {
        lock (Gate)
        {
            t.ThrowIfDisposed();
            if (bytes.IsEmpty) return;
            t.View.CopyFromCPU(Accelerator.DefaultStream, bytes);
            Synchronize(); // the caller's memory may go away when this returns
        }
    }

    internal override void Read(DeviceTensor t, Span<byte> bytes)
    {
        lock (Gate)
        {
            t.ThrowIfDisposed();
            if (bytes.IsEmpty) return;
            t.View.CopyToCPU(Accelerator.DefaultStream, bytes);
            Synchronize();
        }
    }

    // Every ILGPU call holds Gate while it uses the accelerator: taking it here waits for a running call; a batched call
    // may still be running on the stream, so wait for that too before the memory goes.
    internal override void Free(DeviceTensor t)
    {
        lock (Gate)
        {
            var buffer = t.MarkDisposed();
            if (IsDisposed || buffer is null) return; // the accelerator released its buffers
            if (Pending) Synchronize();
            buffer.Dispose();
        }
    }

    internal override void EndBatch(List<MemoryBuffer>? kept)
    {
        lock (Gate)
        {
            if (IsDisposed) return; // the accelerator released everything
            if (Pending) Synchronize();
            if (kept is not null) foreach (var b in kept) b.Dispose();
        }
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        // Every ILGPU call holds Gate while it uses the accelerator: taking it here waits for a running call, and every
        // later one finds the device disposed (ObjectDisposedException from Accelerator, a tensor's View or Buffer).
        lock (Gate)
        {
            if (IsDisposed) return;
            if (Pending)
            {
                try { Synchronize(); }
                catch (Exception) { /* disposing anyway */ }
            }
            MarkDisposed();
            foreach (var b in _constantBuffers) b.Dispose();
            _dummy.Dispose();
            _accelerator.Dispose();
        }
        base.Dispose();
    }
}

/// <summary>Device discovery (and, in DeviceProbe.cs, why a backend is absent).</summary>
public static partial class Devices
{
    private static readonly Lazy<Context> SharedContext = new(() =>
        Context.Create(b => b.CPU(new CPUDevice(4, 1, 1)).Cuda().OpenCL().EnableAlgorithms().Math(MathMode.Default)));

    /// <summary>The process-wide ILGPU context (created on first use).</summary>
    public static Context Context => SharedContext.Value;

    /// <summary>Every usable backend.</summary>
    public static IReadOnlyList<DeviceInfo> List()
    {
        var list = new List<DeviceInfo>
        {
            new CpuDevice(BackendKind.Reference, WorkerPool.Shared).Info,
            new CpuDevice(BackendKind.Simd, WorkerPool.Shared).Info,
        };
        foreach (var (id, d) in IlgpuDevices()) list.Add(Describe(id, d));
        return list;
    }

    /// <summary>Opens a device by id (see <see cref="Device.Open"/>).</summary>
    public static Device Open(string id)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(id);
        switch (id)
        {
            case "reference": return new CpuDevice(BackendKind.Reference, WorkerPool.Shared);
            case "simd": return new CpuDevice(BackendKind.Simd, WorkerPool.Shared);
            case "auto":
                var all = IlgpuDevices();
                var pick = all.FirstOrDefault(x => x.Id == "cuda:0");
                if (pick.Id is null) pick = all.FirstOrDefault(x => x.Id.StartsWith("opencl:",
                    StringComparison.Ordinal) && IsGpu(x.Device));
                return pick.Id is null ? Open("simd") : Open(pick.Id);
        }
        foreach (var (did, d) in IlgpuDevices())
            if (did == id) return new IlgpuDevice(Describe(did, d), d.CreateAccelerator(Context));
        throw new ArgumentException($"Unknown or unavailable device '{id}'{Unavailable(id)}. Available: "
            + $"{string.Join(", ", List().Select(x => x.Id))}.",
            nameof(id));
    }

    private static List<(string Id, ILGPU.Runtime.Device Device)> IlgpuDevices()
    {
        var r = new List<(string, ILGPU.Runtime.Device)>();
        int cuda = 0, cl = 0;
        foreach (var d in Context.Devices)
        {
            switch (d.AcceleratorType)
            {
                case AcceleratorType.CPU: r.Add(("ilgpu-cpu", d)); break;
                case AcceleratorType.Cuda: r.Add(($"cuda:{cuda++}", d)); break;
                case AcceleratorType.OpenCL: r.Add(($"opencl:{cl++}", d)); break;
            }
        }
        return r;
    }

    private static bool IsGpu(ILGPU.Runtime.Device d) =>
        d is CudaDevice || (d is CLDevice cl && cl.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU);

    private static DeviceInfo Describe(string id, ILGPU.Runtime.Device d) =>
        new(id, d.Name, BackendKind.Ilgpu,
            // the CPU simulator reports long.MaxValue
            d.AcceleratorType == AcceleratorType.CPU ? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes : d.MemorySize,
            d.NumMultiprocessors, IsGpu(d));
}
