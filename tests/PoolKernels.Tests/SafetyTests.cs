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

    // ---- 1. shapes are copied at construction and immutable ----

    private static float[] Floats(int n, int seed = 1)
    {
        var r = new Random(seed); return Enumerable.Range(0,
        n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
    }

    [Test]
    public void HostTensorShapeIsACopyOfTheCallersArray()
    {
        int[] shape = [2, 8];
        var t = new HostTensor(DType.F32, shape, new byte[64]);
        int[] zs = [3, 5];
        var z = HostTensor.Zeros(DType.F32, zs);
        int[] fs = [2, 2];
        var f = HostTensor.From(new float[4], fs);
        shape[1] = 1 << 20; zs[0] = 1 << 20; fs[0] = 1 << 20;
        Assert.That(t.Shape.ToArray(), Is.EqualTo(new[] { 2, 8 }));
        Assert.That(z.Shape.ToArray(), Is.EqualTo(new[] { 3, 5 }));
        Assert.That(f.Shape.ToArray(), Is.EqualTo(new[] { 2, 2 }));
        Assert.That((t.Shape.Length, t.Count, t.ToString()), Is.EqualTo((2, 16L, "F32[2, 8]")));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void DeviceTensorShapeIsACopyOfTheCallersArray(string id)
    {
        var d = TestDevices.Get(id);
        int[] shape = [2, 3, 4];
        using var a = d.Allocate(DType.F32, shape);
        int[] us = [2, 3, 4];
        using var u = d.Upload<float>(Floats(24), us);
        var ht = HostTensor.From(Floats(24), 2, 3, 4);
        using var up = d.Upload(ht);
        shape[2] = 1 << 20; us[2] = 1 << 20;
        Assert.That(a.Shape.ToArray(), Is.EqualTo(new[] { 2, 3, 4 }), id);
        Assert.That(u.Shape.ToArray(), Is.EqualTo(new[] { 2, 3, 4 }), id);
        Assert.That((a.Shape.Length, a.Count, a.Bytes), Is.EqualTo((3, 24L, 96L)), id);
        Assert.That(up.ToTensor().Shape.ToArray(), Is.EqualTo(new[] { 2, 3, 4 }), id);
    }

    /// <summary>The ops the issue saw read or write out of bounds once the caller changed its shape array after construction
    /// (simd segment_pool and sdpa, spatial_pool, ilgpu-cpu): with the arrays reused for something larger, every op gives the
    /// answer of the original shapes.</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void ReusingShapeArraysAfterConstructionChangesNothing(string id)
    {
        var d = TestDevices.Get(id);
        // sequence_pool on host and device tensors
        int[] hs = [2, 3, 4], ms = [2, 3];
        var hidden = new HostTensor(DType.F32, hs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(Floats(24).AsSpan()).ToArray());
        var mask = new HostTensor(DType.I64, ms, System.Runtime.InteropServices.MemoryMarshal.AsBytes(new long[] { 1, 1, 0, 1, 0,
            0 }.AsSpan()).ToArray());
        var expected = d.SequencePool(HostTensor.From(hidden.AsSpan<float>().ToArray(), 2, 3, 4), HostTensor.From(new long[] { 1, 1, 0, 1,
            0, 0 }, 2, 3), new(SequencePoolMode.Mean));
        hs[1] = 1 << 16; hs[2] = 1 << 10; ms[1] = 1 << 16;
        Assert.That(hidden.Shape.ToArray(), Is.EqualTo(new[] { 2, 3, 4 }), id);
        Assert.That(d.SequencePool(hidden, mask, new(SequencePoolMode.Mean)).AsSpan<float>().ToArray(),
            Is.EqualTo(expected.AsSpan<float>().ToArray()), id);
        int[] os = [2, 4];
        using (var dh = d.Upload(hidden))
        using (var dm = d.Upload(mask))
        using (var dout = d.Allocate(DType.F32, os))
        {
            os[1] = 1 << 20;
            d.SequencePool(dh, dm, dout, new(SequencePoolMode.Mean));
            Assert.That(dout.ToTensor().AsSpan<float>().ToArray(), Is.EqualTo(expected.AsSpan<float>().ToArray()), id);
        }

        // spatial_pool: a 16-byte x whose shape array then claims 128 KiB
        int[] xs = [1, 4, 1, 1];
        var x = new HostTensor(DType.F32, xs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(new float[] { 1, 2, 3,
            4 }.AsSpan()).ToArray());
        xs[2] = 64; xs[3] = 128;
        Assert.That(d.SpatialPool(x, new() { Mode = SpatialPoolMode.Avg }).AsSpan<float>().ToArray(), Is.EqualTo(new[] { 1f, 2, 3, 4 }),
            id);

        // segment_pool
        int[] vs = [3, 2], offs = [3];
        var values = new HostTensor(DType.F32, vs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(new float[] { 1, 2, 3, 4, 5,
            6 }.AsSpan()).ToArray());
        var offsets = new HostTensor(DType.I64, offs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(new long[] { 0, 1,
            3 }.AsSpan()).ToArray());
        vs[0] = 1 << 20; offs[0] = 1 << 10;
        Assert.That(d.SegmentPool(values, offsets, SegmentPoolMode.Sum).AsSpan<float>().ToArray(), Is.EqualTo(new[] { 1f, 2, 8, 10 }), id);

        // sdpa: one query, two keys with equal scores -> the mean of the values
        int[] qs = [1, 1, 1, 2], ks = [1, 1, 2, 2];
        var q = new HostTensor(DType.F32, qs, new byte[8]);
        var k = new HostTensor(DType.F32, ks, new byte[16]);
        var v = new HostTensor(DType.F32, (int[])ks.Clone(), System.Runtime.InteropServices.MemoryMarshal.AsBytes(new float[] { 1, 2, 3,
            4 }.AsSpan()).ToArray());
        qs[2] = 1 << 12; ks[2] = 1 << 12; qs[3] = ks[3] = 1 << 8;
        var (o, lse) = d.Sdpa(q, k, v);
        Assert.That(o.AsSpan<float>().ToArray(), Is.EqualTo(new[] { 2f, 3 }).Within(1e-6f), id);
        Assert.That(lse.AsSpan<float>()[0], Is.EqualTo(MathF.Log(2)).Within(1e-6f), id);
    }

    // ---- 6. parameters near int.MaxValue are bad input, not a hang, a wrap or an OverflowException ----

    [Test]
    public void ParseLayersRejectsHugeRangesQuickly()
    {
        ThrowsArg("layers", () => SequencePooling.ParseLayers("0..2147483647"));
        ThrowsArg("layers", () => SequencePooling.ParseLayers("-2147483648..2147483647"));
        ThrowsArg("layers", () => SequencePooling.ParseLayers("2147483647..2147483647,0..100000"));
        Assert.That(SequencePooling.ParseLayers("2147483646..2147483647"), Is.EqualTo(new[] { 2147483646, 2147483647 }),
            "a range ending at int.MaxValue ends");
        Assert.That(SequencePooling.ParseLayers("0,4..6,-1"), Is.EqualTo(new[] { 0, 4, 5, 6, -1 }));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void RerankRefineWithHugeKUsesEveryOtherCandidate(string id)
    {
        var d = TestDevices.Get(id);
        var r = new Verification.RandomTensors(5);
        var q = r.Floats(DType.F32, -1, 1, 2, 8);
        var db = r.Floats(DType.F32, -1, 1, 6, 8);
        // k >= m' - 1 means every other member of T: int.MaxValue must give what k = m' gives (k + 1 used to wrap)
        var (o1, s1) = d.RerankRefine(q, db, m: 4, k: 4);
        var (o2, s2) = d.RerankRefine(q, db, m: 4, k: int.MaxValue);
        Assert.That(o2.ToInt64s(), Is.EqualTo(o1.ToInt64s()), id);
        Assert.That(s2.AsSpan<float>().ToArray(), Is.EqualTo(s1.AsSpan<float>().ToArray()), id);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Pool2dPaddingNearIntMaxIsRejected(string id)
    {
        var d = TestDevices.Get(id);
        var x = HostTensor.From(Floats(2 * 10 * 10), 1, 2, 10, 10);
        foreach (var mode in new[] { "replicate", "reflect", "zeros" })
            foreach (var pad in new[] { int.MaxValue, int.MaxValue / 2 + 1, 1 << 30 })
            {
                var opt = new Pool2dOptions { Mode = Pool2dMode.Max, Kernel = (2, 2), Padding = (pad, 0), PaddingMode = mode };
                ThrowsArg("padding", () => d.Pool2d(x, opt), $"{id} {mode} {pad}");
            }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void AdaptivePoolAndSppSizesThatOverflowAreRejected(string id)
    {
        var d = TestDevices.Get(id);
        var x = HostTensor.From(Floats(2 * 3 * 4 * 4), 2, 3, 4, 4);
        ThrowsArg("outputSize", () => d.AdaptivePool2d(x, Pool2dMode.Avg, (int.MaxValue, int.MaxValue)), id);
        ThrowsArg("outputSize", () => d.AdaptivePool2d(x, Pool2dMode.Max, (1 << 16, 1 << 16)), id);
        ThrowsArg("levels", () => d.Spp(x, [1, 1 << 16]), id);
        ThrowsArg("levels", () => d.Spp(x, [int.MaxValue]), id);
        // a device output of batch 0 can hold any bin count: the per-batch stride must not wrap either
        using var x0 = d.Allocate(DType.F32, 0, 3, 4, 4);
        using var o0 = d.Allocate(DType.F32, 0, 3, 1 << 16, 1 << 16);
        ThrowsArg("outputSize", () => d.AdaptivePool2d(x0, o0, Pool2dMode.Avg, (1 << 16, 1 << 16)), id);
    }

    // ---- 7. the oracle follows PyTorch on NaN and infinite data ----

    /// <summary>torch.sign(z)·sqrt(|z|) is NaN for NaN z: no backend may throw (the reference's Math.Sign did).</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SignedSqrtPropagatesNaN(string id)
    {
        var d = TestDevices.Get(id);
        var x = HostTensor.From(new float[] { float.NaN, 1, 2, 3 }, 2, 2);
        var y = HostTensor.From(new float[] { 1, 2, 3, 4 }, 2, 2);
        foreach (bool normalize in new[] { false, true })
        {
            var b = d.BilinearPool(HostTensor.From(x.AsSpan<float>().ToArray(), 2, 1, 2), HostTensor.From(y.AsSpan<float>().ToArray(), 2, 1,
                2),
                signedSqrt: true, normalize: normalize).AsSpan<float>().ToArray();
            Assert.That(b[..2], Has.All.NaN, $"{id} bilinear row 0");
            Assert.That(b[4..], Has.None.NaN, $"{id} bilinear row 1");
            if (!normalize) Assert.That(b[4], Is.EqualTo(MathF.Sqrt(6)).Within(1e-5f), id);
        }
        var w = new MfbWeights<HostTensor>(HostTensor.From(new float[] { 2, -1, 1, 1 }, 2, 2), HostTensor.Zeros(DType.F32, 2),
            HostTensor.From(new float[] { 1, 3, 1, 1 }, 2, 2), HostTensor.Zeros(DType.F32, 2));
        var opt = new MfbOptions { K = 2, SignedSqrt = true, Normalize = true };
        var mfb = d.MfbPool(x, y, w, opt).AsSpan<float>().ToArray();
        Assert.That(float.IsNaN(mfb[0]) && !float.IsNaN(mfb[1]), $"{id} mfb [{string.Join(", ", mfb)}]");
        var mfh = d.MfhPool(x, y, w, w, opt).AsSpan<float>().ToArray();
        Assert.That(mfh[..2], Has.All.NaN, $"{id} mfh row 0");
        Assert.That(mfh[2..], Has.None.NaN, $"{id} mfh row 1");
        var mcb = d.CompactBilinearPool(x, y, HostTensor.From(new long[] { 0, 1 }, 2), HostTensor.From(new float[] { 1, -1 }, 2),
            HostTensor.From(new long[] { 0, 2 }, 2), HostTensor.From(new float[] { 1, 1 }, 2), 3,
                signedSqrt: true).AsSpan<float>().ToArray();
        Assert.That(mcb[..3], Has.Some.NaN, $"{id} compact_bilinear row 0");
        Assert.That(mcb[3..], Has.None.NaN, $"{id} compact_bilinear row 1");
    }

    /// <summary>sdpa with an infinite score (from the data, not a mask), as PyTorch's softmax: −inf weighs 0 (the softmax
    /// over the other keys), +inf gives NaN (exp(inf − inf)).</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SdpaInfiniteScoresFollowPyTorch(string id)
    {
        var d = TestDevices.Get(id);
        var q = HostTensor.From(new float[] { 1 }, 1, 1, 1, 1);
        var v = HostTensor.From(new float[] { 10, 20, 30 }, 1, 1, 3, 1);
        var opt = new SdpaOptions { Scale = 1 };
        foreach (var at in new[] { 0, 1, 2 })
        {
            var kv = new float[] { 1, 2, 3 };
            kv[at] = float.NegativeInfinity;
            var (o, lse) = d.Sdpa(q, HostTensor.From(kv, 1, 1, 3, 1), v, options: opt);
            double s = 0, a = 0;
            for (int j = 0; j < 3; j++) if (j != at) { s += Math.Exp(kv[j]); a += Math.Exp(kv[j]) * (10 * (j + 1)); }
            Assert.That(o.AsSpan<float>()[0], Is.EqualTo((float)(a / s)).Within(1e-4f), $"{id} -inf at key {at}");
            Assert.That(lse.AsSpan<float>()[0], Is.EqualTo((float)Math.Log(s)).Within(1e-5f), $"{id} -inf at key {at}");

            kv[at] = float.PositiveInfinity;
            (o, lse) = d.Sdpa(q, HostTensor.From(kv, 1, 1, 3, 1), v, options: opt);
            Assert.That(o.AsSpan<float>()[0], Is.NaN, $"{id} +inf at key {at}");
        }
        // every score -inf: no key has weight, as a row whose keys are all masked (out 0, lse -inf)
        var (o0, l0) = d.Sdpa(q, HostTensor.From(new[] { float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity }, 1, 1, 3,
            1), v, options: opt);
        Assert.That((o0.AsSpan<float>()[0], l0.AsSpan<float>()[0]), Is.EqualTo((0f, float.NegativeInfinity)), id);
    }

    // ---- 5. outputs are checked by shape, not by element count ----

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void OutputsWithTheRightCountButTheWrongShapeAreRejected(string id)
    {
        var d = TestDevices.Get(id);
        using var hidden = d.Upload<float>(Floats(2 * 3 * 8), 2, 3, 8);
        using var mask = d.Upload<long>([1, 1, 0, 1, 0, 0], 2, 3);
        var opt = new SequencePoolOptions(SequencePoolMode.Mean);
        using (var wrong = d.Allocate(DType.F32, 8, 2))
            ThrowsArg("output", () => d.SequencePool(hidden, mask, wrong, opt), id);
        using (var wrong3 = d.Allocate(DType.F32, 2, 8, 1))
            ThrowsArg("output", () => d.SequencePool(hidden, mask, wrong3, opt), id);
        using (var good = d.Allocate(DType.F32, 2, 8))
        {
            using var prefix2d = d.Upload<long>([0, 0], 1, 2);
            ThrowsArg("prefixLen", () => d.SequencePool(hidden, mask, good, opt, prefix2d), id);
            d.SequencePool(hidden, mask, good, opt); // the right shape still runs
        }
        // a TensorSpan output of [4,4] for [2,8]
        var h = Floats(2 * 3 * 8);
        var m = new long[] { 1, 1, 0, 1, 0, 0 };
        var o = new float[16];
        ThrowsArg("output", () => d.SequencePool<float, long>(new System.Numerics.Tensors.ReadOnlyTensorSpan<float>(h, [2, 3, 8], default),
            new System.Numerics.Tensors.ReadOnlyTensorSpan<long>(m, [2, 3], default), new System.Numerics.Tensors.TensorSpan<float>(o, [4,
                4], default), opt), id);
        d.SequencePool<float, long>(new System.Numerics.Tensors.ReadOnlyTensorSpan<float>(h, [2, 3, 8], default),
            new System.Numerics.Tensors.ReadOnlyTensorSpan<long>(m, [2, 3], default), new System.Numerics.Tensors.TensorSpan<float>(o, [2,
                8], default), opt);
    }

    // ---- 3. memory-mapped safetensors: writable copy-on-write views, ObjectDisposedException after Dispose ----

    [Test]
    public void MappedSafetensorsAreCopyOnWriteAndThrowAfterDispose()
    {
        var path = Path.Combine(Path.GetTempPath(), $"pk-safety-{Guid.NewGuid():N}.safetensors");
        try
        {
            int n = (int)(IO.Safetensors.MapThreshold / 4) + 16;
            var big = HostTensor.Zeros(DType.F32, n);
            big.AsSpan<float>()[5] = 3;
            IO.Safetensors.Write(path, new Dictionary<string, HostTensor>
            {
                ["x"] = HostTensor.From(new float[] { 1, 2, 3, 4 }, 1, 4, 1, 1),
                ["big"] = big
            });
            HostTensor x, b;
            using (var f = IO.Safetensors.Read(path))
            {
                x = f.Tensors["x"]; b = f.Tensors["big"];
                // writing used to fault on the read-only mapping; now it changes this copy only
                b.AsSpan<float>()[5] = 42;
                x.AsSpan<float>()[0] = 10;
                Assert.That(b.AsSpan<float>()[5], Is.EqualTo(42f));
                foreach (var id in TestDevices.All())
                    Assert.That(TestDevices.Get(id).SpatialPool(x, new() { Mode = SpatialPoolMode.Avg }).AsSpan<float>().ToArray(),
                        Is.EqualTo(new[] { 10f, 2, 3, 4 }), id);
            }
            using (var again = IO.Safetensors.Read(path))
                Assert.That((again.Tensors["big"].AsSpan<float>()[5], again.Tensors["x"].AsSpan<float>()[0]), Is.EqualTo((3f, 1f)),
                    "the file is unchanged");
            // use after Dispose: ObjectDisposedException, not an access violation
            Assert.Throws<ObjectDisposedException>(() => _ = b.AsSpan<float>()[0]);
            Assert.Throws<ObjectDisposedException>(() => _ = x.Data.Span.Length);
            Assert.Throws<ObjectDisposedException>(() => x.Data.Pin().Dispose());
            Assert.Throws<ObjectDisposedException>(() => _ = x.ToDoubles());
            foreach (var id in TestDevices.All())
            {
                var d = TestDevices.Get(id);
                Assert.Throws<ObjectDisposedException>(() => d.SpatialPool(x, new() { Mode = SpatialPoolMode.Avg }), id);
                Assert.Throws<ObjectDisposedException>(() => d.Upload(x).Dispose(), id);
            }
        }
        finally { File.Delete(path); }
    }

    // ---- 4. use after Dispose is ObjectDisposedException; dispose during a call waits or throws, never crashes ----

    private static readonly SequencePoolOptions Mean = new(SequencePoolMode.Mean);

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void UseAfterDisposeThrowsObjectDisposed(string id)
    {
        // a device of its own: the shared ones stay open for the other tests
        var d = Device.Open(id);
        var hidden = d.Upload<float>(Floats(2 * 3 * 4), 2, 3, 4);
        var mask = d.Upload<long>([1, 1, 0, 1, 0, 0], 2, 3);
        var output = d.Allocate(DType.F32, 2, 4);
        var gone = d.Allocate(DType.F32, 2, 3, 4);
        d.SequencePool(hidden, mask, output, Mean);

        gone.Dispose();
        gone.Dispose(); // twice is fine
        Assert.That(gone.IsDisposed, id);
        Assert.Throws<ObjectDisposedException>(() => d.SequencePool(gone, mask, output, Mean), id);
        Assert.Throws<ObjectDisposedException>(() => gone.ToTensor(), id);
        Assert.Throws<ObjectDisposedException>(() => gone.CopyFrom<float>(new float[24]), id);

        d.Dispose();
        d.Dispose();
        Assert.That((d.IsDisposed, hidden.IsDisposed), Is.EqualTo((true, true)), id);
        Assert.Throws<ObjectDisposedException>(() => d.SequencePool(hidden, mask, output, Mean), id);
        Assert.Throws<ObjectDisposedException>(() => output.ToTensor(), id);
        Assert.Throws<ObjectDisposedException>(() => hidden.CopyFrom<float>(new float[24]), id);
        Assert.Throws<ObjectDisposedException>(() => d.Allocate(DType.F32, 2).Dispose(), id);
        Assert.Throws<ObjectDisposedException>(() => d.Upload(HostTensor.Zeros(DType.F32, 2)).Dispose(), id);
        Assert.Throws<ObjectDisposedException>(() => d.SequencePool(HostTensor.Zeros(DType.F32, 2, 3, 4), HostTensor.Zeros(DType.I64, 2, 3),
            Mean), id);
        if (d.Kind != BackendKind.Reference)
            Assert.Throws<ObjectDisposedException>(() => d.SequencePool<float, long>(new float[24], new long[6], new float[8], 2, 3, 4,
                Mean), id);
        // tensors of a disposed device may still be disposed (the accelerator already freed their buffers)
        hidden.Dispose(); mask.Dispose(); output.Dispose();
    }

    /// <summary>A device or tensor disposed while another thread runs a kernel on it: the call either completes or throws
    /// ObjectDisposedException; the process never crashes (it was an access violation).</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void DisposeDuringACallNeverCrashes(string id)
    {
        foreach (bool disposeDevice in new[] { false, true })
            for (int round = 0; round < 3; round++)
            {
                var d = Device.Open(id);
                int b = id == "simd" ? 64 : 8, t = 128, dim = 256;
                var hidden = d.Upload<float>(Floats(b * t * dim, round), b, t, dim);
                var mask = d.Upload<long>(Enumerable.Repeat(1L, b * t).ToArray(), b, t);
                var output = d.Allocate(DType.F32, b, dim);
                d.SequencePool(hidden, mask, output, Mean); // compile / warm up
                Exception? failure = null;
                int calls = 0;
                using var started = new ManualResetEventSlim();
                var worker = new Thread(() =>
                {
                    try
                    {
                        for (int i = 0; i < 10_000; i++) { d.SequencePool(hidden, mask, output, Mean); calls++; started.Set(); }
                    }
                    catch (ObjectDisposedException) { }
                    catch (Exception e) { failure = e; }
                    finally { started.Set(); }
                });
                worker.Start();
                started.Wait();
                Thread.Sleep(round);
                if (disposeDevice) d.Dispose(); else hidden.Dispose();
                Assert.That(worker.Join(TimeSpan.FromSeconds(60)), $"{id}: the call loop ends after Dispose");
                Assert.That(failure, Is.Null,
                    $"{id} dispose {(disposeDevice ? "device" : "tensor")} round {round}: only ObjectDisposedException may escape");
                Assert.That(calls, Is.LessThan(10_000), $"{id}: calls after Dispose must throw");
                d.Dispose();
            }
    }

    // ---- 8. options print readably; null options are ArgumentNullException and every overload validates alike ----

    [Test]
    public void SequencePoolOptionsPrintTheirModes()
    {
        var o = new SequencePoolOptions(SequencePoolMode.Mean, SequencePoolMode.Max) { Dims = 64, Normalize = true };
        Assert.That(o.ToString(),
            Is.EqualTo("SequencePoolOptions { Modes = [mean, max], P = 3, Eps = 1E-06, Dims = 64, Normalize = True }"));
        Assert.That(new SequencePoolOptions { Modes = null! }.ToString(), Does.StartWith("SequencePoolOptions { Modes = []"));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void SpatialPoolSpanOverloadValidatesLikeTheOthers(string id)
    {
        var d = TestDevices.Get(id);
        var x = new float[2 * 3 * 2 * 2];
        var o = new float[6];
        var e = Assert.Throws<ArgumentNullException>(() => d.SpatialPool(x, o, 2, 3, 2, 2, null!), id);
        Assert.That(e!.ParamName, Is.EqualTo("options"), id);
        ThrowsArg("mode", () => d.SpatialPool(x, o, 2, 3, 2, 2, new SpatialPoolOptions { Mode = (SpatialPoolMode)99 }), id);
        ThrowsArg("eps", () => d.SpatialPool(x, o, 2, 3, 2, 2, new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, Eps = float.NaN }), id);
        ThrowsArg("p", () => d.SpatialPool(x, o, 2, 3, 2, 2, new SpatialPoolOptions { Mode = SpatialPoolMode.Gem, P = 0 }), id);
        using var xt = d.Allocate(DType.F32, 2, 3, 2, 2);
        using var ot = d.Allocate(DType.F32, 2, 3);
        ThrowsArg("mode", () => d.SpatialPool(xt, ot, new SpatialPoolOptions { Mode = (SpatialPoolMode)99 }), id);
        Assert.That(Assert.Throws<ArgumentNullException>(() => SpatialPooling.Pool2dShape([1, 1, 4, 4], null!))!.ParamName,
            Is.EqualTo("options"));
    }

    // ---- 5. results of the host-tensor overloads live in pooled memory ----

    /// <summary>A disposed result returns its memory and is unusable; the next results (which may reuse that memory) start
    /// from zeros and are correct; results kept undisposed are never overwritten by later calls.</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void PooledResultsAreIndependentAndThrowAfterDispose(string id)
    {
        var d = TestDevices.Get(id);
        var oracle = TestDevices.Get("reference");
        var gem = new SpatialPoolOptions { Mode = SpatialPoolMode.Gem };
        var kept = new List<(HostTensor Result, float[] Expected)>();
        for (int round = 0; round < 6; round++)
        {
            var x = HostTensor.From(Floats(3 * 5 * 4 * 4, seed: 10 + round).Select(Math.Abs).ToArray(), 3, 5, 4, 4);
            float[] expected = oracle.SpatialPool(x, gem).AsSpan<float>().ToArray();
            var r = d.SpatialPool(x, gem);
            Assert.That(r.AsSpan<float>().ToArray(), Is.EqualTo(expected).Within(1e-4f), $"{id} round {round}");
            if (round % 2 == 0)
            {
                var data = r.Data;
                r.Dispose();
                r.Dispose(); // twice is fine
                Assert.That(r.IsDisposed, id);
                Assert.Throws<ObjectDisposedException>(() => _ = r.Data, id);
                Assert.Throws<ObjectDisposedException>(() => r.AsSpan<float>(), id);
                Assert.Throws<ObjectDisposedException>(() => _ = data.Span, $"{id}: a Memory taken before the disposal");
                Assert.Throws<ObjectDisposedException>(() => d.Upload(r).Dispose(), id);
            }
            else kept.Add((r, expected));
        }
        foreach (var (r, expected) in kept) Assert.That(r.AsSpan<float>().ToArray(), Is.EqualTo(expected).Within(1e-4f), id);

        // a tensor over the caller's memory only becomes unusable: the caller's array is untouched
        var mine = new float[] { 1, 2, 3, 4 };
        var t = HostTensor.From(mine, 2, 2);
        t.Dispose();
        Assert.Throws<ObjectDisposedException>(() => d.Upload(t).Dispose(), id);
        Assert.That(mine, Is.EqualTo(new float[] { 1, 2, 3, 4 }));
    }
}
