using NUnit.Framework;

namespace PoolKernels.Tests;

/// <summary>Memory safety whatever the caller does (issue 14): each test is a hostile call that used to crash the process,
/// touch memory outside a buffer or hang, and must now be a clear exception or a correct result on every device.</summary>
public class SafetyTests
{
    private static void ThrowsArg(string param, Action call, string because = "")
    {
        var e = Assert.Throws(Is.InstanceOf<ArgumentException>(), call, because);
        Assert.That(((ArgumentException)e!).ParamName, Is.EqualTo(param), e.Message);
    }

    // ---- 2. size arithmetic is checked ----

    [Test]
    public void HostTensorWhoseByteSizeWrapsIsRejected()
    {
        // 2^62 elements × 4 bytes = 2^64, which wraps to 0 and used to match the empty buffer
        ThrowsArg("shape", () => new HostTensor(DType.F32, [1, 4, 1 << 30, 1 << 30], Memory<byte>.Empty));
        ThrowsArg("shape", () => new HostTensor(DType.F64, [1 << 30, 1 << 30, 1 << 30], Memory<byte>.Empty));
        ThrowsArg("shape", () => HostTensor.Zeros(DType.F32, 1 << 30, 4));
        ThrowsArg("dtype", () => new HostTensor((DType)99, [1], new byte[1]));
        Assert.That(new HostTensor(DType.F32, [0, 1 << 30, 1 << 30, 1 << 30], Memory<byte>.Empty).Count, Is.Zero);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void AllocateWhoseByteSizeOverflowsIsRejected(string id)
    {
        var d = TestDevices.Get(id);
        ThrowsArg("shape", () => d.Allocate(DType.F32, 1, 4, 1 << 30, 1 << 30).Dispose(), id);
        ThrowsArg("shape", () => d.Allocate(DType.F32, -1, 4).Dispose(), id);
        ThrowsArg("shape", () => d.Upload(new float[4], 1, 4, 1 << 30, 1 << 30).Dispose(), id);
        if (d is CpuDevice) ThrowsArg("shape", () => d.Allocate(DType.F32, 1 << 30, 4).Dispose(), id);
    }
}
