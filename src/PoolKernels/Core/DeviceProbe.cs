using System.Runtime.InteropServices;

namespace PoolKernels;

/// <summary>What <see cref="Devices.Probe"/> found for one backend: a usable device, or a backend that was looked for
/// and is absent, with the reason.</summary>
/// <param name="Id">The device id (reference, simd, ilgpu-cpu, opencl:N, cuda:N), or for an absent backend its name
/// (ilgpu-cpu, opencl, cuda).</param>
/// <param name="Backend">The backend: reference, simd, ilgpu-cpu, opencl or cuda.</param>
/// <param name="Available">True when the device can be opened.</param>
/// <param name="Reason">Why the backend is absent (driver library not found, no OpenCL ICD, the ILGPU error, ...);
/// empty when available.</param>
/// <param name="Info">The device's description when available, else null.</param>
public sealed record BackendProbe(string Id, string Backend, bool Available, string Reason, DeviceInfo? Info);

public static partial class Devices
{
    private static readonly string[] CudaLibraries = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"];
    private static readonly string[] OpenClLibraries = ["libOpenCL.so.1", "libOpenCL.so", "OpenCL.dll"];

    /// <summary>
    /// Every backend this build can use, each either with its devices (one entry per device, available) or as one
    /// absent entry saying why: ILGPU's context skips a missing CUDA driver or OpenCL runtime silently, so the driver
    /// libraries (libcuda, libOpenCL), the OpenCL ICD registry (/etc/OpenCL/vendors, $OCL_ICD_VENDORS) and the context
    /// creation are probed here. Available entries are those of <see cref="List"/>.
    /// </summary>
    public static IReadOnlyList<BackendProbe> Probe()
    {
        var r = new List<BackendProbe>();
        foreach (var info in List().Where(i => i.Kind != BackendKind.Ilgpu)) r.Add(new(info.Id, info.Id, true, "", info));
        List<(string Id, ILGPU.Runtime.Device Device)> found;
        string? contextError = null;
        try { found = IlgpuDevices(); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            found = [];
            contextError = $"ILGPU context failed: {e.GetType().Name}: {e.Message}";
        }
        foreach (var backend in new[] { "ilgpu-cpu", "opencl", "cuda" })
        {
            var mine = found.Where(f => BackendOf(f.Id) == backend).ToList();
            foreach (var (id, d) in mine) r.Add(new(id, backend, true, "", Describe(id, d)));
            if (mine.Count == 0) r.Add(new(backend, backend, false, contextError ?? AbsentReason(backend), null));
        }
        return r;
    }

    /// <summary>The backend name of a device id: "cuda:1" → cuda, "opencl:0" → opencl, else the id itself.</summary>
    private static string BackendOf(string id) => id.IndexOf(':', StringComparison.Ordinal) is int c and > 0 ? id[..c] : id;

    /// <summary>": reason" for an id that <see cref="Open"/> did not find, or empty for an id of no known backend.</summary>
    private static string Unavailable(string id)
    {
        string backend = BackendOf(id);
        if (backend is not ("cuda" or "opencl" or "ilgpu-cpu")) return "";
        try
        {
            var probe = Probe().Where(p => p.Backend == backend).ToList();
            if (probe.All(p => p.Available))
                return $": {backend} has {probe.Count} device(s) here ({string.Join(", ", probe.Select(p => p.Id))})";
            return $": {backend}: not available ({probe[0].Reason})";
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return $": probing {backend} failed ({e.Message})";
        }
    }

    private static string AbsentReason(string backend) => backend switch
    {
        "cuda" => TryLoadAny(CudaLibraries) is { } lib
            ? $"{lib} loads, but ILGPU found no usable CUDA device"
            : "libcuda.so not found, no NVIDIA driver",
        "opencl" => TryLoadAny(OpenClLibraries) is { } lib
            ? $"no platform or none ILGPU supports: {lib} loads; {IcdState()}"
            : $"no platform: libOpenCL.so not found; {IcdState()}",
        _ => "ILGPU's CPU accelerator was not created",
    };

    /// <summary>Where the OpenCL ICD loader looks for platforms, and what it would find.</summary>
    private static string IcdState()
    {
        var vendors = Environment.GetEnvironmentVariable("OCL_ICD_VENDORS");
        if (!string.IsNullOrEmpty(vendors)) return $"OCL_ICD_VENDORS={vendors}";
        const string dir = "/etc/OpenCL/vendors";
        if (!OperatingSystem.IsLinux()) return "ICD registry not probed on this OS";
        int icds = Directory.Exists(dir) ? Directory.EnumerateFiles(dir, "*.icd").Count() : 0;
        return icds == 0 ? $"no ICD: {dir} empty or missing and OCL_ICD_VENDORS unset" : $"{icds} ICD file(s) in {dir}";
    }

    /// <summary>The first of <paramref name="names"/> the dynamic loader can open (closed again), or null.</summary>
    private static string? TryLoadAny(string[] names)
    {
        foreach (var name in names)
            if (NativeLibrary.TryLoad(name, out var handle)) { NativeLibrary.Free(handle); return name; }
        return null;
    }
}
