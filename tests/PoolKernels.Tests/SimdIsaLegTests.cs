using System.Runtime.Intrinsics;
using NUnit.Framework;
using PoolKernels.Kernels;

namespace PoolKernels.Tests;

/// <summary>The ISA legs of the test command (build.cake): each leg sets POOLKERNELS_EXPECT_ISA to the width its
/// DOTNET_Enable* knob must leave (avx512, avx2, vector128, scalar), and these tests fail when the process has another
/// one, so a knob that stops working (as DOTNET_EnableAVX512F did on .NET 10) fails the leg instead of silently
/// re-testing the widest path. Without the variable they still check that the simd device names the width it runs.</summary>
public class SimdIsaLegTests
{
    private static string Actual() => Vector512.IsHardwareAccelerated ? "avx512" : Vector256.IsHardwareAccelerated ? "avx2"
        : Vector128.IsHardwareAccelerated ? "vector128" : "scalar";

    [Test]
    public void SimdLegRunsTheIsaItIsMeantTo()
    {
        var expected = Environment.GetEnvironmentVariable("POOLKERNELS_EXPECT_ISA");
        if (string.IsNullOrEmpty(expected))
            Assert.Ignore("POOLKERNELS_EXPECT_ISA is not set (the test command's ISA legs set it); this process runs " + Actual() + ".");
        Assert.That(expected, Is.AnyOf("avx512", "avx2", "vector128", "scalar"), "POOLKERNELS_EXPECT_ISA");
        Assert.That(Actual(), Is.EqualTo(expected),
            $"Vector512 {Vector512.IsHardwareAccelerated}, Vector256 {Vector256.IsHardwareAccelerated}, "
            + $"Vector128 {Vector128.IsHardwareAccelerated}");
    }

    [Test]
    public void SimdDeviceNamesItsIsaAndArchitecture()
    {
        string name = TestDevices.Get("simd").Info.Name;
        string width = Actual() switch
        {
            "avx512" => "512-bit",
            "avx2" => "256-bit",
            "vector128" => "128-bit",
            _ => "no hardware intrinsics",
        };
        Assert.That(name, Does.Contain(width));
        var arch = System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        Assert.That(name, Does.Contain(arch));
        if (Actual() == "vector128" && System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported) Assert.That(name, Does.Contain("NEON"));
    }

    /// <summary>Transpose16.Pack (AVX-512, or the 4 × 4 Vector128 form, whichever this leg runs) against a plain
    /// transpose: partial row counts, column tails, strides below 16 (stores that run into the next column's place), the
    /// exact (masked) form and the row sums.</summary>
    [TestCase(16, 40, 16, false)]
    [TestCase(12, 37, 12, false)]
    [TestCase(5, 19, 16, false)]
    [TestCase(7, 23, 20, true)]
    [TestCase(16, 8, 16, true)]
    [TestCase(3, 3, 64, true)]
    public unsafe void SimdTranspose16PackMatchesAPlainTranspose(int rows, int cols, int ld, bool exact)
    {
        int lds = cols + 3;
        var rnd = new Random(rows * 100 + cols);
        var src = new float[16 * lds];
        for (int i = 0; i < src.Length; i++) src[i] = (float)rnd.NextDouble() - 0.5f;
        var dst = new float[cols * ld + 32];
        Array.Fill(dst, 99f);
        var sums = new float[16];
        fixed (float* s = src) fixed (float* d = dst) fixed (float* su = sums)
            Transpose16.Pack(s, lds, rows, cols, d, ld, su, exact);
        for (int t = 0; t < cols; t++)
            for (int r = 0; r < Math.Min(16, ld); r++)
            {
                // with ld < 16 only the last column's lanes past ld remain (the next column overwrites the rest)
                float want = r < rows ? src[r * lds + t] : exact ? 99f : 0f;
                Assert.That(dst[t * ld + r], Is.EqualTo(want), $"t {t} r {r}");
            }
        for (int r = 0; r < rows; r++)
        {
            double want = 0;
            for (int t = 0; t < cols; t++) want += src[r * lds + t];
            Assert.That(sums[r], Is.EqualTo(want).Within(1e-5), $"sum {r}");
        }
    }
}
