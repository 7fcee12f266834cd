// PoolKernels build script: dotnet tool restore && dotnet cake --target=<Build|Test|Arm64|PackageSmoke|Format|Verify|Bench|Pack>
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
    // Every test case on the simd device (and every Simd* test) again at each narrower width this machine can be held to,
    // so every width's kernels stay tested on the AVX-512 machines CI runs on. The .NET 10 knobs (checked: the older
    // DOTNET_EnableAVX512F no longer has any effect): DOTNET_EnableAVX512=0 leaves AVX2 (Vector256), DOTNET_EnableAVX2=0
    // leaves SSE4.2 (Vector128 accelerated, Vector256 not, no FMA), DOTNET_EnableHWIntrinsic=0 leaves nothing (Vector128
    // not accelerated: the scalar case). Each leg sets POOLKERNELS_EXPECT_ISA, and SimdIsaLegTests fails the leg when the
    // process runs another width (a knob that stopped working would otherwise re-test the widest path in silence).
    var legs = new List<(string Isa, string Knob)>();
    if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported) legs.Add(("avx2", "DOTNET_EnableAVX512"));
    if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) legs.Add(("vector128", "DOTNET_EnableAVX2"));
    legs.Add(("scalar", "DOTNET_EnableHWIntrinsic"));
    var failures = new List<string>();
    foreach (var (isa, knob) in legs)
    {
        Information($"The simd test cases again with {knob}=0 ({isa}):");
        try
        {
            DotNetTest("./tests/PoolKernels.Tests/PoolKernels.Tests.csproj", new DotNetTestSettings
            {
                Configuration = configuration,
                NoBuild = true,
                Filter = string.IsNullOrEmpty(filter) ? "Name~simd|Name~Simd" : $"({filter})&(Name~simd|Name~Simd)",
                ResultsDirectory = results,
                EnvironmentVariables = { [knob] = "0", ["POOLKERNELS_EXPECT_ISA"] = isa },
                Loggers = { $"trx;LogFileName=results-{isa}.trx", "console;verbosity=minimal" },
            });
        }
        catch (Exception e) { failures.Add($"{isa}: {e.Message}"); } // the other legs still run; the task fails below
    }
    if (failures.Count > 0) throw new Exception("simd test legs failed: " + string.Join("; ", failures));
});

