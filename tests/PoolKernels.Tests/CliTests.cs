using System.Text.Json;
using NUnit.Framework;
using PoolKernels.Cli;
using PoolKernels.IO;

namespace PoolKernels.Tests;

/// <summary>The <c>poolkernels</c> command line, run in-process through <see cref="CliApp.Run"/>: help, version, exit
/// codes and the messages of every kind of misuse, check's handling of bad and crafted vector files, and the devices
/// probe.</summary>
[NonParallelizable]
public class CliTests
{
    private string _dir = "";

    [SetUp]
    public void MakeFolder() =>
        Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "pk-cli-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void RemoveFolder() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = CliApp.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static List<JsonElement> JsonLines(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => JsonDocument.Parse(l).RootElement).ToList();

    private static readonly string[] CommandNames = ["devices", "check", "verify", "bench", "tune", "embed", "search", "wordnet", "ops"];

    // ---------------------------------------------------------------- help, version, usage errors

    [Test]
    public void HelpOfEveryCommandExitsZeroWithUsage([ValueSource(nameof(CommandNames))] string command,
        [Values("--help", "-h")] string flag)
    {
        var (code, output, err) = Run(command, flag);
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
        Assert.That(output, Does.Contain("Usage:").And.Contain($"poolkernels {command}"));
        Assert.That(err, Is.Empty);
    }

    [Test]
    public void RootHelpListsCommandsAndExitCodes()
    {
        foreach (var args in new[] { new[] { "--help" }, [] })
        {
            var (code, output, _) = Run(args);
            Assert.That(code, Is.EqualTo(CliApp.ExitPass));
            Assert.That(output, Does.Contain("Exit codes: 0 pass, 1 a check or verify case failed, 2 usage error"));
            foreach (var c in CommandNames) Assert.That(output, Does.Contain(c));
        }
    }

    [Test]
    public void VersionPrintsTheInformationalVersion()
    {
        var (code, output, _) = Run("--version");
        Assert.That(code, Is.EqualTo(CliApp.ExitPass));
        Assert.That(output.Trim(), Is.EqualTo(CliApp.Version));
        Assert.That(CliApp.Version, Does.Match(@"^\d+\.\d+\.\d+"));
    }

