using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Running;

// Every benchmark class in this assembly; `dotnet cake --target=Bench` runs them all and writes markdown and
// JSON reports. Each class measures `simd` (and ILGPU backends where useful) beside its peer in the same run:
// ONNX Runtime CPU where it has the op, and the machine's own limits (streaming read, FMA loop).
// `--paired Class MethodA MethodB ...` runs a same-process interleaved A/B instead (see Paired.cs).
if (args.Length > 1 && args[0] == "--paired") { PoolKernels.Benchmarks.Paired.Run(args[1..]); return; }
var config = DefaultConfig.Instance
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddExporter(MarkdownExporter.GitHub)
    .AddExporter(JsonExporter.Full);
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
