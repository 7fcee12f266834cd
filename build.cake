// PoolKernels build script: dotnet tool restore && dotnet cake --target=<Build|Test|Verify|Bench|Pack>
var target = Argument("target", "Test");
var configuration = Argument("configuration", "Release");
var filter = Argument("filter", "");            // dotnet test --filter expression
var device = Argument("device", "all");         // for Verify
var benchFilter = Argument("bench", "*");       // BenchmarkDotNet --filter
var artifacts = MakeAbsolute(Directory("./artifacts"));

Task("Clean").Does(() => CleanDirectory(artifacts));

Task("Build").Does(() =>
{
    DotNetBuild("./PoolKernels.sln", new DotNetBuildSettings { Configuration = configuration });
});

Task("Test").IsDependentOn("Build").Does(() =>
{
    var results = artifacts.Combine("test-results");
    CleanDirectory(results);
    DotNetTest("./tests/PoolKernels.Tests/PoolKernels.Tests.csproj", new DotNetTestSettings
    {
        Configuration = configuration,
        NoBuild = true,
        Filter = string.IsNullOrEmpty(filter) ? null : filter,
        ResultsDirectory = results,
        Loggers = { "trx;LogFileName=results.trx", "console;verbosity=normal" },
    });
    // Every test case on the simd device (and every Simd* test) again with AVX-512 disabled, so the Vector256 fallbacks stay tested on the
    // AVX-512 machines CI runs on (DOTNET_EnableAVX512=0; the older DOTNET_EnableAVX512F no longer has any effect).
    if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
    {
        Information("The simd test cases again with AVX-512 disabled (Vector256 paths):");
        DotNetTest("./tests/PoolKernels.Tests/PoolKernels.Tests.csproj", new DotNetTestSettings
        {
            Configuration = configuration,
            NoBuild = true,
            Filter = string.IsNullOrEmpty(filter) ? "Name~simd|Name~Simd" : $"({filter})&(Name~simd|Name~Simd)",
            ResultsDirectory = results,
            EnvironmentVariables = { ["DOTNET_EnableAVX512"] = "0" },
            Loggers = { "trx;LogFileName=results-avx2.trx", "console;verbosity=minimal" },
        });
    }
});

Task("Verify").IsDependentOn("Build").Does(() =>
{
    DotNetRun("./src/PoolKernels.Cli/PoolKernels.Cli.csproj", new ProcessArgumentBuilder().Append("verify").Append("--device").Append(device),
        new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

Task("Bench").Does(() =>
{
    var reports = artifacts.Combine("bench");
    DotNetRun("./perf/PoolKernels.Benchmarks/PoolKernels.Benchmarks.csproj",
        new ProcessArgumentBuilder().Append("--filter").AppendQuoted(benchFilter).Append("--artifacts").AppendQuoted(reports.FullPath),
        new DotNetRunSettings { Configuration = "Release" });
    Information($"Markdown and JSON reports: {reports}/results");
});

Task("Pack").Does(() =>
{
    var output = artifacts.Combine("packages");
    foreach (var project in new[] { "./kernels/PoolKernels.Kernels/PoolKernels.Kernels.csproj", "./src/PoolKernels/PoolKernels.csproj",
                                    "./src/PoolKernels.Onnx/PoolKernels.Onnx.csproj", "./src/PoolKernels.Cli/PoolKernels.Cli.csproj" })
        DotNetPack(project, new DotNetPackSettings { Configuration = "Release", OutputDirectory = output });
    Information($"Packages: {output}");
});

RunTarget(target);
