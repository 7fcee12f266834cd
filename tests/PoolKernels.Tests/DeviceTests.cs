using NUnit.Framework;

namespace PoolKernels.Tests;

public class DeviceTests
{
    [Test]
    public void ListsReferenceSimdAndIlgpuCpu()
    {
        var ids = Device.List().Select(d => d.Id).ToList();
        Assert.That(ids, Does.Contain("reference").And.Contain("simd").And.Contain("ilgpu-cpu"));
        Assert.That(ids, Is.Unique);
    }

    [Test]
    public void OpenCLPresentWhenRequired()
    {
        bool has = Device.List().Any(d => d.Id.StartsWith("opencl:", StringComparison.Ordinal));
        if (!has && !TestDevices.Required("POOLKERNELS_REQUIRE_OPENCL"))
            Assert.Ignore("No OpenCL device (install PoCL 6 as .ci/install-deps.sh does); set POOLKERNELS_REQUIRE_OPENCL=1 to make this a "
                + "failure.");
        Assert.That(has, Is.True,
            "POOLKERNELS_REQUIRE_OPENCL is set but ILGPU found no OpenCL device (check OCL_ICD_VENDORS and libOpenCL.so).");
    }

    [Test]
    public void AutoPicksAGpuOrSimd()
    {
        using var d = Device.Open("auto");
        Assert.That(d.Id, Is.EqualTo("simd").Or.StartsWith("cuda:").Or.StartsWith("opencl:"));
    }

    [Test]
    public void UnknownDeviceIsArgumentException()
    {
        var e = Assert.Throws<ArgumentException>(() => Device.Open("cuda:99"));
        Assert.That(e!.Message, Does.Contain("cuda:99").And.Contain("simd"));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void DeviceTensorRoundTrip(string id)
    {
        var d = TestDevices.Get(id);
        float[] values = [1, -2, 3.5f, float.NaN, float.PositiveInfinity];
        using var t = d.Upload<float>(values, 5);
        var back = new float[5];
        t.CopyTo<float>(back);
        Assert.That(back, Is.EqualTo(values));
        Assert.Throws<ArgumentException>(() => t.CopyTo<float>(new float[4]));
    }
}
