using NUnit.Framework;
using PoolKernels.Verification;

namespace PoolKernels.Tests;

/// <summary>Every test vector in tests/vectors whose operation is implemented, on every device present.</summary>
public class VectorTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        var dir = Paths.Vectors();
        if (dir is null) { yield return new TestCaseData("", "").SetName("Vectors folder missing"); yield break; }
        foreach (var file in VectorRunner.Expand([dir]))
        {
            string op = VectorRunner.OpOf(file);
            if (OpRegistry.Find(op) is null) continue;
            foreach (var id in TestDevices.All())
                yield return new TestCaseData(file, id).SetName($"{op}/{Path.GetFileNameWithoutExtension(file)} on {id}");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void Vector(string file, string device)
    {
        Assert.That(file, Is.Not.Empty, "tests/vectors was not found (set POOLKERNELS_VECTORS)");
        var r = VectorRunner.Run(file, TestDevices.Get(device));
        Assert.That(r.Pass, Is.True, r.Message);
    }

    [Test]
    public void EveryVectorFolderIsAccountedFor()
    {
        var dir = Paths.Vectors();
        Assume.That(dir, Is.Not.Null);
        var ops = VectorRunner.Expand([dir!]).Select(VectorRunner.OpOf).Distinct().ToList();
        var missing = ops.Where(o => OpRegistry.Find(o) is null).ToList();
        // Operations of later issues are listed, not silently skipped.
        TestContext.Out.WriteLine($"vectors for {ops.Count} ops; implemented {ops.Count - missing.Count}; not yet: "
            + $"{string.Join(", ", missing)}");
        Assert.That(ops, Does.Contain("sequence_pool").And.Contain("layer_pool"));
    }
}

/// <summary>The randomized conformance cases of every operation on every non-reference device.</summary>
public class ConformanceTests
{
    public static IEnumerable<TestCaseData> Cases() =>
        from op in OpRegistry.All.Keys
        from id in TestDevices.NonReference()
        select new TestCaseData(op, id).SetName($"{op} on {id}");

    [TestCaseSource(nameof(Cases))]
    public void MatchesReference(string op, string device)
    {
        foreach (int seed in new[] { 1, 2 })
        {
            var row = Conformance.Run(OpRegistry.All[op], TestDevices.Get(device), TestDevices.Get("reference"), seed);
            Assert.That(row.Failed, Is.Zero, row.Message);
            Assert.That(row.Cases, Is.GreaterThan(0));
        }
    }
}