// linux-arm64 (NEON) under QEMU user emulation, or natively on an ARM64 machine: the CLI published self-contained for
// linux-arm64 runs `devices` (which must name arm64 and NEON: the process really is ARM64 with Vector128 accelerated),
// `verify --device simd`, `verify --device ilgpu-cpu` and `check <vectors> --device simd`. Each step counts as one test
// result in artifacts/test-results/results-arm64.trx (summed by .ci/run). Without QEMU the leg is skipped with the
// reason, unless POOLKERNELS_REQUIRE_ARM64=1 (set by .ci/run), which makes that a failure. Timings under QEMU mean nothing.
Task("Arm64").Does(() =>
{
    var results = artifacts.Combine("test-results");
    EnsureDirectoryExists(results);
    var trx = results.CombineWithFilePath("results-arm64.trx");
    bool required = EnvironmentVariable("POOLKERNELS_REQUIRE_ARM64") is "1" or "true";
    bool native = System.Runtime.InteropServices.RuntimeInformation.OSArchitecture == System.Runtime.InteropServices.Architecture.Arm64;
    var qemu = new[] { "/usr/bin/qemu-aarch64-static", "/usr/bin/qemu-aarch64" }.FirstOrDefault(System.IO.File.Exists);
    var steps = new List<(string Name, bool Passed, string Detail)>();
    if (!native && qemu is null)
    {
        const string why = "qemu-aarch64-static not found: apt-get install qemu-user-static libc6-arm64-cross "
            + "libstdc++6-arm64-cross libgcc-s1-arm64-cross (as .ci/install-deps.sh does)";
        if (!required)
        {
            Warning($"ARM64 leg skipped: {why}; set POOLKERNELS_REQUIRE_ARM64=1 to make this a failure.");
            WriteTrx(trx, "arm64", steps, skipped: 1);
            return;
        }
        steps.Add(("qemu present", false, why));
        WriteTrx(trx, "arm64", steps, skipped: 0);
        throw new Exception("ARM64 leg: " + why);
    }
    var clock = System.Diagnostics.Stopwatch.StartNew();
    var outDir = artifacts.Combine("arm64/cli");
    try
    {
        DotNetPublish("./src/PoolKernels.Cli/PoolKernels.Cli.csproj", new DotNetPublishSettings
        {
            Configuration = configuration, Runtime = "linux-arm64", SelfContained = true, OutputDirectory = outDir,
        });
        steps.Add(("publish linux-arm64", true, ""));
    }
    catch (Exception e) { steps.Add(("publish linux-arm64", false, e.Message)); }
    Information($"ARM64 publish: {clock.Elapsed.TotalSeconds:0} s");
    if (steps[^1].Passed)
    {
        var vectors = System.IO.Directory.Exists("tests/vectors") ? MakeAbsolute(Directory("tests/vectors")).FullPath
            : MakeAbsolute(Directory("../shared/vectors")).FullPath;
        var runs = new List<(string Name, string Args)>
        {
            ("devices", "devices"), ("verify simd", "verify --device simd"), ("verify ilgpu-cpu", "verify --device ilgpu-cpu"),
        };
        if (System.IO.Directory.Exists(vectors)) runs.Add(("check vectors simd", $"check \"{vectors}\" --device simd"));
        else steps.Add(("check vectors simd", false, $"no test vectors at tests/vectors or {vectors}"));
        string app = outDir.CombineWithFilePath("PoolKernels.Cli").FullPath;
        // No ICU in the arm64 sysroot. Under QEMU also W^X off: its double-mapped code pages crashed verify --device
        // ilgpu-cpu (SIGSEGV in QEMU after ~20 s, every run; ILGPU's emitted kernels), which passes with it off.
        var env = new Dictionary<string, string> { ["DOTNET_SYSTEM_GLOBALIZATION_INVARIANT"] = "1" };
        if (!native) env["DOTNET_EnableWriteXorExecute"] = "0";
        foreach (var (name, args) in runs)
        {
            var t = System.Diagnostics.Stopwatch.StartNew();
            int rc = StartProcess(native ? app : qemu!, new ProcessSettings
            {
                Arguments = native ? args : $"-L /usr/aarch64-linux-gnu \"{app}\" {args}",
                EnvironmentVariables = env,
                RedirectStandardOutput = true, RedirectStandardError = true,
            }, out IEnumerable<string> stdout, out IEnumerable<string> stderr);
            var lines = stdout.ToList();
            foreach (var line in lines) Information($"  [arm64] {line}");
            foreach (var line in stderr.Where(l => !l.StartsWith('\r'))) Information($"  [arm64 stderr] {line}");
            bool ok = rc == 0;
            string detail = $"exit {rc}";
            if (ok && name == "devices")
            {
                // the simd line must show the process is ARM64 with Vector128 accelerated (NEON)
                var simd = lines.FirstOrDefault(l => l.StartsWith("simd", StringComparison.Ordinal)) ?? "";
                ok = simd.Contains("arm64") && simd.Contains("NEON, 128-bit");
                detail = ok ? simd : $"the simd device does not report arm64 with NEON: '{simd}'";
            }
            steps.Add((name, ok, detail));
            Information($"ARM64 {name}: {(ok ? "passed" : "FAILED")} ({detail}) in {t.Elapsed.TotalSeconds:0} s");
        }
    }
    int good = steps.Count(s => s.Passed);
    Information($"ARM64 leg: {good} passed, {steps.Count - good} failed in {clock.Elapsed.TotalSeconds:0} s");
    WriteTrx(trx, "arm64", steps, skipped: 0);
    if (good < steps.Count)
        throw new Exception("ARM64 leg failed: " + string.Join("; ", steps.Where(s => !s.Passed).Select(s => $"{s.Name}: {s.Detail}")));
});

// A minimal TRX (the Counters that .ci/run sums, one result per step) for a leg that is not a dotnet test run.
void WriteTrx(FilePath path, string leg, List<(string Name, bool Passed, string Detail)> steps, int skipped)
{
    string Esc(string s) => System.Security.SecurityElement.Escape(s) ?? "";
    int passed = steps.Count(s => s.Passed), failed = steps.Count - passed;
    var sb = new System.Text.StringBuilder();
    sb.AppendLine("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    sb.AppendLine($"<TestRun id=\"{Guid.NewGuid()}\" name=\"{Esc(leg)}\" "
        + "xmlns=\"http://microsoft.com/schemas/VisualStudio/TeamTest/2010\">");
    sb.AppendLine("  <Results>");
    foreach (var s in steps)
        sb.AppendLine($"    <UnitTestResult testName=\"{Esc(leg)} {Esc(s.Name)}\" outcome=\"{(s.Passed ? "Passed" : "Failed")}\">"
            + $"<Output><StdOut>{Esc(s.Detail)}</StdOut></Output></UnitTestResult>");
    sb.AppendLine("  </Results>");
    sb.AppendLine($"  <ResultSummary outcome=\"{(failed > 0 ? "Failed" : "Completed")}\">");
    sb.AppendLine($"    <Counters total=\"{steps.Count + skipped}\" executed=\"{steps.Count}\" passed=\"{passed}\" "
        + $"failed=\"{failed}\" error=\"0\" />");
    sb.AppendLine("  </ResultSummary>");
    sb.AppendLine("</TestRun>");
    System.IO.File.WriteAllText(path.FullPath, sb.ToString());
}

