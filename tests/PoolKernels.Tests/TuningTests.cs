using NUnit.Framework;
using PoolKernels.Perf;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

[NonParallelizable]
public class TuningTests
{
    private string _path = "";

    [SetUp]
    public void UseTempCache()
    {
        _path = Path.Combine(Path.GetTempPath(), $"pk-tuning-{Guid.NewGuid():N}.json");
        Tuning.Reload(_path);
    }

    [TearDown]
    public void Restore()
    {
        File.Delete(_path);
        Tuning.Reload(_path); // empty: later tests run on defaults
    }

    [Test]
    public void CacheRoundTrips()
    {
        var e = new TunedEntry("some gpu", "sequence_pool", Tuning.Bucket(14, 10), new() { ["block"] = 512, ["threads"] = 2 }, 1.5);
        Tuning.Set(e);
        Tuning.Save(_path);
        Tuning.Reload(_path);
        var back = Tuning.All().Single();
        Assert.That(back.Device, Is.EqualTo("some gpu"));
        Assert.That(back.Bucket, Is.EqualTo("14x10"));
        Assert.That(back.Params, Is.EqualTo(e.Params));
    }

    [Test]
    public void LookupUsesTheDeviceNameOpAndBucket()
    {
        var simd = TestDevices.Get("simd");
        Tuning.Set(new TunedEntry(simd.Info.Name, "sequence_pool", Tuning.Bucket(Tuning.Log2Bucket(32 * 512), Tuning.Log2Bucket(768)),
            new() { ["block"] = 128 }, 1));
        Assert.That(Tuning.Get(simd, "sequence_pool", 32 * 512, 768, "block", 256), Is.EqualTo(128));
        Assert.That(Tuning.Get(simd, "sequence_pool", 32 * 512, 1024 * 16, "block", 256), Is.EqualTo(256), "another bucket");
        Assert.That(Tuning.Get(simd, "layer_pool", 32 * 512, 768, "block", 256), Is.EqualTo(256), "another op");
        Assert.That(Tuning.Get(TestDevices.Get("reference"), "sequence_pool", 32 * 512, 768, "block", 256), Is.EqualTo(256),
            "another device");
    }

    [TestCase("{ not json")]
    [TestCase("""{"format":"something-else","version":1,"entries":[]}""")]
    [TestCase("""{"format":"poolkernels-tuning","version":99,"entries":[]}""")]
    [TestCase("[1,2,3]")]
    public void CorruptOrForeignCacheIsIgnoredWithAWarning(string content)
    {
        File.WriteAllText(_path, content);
        var warnings = new StringWriter();
        var old = Tuning.WarningWriter;
        Tuning.WarningWriter = warnings;
        try
        {
            Tuning.Reload(_path);
            Assert.That(Tuning.All(), Is.Empty);
            Assert.That(warnings.ToString(), Does.Contain("ignoring"));
            // and the library still works on defaults
            var o = new float[2];
            TestDevices.Get("simd").SequencePool<float, long>([1, 2, 3, 4], [1, 1], o, 1, 2, 2, SequencePoolOptions.Parse("mean"));
            Assert.That(o, Is.EqualTo(new[] { 2f, 3f }));
        }
        finally { Tuning.WarningWriter = old; }
    }

    public static IEnumerable<TestCaseData> TunableOps() =>
        from op in OpRegistry.All.Values
        where op.Tunables is not null
        from id in TestDevices.NonReference()
        select new TestCaseData(op.Name, id).SetName($"every tuning candidate of {op.Name} passes verification on {id}");

    [TestCaseSource(nameof(TunableOps))]
    public void EveryCandidatePassesVerification(string op, string device)
    {
        var spec = OpRegistry.All[op];
        var d = TestDevices.Get(device);
        var space = spec.Tunables!(d);
        // Each candidate value of each parameter, the others at their defaults (the full product is what `tune` searches).
        var defaults = space.ToDictionary(p => p.Name, p => p.Candidates[0]);
        foreach (var p in space)
            foreach (var v in p.Candidates)
            {
                var combo = new Dictionary<string, int>(defaults) { [p.Name] = v };
                ConformanceRow? row = null;
                Tuning.With(combo, () => row = Conformance.Run(spec, d, TestDevices.Get("reference"), 3));
                Assert.That(row!.Failed, Is.Zero, $"{Tuner.Format(combo)}: {row.Message}");
            }
    }

    [Test]
    public void AWrongCandidateIsRejectedNotTimed()
    {
        // A fake op whose parameter x=2 gives a wrong answer (and x=1 is slow): tune must reject x=2 even though it is faster.
        var input = new OpCall(new Dictionary<string, HostTensor>(), new Dictionary<string, string>());
        var fake = new OpSpec("fake", (d, _) =>
        {
            int x = Tuning.Get(d, "fake", 1, 1, "x", 1);
            if (x == 1) Thread.Sleep(2);
            return new Dictionary<string, HostTensor>
            {
                ["out"] = HostTensor.From(new[] { d.Kind == BackendKind.Reference
                || x == 1 ? 1f : 2f }, 1)
            };
        }, _ => [])
        {
            BenchCases = _ => [new BenchCase("[1]", 1, input, 4, 0, Tuning.Bucket(0, 0))],
            Tunables = _ => [new TunableParam("x", [1, 2])],
        };
        var r = Tuner.Tune(fake, TestDevices.Get("simd"), TestDevices.Get("reference"), TimeSpan.FromSeconds(10), repeats: 2).Single();
        Assert.That(r.Rejected, Is.EqualTo(1));
        Assert.That(r.Best["x"], Is.EqualTo(1));
    }

    [Test]
    public void TuneStoresAVerifiedWinnerThatTheLibraryThenUses()
    {
        var spec = OpRegistry.All["sequence_pool"];
        var simd = TestDevices.Get("simd");
        var small = spec with { BenchCases = _ => [spec.BenchCases!(TestDevices.Get("ilgpu-cpu"))[0]] }; // a small case keeps this quick
        var results = Tuner.Tune(small, simd, TestDevices.Get("reference"), TimeSpan.FromSeconds(5), repeats: 2);
        var r = results.Single();
        Assert.That(r.Rejected, Is.Zero);
        Assert.That(r.Tried, Is.GreaterThan(0));
        Tuning.Save(_path);
        Tuning.Reload(_path);
        var entry = Tuning.All().Single();
        Assert.That(entry.Device, Is.EqualTo(simd.Info.Name));
        Assert.That(entry.Params["block"], Is.EqualTo(r.Best["block"]));
    }
}
