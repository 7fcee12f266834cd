using NUnit.Framework;

namespace PoolKernels.Tests;

/// <summary>
/// The devices every test body runs on: reference, simd, ilgpu-cpu and every OpenCL / CUDA device present.
/// Opened once per run. With POOLKERNELS_REQUIRE_OPENCL=1 (set by .ci/run) a missing OpenCL device fails the run.
/// </summary>
[SetUpFixture]
public sealed class TestDevices
{
    private static readonly Lazy<Dictionary<string, Device>> Opened = new(() =>
        Device.List().ToDictionary(i => i.Id, i => Device.Open(i.Id)));

    /// <summary>Every available device id.</summary>
    public static IEnumerable<string> All() => Device.List().Select(i => i.Id);

    /// <summary>Every device id except reference.</summary>
    public static IEnumerable<string> NonReference() => All().Where(id => id != "reference");

    /// <summary>The shared device for an id.</summary>
    public static Device Get(string id) => Opened.Value[id];

    public static bool Required(string variable) => Environment.GetEnvironmentVariable(variable) is "1" or "true";

    [OneTimeTearDown]
    public void CloseAll()
    {
        if (!Opened.IsValueCreated) return;
        foreach (var d in Opened.Value.Values) d.Dispose();
    }
}

/// <summary>Where the conformance vectors are: $POOLKERNELS_VECTORS, else the repository's own copy, tests/vectors
/// (refreshed from the upstream set by scripts/refresh-vectors.sh; a clone needs nothing outside itself).</summary>
public static class Paths
{
    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "PoolKernels.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("PoolKernels.sln not found above the test binaries.");
    }

    public static string? Vectors()
    {
        var env = Environment.GetEnvironmentVariable("POOLKERNELS_VECTORS");
        if (!string.IsNullOrEmpty(env)) return env;
        var p = Path.Combine(RepoRoot(), "tests", "vectors");
        return Directory.Exists(p) ? p : null;
    }
}

/// <summary>The bad-input check every op family's tests share: the call raises an <see cref="ArgumentException"/>
/// whose ParamName is the offending argument, on every device, before any kernel runs.</summary>
public static class BadInput
{
    /// <summary>A test case: the expected parameter name and the call that must be rejected.</summary>
    public static TestCaseData Case(string param, Action<Device> call) => new(param, call);

    /// <summary>Asserts the rejection on every device present.</summary>
    public static void AssertRejectedEverywhere(string param, Action<Device> call)
    {
        foreach (var id in TestDevices.All())
        {
            var e = Assert.Throws(Is.InstanceOf<ArgumentException>(), () => call(TestDevices.Get(id)), id);
            Assert.That(((ArgumentException)e!).ParamName, Is.EqualTo(param), e.Message);
        }
    }
}
