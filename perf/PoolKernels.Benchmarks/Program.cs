using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Running;

// Every benchmark class in this assembly; `dotnet cake --target=Bench` runs them all and writes markdown and
// JSON reports. Each class measures `simd` (and ILGPU backends where useful) beside its peer in the same run:
// ONNX Runtime CPU where it has the op, and the machine's own limits (streaming read, FMA loop).
var config = DefaultConfig.Instance
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddExporter(MarkdownExporter.GitHub)
    .AddExporter(JsonExporter.Full);
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