// The packages as a stranger gets them (scripts/consume-packages.sh): every package packed into a temporary feed under a
// unique prerelease version, a fresh console app outside the repository restores PoolKernels and PoolKernels.Onnx from
// it and runs a sequence_pool; the tool package is installed and runs --version and devices. One test result in
// artifacts/test-results/results-package-smoke.trx (summed by .ci/run). About 70 s on 2 cores with the build up to date.
Task("PackageSmoke").Does(() =>
{
    var results = artifacts.Combine("test-results");
    EnsureDirectoryExists(results);
    var clock = System.Diagnostics.Stopwatch.StartNew();
    int rc = StartProcess("bash", new ProcessSettings
    {
        Arguments = "scripts/consume-packages.sh", RedirectStandardOutput = true, RedirectStandardError = true,
    }, out IEnumerable<string> stdout, out IEnumerable<string> stderr);
    var lines = stdout.Concat(stderr).ToList();
    foreach (var line in lines) Information($"  [smoke] {line}");
    bool ok = rc == 0 && lines.Contains("package smoke: passed");
    string detail = ok ? $"passed in {clock.Elapsed.TotalSeconds:0} s"
        : lines.LastOrDefault(l => l.StartsWith("package smoke: FAILED", StringComparison.Ordinal)) ?? $"exit {rc}";
    WriteTrx(results.CombineWithFilePath("results-package-smoke.trx"), "package-smoke",
        new List<(string, bool, string)> { ("packed packages in a fresh console app and the installed tool", ok, detail) }, skipped: 0);
    Information($"Package smoke: {(ok ? "passed" : "FAILED")} ({detail})");
    if (!ok) throw new Exception("package smoke failed: " + detail);
});

// Formatting as .editorconfig states it: `dotnet format whitespace --verify-no-changes` (indentation, spacing, new lines;
// fix with `dotnet format whitespace PoolKernels.sln`) and max_line_length = 140 over every tracked .cs file (dotnet format
// does not check it): two results in results-format.trx (summed by .ci/run).
Task("Format").Does(() =>
{
    var results = artifacts.Combine("test-results");
    EnsureDirectoryExists(results);
    int rc = StartProcess("dotnet", new ProcessSettings
    {
        Arguments = "format whitespace PoolKernels.sln --verify-no-changes", RedirectStandardOutput = true, RedirectStandardError = true,
    }, out IEnumerable<string> stdout, out IEnumerable<string> stderr);
    var lines = stdout.Concat(stderr).Where(l => l.Contains("WHITESPACE", StringComparison.Ordinal)).ToList();
    foreach (var line in lines.Take(20)) Information($"  [format] {line}");
    bool ok = rc == 0;
    string detail = ok ? "no changes" : $"{lines.Count} places differ from .editorconfig (dotnet format whitespace PoolKernels.sln fixes them)";
    // lines over 140 columns (tabs count as 4), in the files git tracks
    StartProcess("git", new ProcessSettings { Arguments = "ls-files *.cs", RedirectStandardOutput = true },
        out IEnumerable<string> tracked);
    var longLines = new List<string>();
    foreach (var file in tracked)
    {
        int n = 0;
        foreach (var text in System.IO.File.ReadLines(file))
        {
            n++;
            if (text.Replace("\t", "    ").Length > 140) longLines.Add($"{file}:{n} ({text.Length} columns)");
        }
    }
    foreach (var line in longLines.Take(20)) Information($"  [line length] {line}");
    bool fits = longLines.Count == 0;
    string lengthDetail = fits ? "every line <= 140 columns" : $"{longLines.Count} lines over 140 columns";
    WriteTrx(results.CombineWithFilePath("results-format.trx"), "format",
        new List<(string, bool, string)>
        {
            ("dotnet format whitespace --verify-no-changes", ok, detail),
            ("lines <= 140 columns (.editorconfig max_line_length)", fits, lengthDetail),
        }, skipped: 0);
    Information($"Format: {(ok && fits ? "passed" : "FAILED")} ({detail}; {lengthDetail})");
    if (!ok || !fits) throw new Exception("format check failed: " + detail + "; " + lengthDetail);
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
                                    "./src/PoolKernels.Onnx/PoolKernels.Onnx.csproj",
                                    "./src/PoolKernels.Onnx.MiniLM/PoolKernels.Onnx.MiniLM.csproj",
                                    "./src/PoolKernels.Cli/PoolKernels.Cli.csproj" })
        DotNetPack(project, new DotNetPackSettings { Configuration = "Release", OutputDirectory = output });
    Information($"Packages: {output}");
});

RunTarget(target);