    [TestCase("devices")]
    [TestCase("verify")]
    [TestCase("bench")]
    [TestCase("ops")]
    [TestCase("tune", "--device", "simd")]
    public void UnknownFlagIsAUsageErrorNamingIt(params string[] command)
    {
        var (code, _, err) = Run([.. command, "--frobnicate"]);
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("'--frobnicate'"));
    }

    [Test]
    public void UnknownFlagOfCheckIsNotTakenForAPath()
    {
        var (code, _, err) = Run("check", _dir, "--frobnicate");
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("Unrecognized option '--frobnicate'"));
    }

    [Test]
    public void UnknownCommandIsAUsageError()
    {
        var (code, _, err) = Run("frobnicate");
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("'frobnicate'"));
    }

    [Test]
    public void NonIntegerSeedNamesTheFlagAndTheValue()
    {
        var (code, _, err) = Run("verify", "--seed", "abc");
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("--seed: 'abc' is not an integer"));
    }

    [TestCase("--repeat", "0", "check", "PATH")]
    [TestCase("--repeat", "-3", "bench")]
    [TestCase("--budget", "0", "tune", "--device", "simd")]
    [TestCase("--budget", "abc", "tune", "--device", "simd")]
    [TestCase("--batch", "0", "embed", "text")]
    [TestCase("--dims", "x", "embed", "text")]
    public void OutOfRangeOrMalformedNumbersAreUsageErrorsNamingTheFlag(string flag, string value, params string[] command)
    {
        var args = command.Select(a => a == "PATH" ? _dir : a).Concat([flag, value]).ToArray();
        var (code, _, err) = Run(args);
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage), err);
        Assert.That(err, Does.Contain($"{flag}:").And.Contain(value));
    }

    [Test]
    public void StrayPositionalDeviceIsAUsageError()
    {
        var (code, output, err) = Run("verify", "simd");
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("'simd'").And.Contain("--device simd"));
        Assert.That(output, Is.Empty, "nothing ran");
    }

    [Test]
    public void UnavailableDeviceSaysWhyAndExitsTwo()
    {
        // The first CUDA index this machine lacks (cuda:0 without a GPU).
        var probe = Devices.Probe();
        int present = probe.Count(p => p.Backend == "cuda" && p.Available);
        string id = $"cuda:{present}";
        string why = present == 0 ? probe.Single(p => p.Backend == "cuda").Reason : $"cuda has {present} device(s)";
        Assert.That(why, Is.Not.Empty);
        foreach (var command in new[] { "verify", "bench" })
        {
            var (code, _, err) = Run(command, "--device", id);
            Assert.That(code, Is.EqualTo(CliApp.ExitUsage), command);
            Assert.That(err, Does.Contain($"'{id}'").And.Contain(why), command);
        }
        var e = Assert.Throws<ArgumentException>(() => Device.Open(id).Dispose());
        Assert.That(e!.Message, Does.Contain(why));
    }

    // ---------------------------------------------------------------- devices

    [Test]
    public void DevicesJsonListsEveryBackendAvailableOrWithAReason()
    {
        var (code, output, _) = Run("devices", "--json");
        Assert.That(code, Is.EqualTo(CliApp.ExitPass));
        var lines = JsonLines(output);
        var present = lines.Where(l => l.GetProperty("available").GetBoolean()).Select(l => l.GetProperty("id").GetString()!).ToList();
        Assert.That(present, Is.EqualTo(Device.List().Select(d => d.Id).ToList()), "the available lines are Device.List()");
        foreach (var l in lines.Where(l => l.GetProperty("available").GetBoolean()))
            foreach (var field in new[] { "name", "kind", "memory_bytes", "compute_units", "gpu" })
                Assert.That(l.TryGetProperty(field, out _), Is.True, field);
        var absent = lines.Where(l => !l.GetProperty("available").GetBoolean()).ToList();
        foreach (var l in absent) Assert.That(l.GetProperty("reason").GetString(), Is.Not.Empty, l.GetProperty("id").GetString());
        var backends = present.Select(id => id.Split(':')[0]).Concat(absent.Select(l => l.GetProperty("backend").GetString()!)).Distinct();
        Assert.That(backends, Is.EquivalentTo(new[] { "reference", "simd", "ilgpu-cpu", "opencl", "cuda" }),
            "every backend is accounted for");
    }

    [Test]
    public void DevicesTableSaysWhyEachAbsentBackendIsAbsent()
    {
        var (code, output, _) = Run("devices");
        Assert.That(code, Is.EqualTo(CliApp.ExitPass));
        foreach (var p in Devices.Probe())
            Assert.That(output, p.Available ? Does.Contain(p.Id) : Does.Contain($"{p.Id}: not available ({p.Reason})"));
    }

    [Test]
    public void VerifyAllSaysWhatItCoveredAndWhatWasNotFound()
    {
        var (code, output, err) = Run("verify", "--device", "all", "--op", "dual_hypergraph");
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), output + err);
        Assert.That(output, Does.Contain($"devices covered: {string.Join(", ", Device.List().Select(d => d.Id))}"));
        foreach (var p in Devices.Probe().Where(p => !p.Available))
            Assert.That(output, Does.Contain("probed and not found:").And.Contain($"{p.Id} ({p.Reason})"));
    }

    // ---------------------------------------------------------------- check

    /// <summary>A passing adaptive_pool2d vector: expected from the reference device.</summary>
    private static void WriteGoodVector(string path)
    {
        var x = HostTensor.From(Enumerable.Range(0, 2 * 3 * 5 * 4).Select(i => (float)Math.Sin(i)).ToArray(), 2, 3, 5, 4);
        using var reference = Device.Open("reference");
        var expected = reference.AdaptivePool2d(x, Pool2dMode.Avg, (2, 3));
        Safetensors.Write(path, new Dictionary<string, HostTensor> { ["x"] = x, ["expected.out"] = expected },
            new Dictionary<string, string> { ["op"] = "adaptive_pool2d", ["mode"] = "avg", ["output_size"] = "2,3" });
    }

    private static HostTensor F32(params int[] shape) => HostTensor.From(new float[Shape.Count(shape)], shape);

    /// <summary>An I64 tensor of the given shape holding 0, 1, .., n-1, 0, 1, ...</summary>
    private static HostTensor I64(int n, params int[] shape) =>
        HostTensor.From(Enumerable.Range(0, (int)Shape.Count(shape)).Select(i => (long)(i % n)).ToArray(), shape);

    private static Dictionary<string, string> Meta(params string[] kv)
    {
        var d = new Dictionary<string, string>();
        for (int i = 0; i + 1 < kv.Length; i += 2) d[kv[i]] = kv[i + 1];
        return d;
    }

    /// <summary>A [1,2,3,3] image input with a placeholder expected output.</summary>
    private static Dictionary<string, HostTensor> Image() => new() { ["x"] = F32(1, 2, 3, 3), ["expected.out"] = F32(1) };

    /// <summary>Crafted vectors, each with one malformed value: (file name, the key the failure must name, tensors,
    /// metadata). Every one of these crashed the tool (exit 134), was killed for memory, or ended the run before.</summary>
    private static IEnumerable<(string File, string Key, Dictionary<string, HostTensor> Tensors, Dictionary<string, string> Meta)> Crafted()
    {
        var expected = F32(1);
        var edges = new Dictionary<string, HostTensor> { ["edge_index"] = I64(2, 2, 3), ["expected.hyperedge_offsets"] = expected };
        yield return ("adaptive_output_size.safetensors", "output_size", Image(), Meta("op", "adaptive_pool2d", "output_size", "100000"));
        yield return ("dual_num_nodes.safetensors", "num_nodes", edges, Meta("op", "dual_hypergraph", "num_nodes", "2000000000"));
        yield return ("dual_num_nodes_float.safetensors", "num_nodes", edges, Meta("op", "dual_hypergraph", "num_nodes", "2e9"));
        yield return ("spp_levels.safetensors", "levels", Image(), Meta("op", "spp", "levels", "1,100000"));
        yield return ("similarity_k.safetensors", "k", new() { ["query"] = F32(2, 4), ["db"] = F32(5, 4), ["expected.index"] = expected },
            Meta("op", "similarity_topk", "k", "2000000000"));
        yield return ("compact_d.safetensors", "d",
            new()
            {
                ["x"] = F32(2, 3),
                ["y"] = F32(2, 4),
                ["hx"] = I64(8, 3),
                ["sx"] = F32(3),
                ["hy"] = I64(8, 4),
                ["sy"] = F32(4),
                ["expected.out"] = expected,
            },
            Meta("op", "compact_bilinear_pool", "d", "2000000000"));
        yield return ("garbage_rtol.safetensors", "rtol", Image(), Meta("op", "adaptive_pool2d", "output_size", "1", "rtol", "abc"));
        yield return ("garbage_atol.safetensors", "atol", Image(), Meta("op", "adaptive_pool2d", "output_size", "1", "atol", ""));
        yield return ("bad_mode.safetensors", "mode", Image(), Meta("op", "adaptive_pool2d", "output_size", "1", "mode", "median"));
        yield return ("bad_kernel.safetensors", "kernel", Image(), Meta("op", "pool2d", "kernel", "abc"));
    }

    [Test]
    public void CraftedMalformedVectorsFailPerFileNamingTheKeyAndTheRunGoesOn([Values("simd", "reference")] string device)
    {
        var crafted = Crafted().ToList();
        foreach (var (file, _, tensors, meta) in crafted) Safetensors.Write(Path.Combine(_dir, file), tensors, meta);
        WriteGoodVector(Path.Combine(_dir, "zz_good.safetensors")); // sorts last: it runs after every bad file
        var (code, output, err) = Run("check", _dir, "--device", device, "--json");
        Assert.That(code, Is.EqualTo(CliApp.ExitFailed), err);
        var lines = JsonLines(output).ToDictionary(l => Path.GetFileName(l.GetProperty("file").GetString()!));
        Assert.That(lines, Has.Count.EqualTo(crafted.Count + 1));
        foreach (var (file, key, _, _) in crafted)
        {
            Assert.That(lines[file].GetProperty("pass").GetBoolean(), Is.False, file);
            string message = lines[file].GetProperty("message").GetString()!;
            Assert.That(message, Does.Contain(key), file);
            Assert.That(message, Does.Not.Contain("OverflowException").And.Not.Contain("OutOfMemory"),
                $"{file}: rejected before allocating");
        }
        Assert.That(lines["zz_good.safetensors"].GetProperty("pass").GetBoolean(), Is.True, lines["zz_good.safetensors"].ToString());
    }

    [Test]
    public void NonVectorSafetensorsIsReportedAsNotATestVector()
    {
        Safetensors.Write(Path.Combine(_dir, "weights.safetensors"), new Dictionary<string, HostTensor> { ["w"] = F32(2, 2) });
        Safetensors.Write(Path.Combine(_dir, "other_meta.safetensors"), new Dictionary<string, HostTensor> { ["w"] = F32(2) },
            new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(_dir, "truncated.safetensors"), "not safetensors");
        WriteGoodVector(Path.Combine(_dir, "zz_good.safetensors"));
        var (code, output, _) = Run("check", _dir, "--device", "simd", "--json");
        Assert.That(code, Is.EqualTo(CliApp.ExitFailed));
        var lines = JsonLines(output).ToDictionary(l => Path.GetFileName(l.GetProperty("file").GetString()!));
        foreach (var f in new[] { "weights.safetensors", "other_meta.safetensors" })
            Assert.That(lines[f].GetProperty("message").GetString(), Is.EqualTo("not a test vector (no __metadata__.op)"), f);
        Assert.That(lines["truncated.safetensors"].GetProperty("message").GetString(), Does.StartWith("not a readable safetensors file"));
        Assert.That(lines["zz_good.safetensors"].GetProperty("pass").GetBoolean(), Is.True);
    }

    [Test]
    public void CheckJsonKeepsItsFieldsAndPasses()
    {
        WriteGoodVector(Path.Combine(_dir, "good.safetensors"));
        var (code, output, err) = Run("check", Path.Combine(_dir, "good.safetensors"), "--device", "simd", "--device", "reference",
            "--repeat", "2", "--json");
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
        var lines = JsonLines(output);
        Assert.That(lines.Select(l => l.GetProperty("device").GetString()), Is.EqualTo(new[] { "simd", "reference" }));
        foreach (var l in lines)
            foreach (var field in new[] { "file", "device", "op", "pass", "max_abs_err", "max_rel_err", "median_ms", "message" })
                Assert.That(l.TryGetProperty(field, out _), Is.True, field);
        Assert.That(err, Is.Empty, "no progress into a non-terminal stderr");
    }

    [Test]
    public void ProgressGoesToStderrNeverIntoJsonStdout()
    {
        WriteGoodVector(Path.Combine(_dir, "a.safetensors"));
        WriteGoodVector(Path.Combine(_dir, "b.safetensors"));
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = CliApp.Run(["check", _dir, "--device", "simd", "--json"], stdout, stderr, showProgress: true);
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), stderr.ToString());
        Assert.That(JsonLines(stdout.ToString()), Has.Count.EqualTo(2), "stdout is JSON lines only");
        Assert.That(stderr.ToString(), Does.Contain("[1/2] simd").And.Contain("[2/2] simd"));
    }

    [Test]
    public void CheckOfAFolderWithoutVectorsIsAUsageError()
    {
        File.WriteAllText(Path.Combine(_dir, "notes.txt"), "no vectors here");
        var (code, output, err) = Run("check", _dir);
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain("no .safetensors test vectors found").And.Contain(_dir));
        Assert.That(output, Is.Empty);
    }

    [Test]
    public void CheckOfAMissingPathIsAUsageErrorNamingIt()
    {
        WriteGoodVector(Path.Combine(_dir, "good.safetensors"));
        string missing = Path.Combine(_dir, "missing.safetensors");
        var (code, output, err) = Run("check", Path.Combine(_dir, "good.safetensors"), missing);
        Assert.That(code, Is.EqualTo(CliApp.ExitUsage));
        Assert.That(err, Does.Contain(missing));
        Assert.That(output, Is.Empty, "nothing ran");
    }

    [Test]
    public void OpsListsTheRegistry()
    {
        var (code, output, _) = Run("ops");
        Assert.That(code, Is.EqualTo(CliApp.ExitPass));
        Assert.That(output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            Is.EqualTo(PoolKernels.Verification.OpRegistry.All.Keys.ToArray()));
    }

    [Test]
    public void EmbedUsesTheBuiltInModelOfPoolKernelsOnnxMiniLM()
    {
        var (code, output, err) = Run("embed", "hello world", "--device", "simd", "--dims", "4");
        Assert.That(code, Is.EqualTo(CliApp.ExitPass), err);
        var line = JsonLines(output).Single();
        Assert.That(line.GetProperty("text").GetString(), Is.EqualTo("hello world"));
        var got = line.GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        using var embedder = new PoolKernels.Onnx.SentenceEmbedder(new PoolKernels.Onnx.SentenceEmbedderOptions
        {
            Model = PoolKernels.Onnx.BuiltInModels.AllMiniLML6V2,
            Device = "simd",
            Pooling = PoolKernels.Onnx.PoolingConfig.MiniLM with { Dims = 4 },
        });
        Assert.That(got, Is.EqualTo(embedder.Embed("hello world")).Within(1e-6f));
    }
}
