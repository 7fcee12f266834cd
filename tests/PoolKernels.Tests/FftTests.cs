using NUnit.Framework;
using PoolKernels.Kernels.Bilinear;

namespace PoolKernels.Tests;

/// <summary>The shared mixed-radix / Bluestein FFT against a direct DFT in double, every length kind.</summary>
public class FftTests
{
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    [TestCase(5)]
    [TestCase(6)]
    [TestCase(7)]
    [TestCase(8)]
    [TestCase(12)]
    [TestCase(16)]
    [TestCase(17)]
    [TestCase(60)]
    [TestCase(64)]
    [TestCase(67)]
    [TestCase(100)]
    [TestCase(127)]
    [TestCase(250)]
    [TestCase(1000)]
    [TestCase(1024)]
    [TestCase(2 * 3 * 5 * 7 * 11)]
    [TestCase(61 * 2)]
    [TestCase(131 * 4)]
    [TestCase(2003)]
    public void ForwardMatchesDirectDft(int n)
    {
        var rng = new Random(n);
        var re = new float[n]; var im = new float[n];
        for (int i = 0; i < n; i++) { re[i] = (float)(rng.NextDouble() * 2 - 1); im[i] = (float)(rng.NextDouble() * 2 - 1); }
        var plan = FftPlan.Get(n);
        var fr = (float[])re.Clone(); var fi = (float[])im.Clone();
        plan.Forward(fr, fi, new float[plan.ScratchLength]);
        double maxErr = 0, scale = Math.Sqrt(n);
        for (int q = 0; q < n; q++)
        {
            double ar = 0, ai = 0;
            for (int t = 0; t < n; t++)
            {
                double a = -2 * Math.PI * ((long)t * q % n) / n, c = Math.Cos(a), s = Math.Sin(a);
                ar += re[t] * c - im[t] * s; ai += re[t] * s + im[t] * c;
            }
            maxErr = Math.Max(maxErr, Math.Max(Math.Abs(ar - fr[q]), Math.Abs(ai - fi[q])));
        }
        Assert.That(maxErr / scale, Is.LessThan(2e-6),
            $"n = {n}, radices {string.Join(",", plan.Radices)}, bluestein {plan.Inner is not null}");
        plan.Inverse(fr, fi, new float[plan.ScratchLength]);
        for (int t = 0; t < n; t++)
        {
            Assert.That(fr[t], Is.EqualTo(re[t]).Within(1e-5), $"inverse re[{t}]");
            Assert.That(fi[t], Is.EqualTo(im[t]).Within(1e-5), $"inverse im[{t}]");
        }
    }

    [Test]
    public void Length16000IsMixedRadixNotBluestein()
    {
        var plan = FftPlan.Get(16000);
        Assert.That(plan.Inner, Is.Null);
        Assert.That(plan.Radices.Aggregate(1, (a, b) => a * b), Is.EqualTo(16000));
        Assert.That(FftPlan.Get(16001).Inner, Is.Not.Null, "16001 = 16001 (prime) goes through Bluestein");
    }
}
