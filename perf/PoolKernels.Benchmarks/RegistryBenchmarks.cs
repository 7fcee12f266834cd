using BenchmarkDotNet.Attributes;
using PoolKernels.Verification;

namespace PoolKernels.Benchmarks;

/// <summary>
/// Every registered operation at its representative shapes (<see cref="OpSpec.BenchCases"/>), inputs resident on the
/// device, on <c>simd</c> and on every ILGPU backend present (opencl/cuda; ilgpu-cpu with its small shapes). The
/// classes beside this one put the main operations next to their ONNX Runtime peers and the machine's limits; this one
/// makes sure no operation is left unmeasured. Filter with e.g. <c>--filter *Registry* --anyCategories simd</c>.
/// </summary>
public class RegistryBenchmarks : IDisposable
{
    /// <summary>"op | device | case index" for every op, device and bench case.</summary>
    public static IEnumerable<string> Cases()
    {
        var ids = Device.List().Select(d => d.Id).Where(id => id != "reference").ToList();
        foreach (var id in ids)
        {
            using var device = Device.Open(id);
            foreach (var op in OpRegistry.All.Values.Where(o => o.BenchCases is not null))
            {
                var cases = op.BenchCases!(device);
                for (int i = 0; i < cases.Count; i++) yield return $"{op.Name} | {id} | {i}: {cases[i].Shape}";
            }
        }
    }

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    private Device? _device;
    private PreparedCall? _prepared;

    [GlobalSetup]
    public void Setup()
    {
        var parts = Case.Split(" | ");
        var spec = OpRegistry.All[parts[0]];
        _device = Device.Open(parts[1]);
        var c = spec.BenchCases!(_device)[int.Parse(parts[2].Split(':')[0], System.Globalization.CultureInfo.InvariantCulture)];
        _prepared = spec.Prepare?.Invoke(_device, c.Call) ?? new PreparedCall(() => spec.Run(_device, c.Call));
    }

    [Benchmark]
    public void Run() => _prepared!.Run();

    [GlobalCleanup]
    public void Dispose()
    {
        GC.SuppressFinalize(this);
        _prepared?.Dispose();
        _device?.Dispose();
    }
}
