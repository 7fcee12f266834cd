using System.Buffers.Binary;
using System.Text;
using NUnit.Framework;
using PoolKernels.IO;

namespace PoolKernels.Tests;

public class SafetensorsTests
{
    private static Dictionary<string, HostTensor> AllDTypes() => new()
    {
        ["f64"] = HostTensor.From(new[] { 1.5, -2, double.NaN }, 3),
        ["f32"] = HostTensor.From(new[] { 1f, 2, 3, 4, 5, 6 }, 2, 3),
        ["f16"] = HostTensor.From(new[] { (Half)1, (Half)(-0.5f), Half.PositiveInfinity, (Half)65504 }, 2, 2),
        ["bf16"] = HostTensor.From(new[] { BFloat16.FromSingle(1), BFloat16.FromSingle(-3.25f) }, 2),
        ["i64"] = HostTensor.From(new[] { long.MinValue, 0, long.MaxValue }, 3),
        ["i32"] = HostTensor.From(new[] { -7, 8 }, 1, 2),
        ["u8"] = HostTensor.From(new byte[] { 0, 255 }, 2),
        ["bool"] = HostTensor.From(new[] { true, false, true }, 3),
        ["scalar"] = HostTensor.From(new[] { 42f }),
        ["empty"] = HostTensor.Zeros(DType.F32, 0, 5),
    };

    [Test]
    public void RoundTripsEveryDTypeAndMetadata()
    {
        var tensors = AllDTypes();
        var meta = new Dictionary<string, string> { ["op"] = "sequence_pool", ["mode"] = "mean,max" };
        var bytes = Safetensors.Serialize(tensors, meta);
        Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(bytes) % 8, Is.Zero, "header is padded to 8 bytes");
        using var f = Safetensors.Parse(bytes);
        Assert.That(f.Metadata, Is.EqualTo(meta));
        Assert.That(f.Tensors.Keys, Is.EqualTo(tensors.Keys));
        foreach (var (name, t) in tensors)
        {
            Assert.That(f.Tensors[name].DType, Is.EqualTo(t.DType), name);
            Assert.That(f.Tensors[name].Shape.ToArray(), Is.EqualTo(t.Shape.ToArray()), name);
            Assert.That(f.Tensors[name].Data.ToArray(), Is.EqualTo(t.Data.ToArray()), name);
        }
    }

    [Test]
    public void LargeFilesAreMemoryMappedAndReadBack()
    {
        var path = Path.Combine(Path.GetTempPath(), $"pk-big-{Guid.NewGuid():N}.safetensors");
        try
        {
            int n = (int)(Safetensors.MapThreshold / 4) + 1000;
            var big = HostTensor.Zeros(DType.F32, n);
            big.AsSpan<float>()[n - 1] = 7;
            Safetensors.Write(path, new Dictionary<string, HostTensor> { ["a"] = HostTensor.From(new[] { 1, 2 }, 2), ["big"] = big });
            using var f = Safetensors.Read(path);
            Assert.That(f.Tensors["big"].AsSpan<float>()[n - 1], Is.EqualTo(7f));
            Assert.That(f.Tensors["a"].AsSpan<int>().ToArray(), Is.EqualTo(new[] { 1, 2 }));
        }
        finally { File.Delete(path); }
    }

    private static byte[] WithHeader(string json, int dataBytes = 16)
    {
        var h = Encoding.UTF8.GetBytes(json);
        var b = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)h.Length);
        h.CopyTo(b, 8);
        return b;
    }

    public static IEnumerable<TestCaseData> Malformed()
    {
        yield return new TestCaseData(new byte[5], "fewer than the 8-byte").SetName("truncated before the header length");
        var absurd = new byte[16]; BinaryPrimitives.WriteUInt64LittleEndian(absurd, ulong.MaxValue - 3);
        yield return new TestCaseData(absurd, "exceeds").SetName("absurd header length");
        var longer = new byte[16]; BinaryPrimitives.WriteUInt64LittleEndian(longer, 100);
        yield return new TestCaseData(longer, "exceeds").SetName("header longer than the file");
        yield return new TestCaseData(WithHeader("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"""),
            "malformed").SetName("truncated JSON");
        yield return new TestCaseData(WithHeader("""[1,2]"""), "not a JSON object").SetName("header not an object");
        yield return new TestCaseData(WithHeader("""{"a":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}}"""),
            "unknown dtype").SetName("unknown dtype");
        yield return new TestCaseData(WithHeader("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"""),
            "needs 12 bytes").SetName("shape and byte size disagree");
        yield return new TestCaseData(WithHeader("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"""),
            "outside").SetName("offsets past the data");
        yield return new TestCaseData(WithHeader("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"""),
            "outside").SetName("offsets reversed");
        yield return new TestCaseData(WithHeader("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F""" +
            """32","shape":[2],"data_offsets":[4,12]}}"""), "overlap").SetName("overlapping tensors");
        yield return new TestCaseData(WithHeader("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"""),
            "invalid dimension").SetName("negative dimension");
        yield return new TestCaseData(WithHeader("""{"a":{"dtype":"F32","shape":[65536,65536,65536],"data_offsets":[0,4]}}"""),
            "needs").SetName("shape overflows");
        yield return new TestCaseData(WithHeader("""{"a":{"dtype":"F32","data_offsets":[0,4]}}"""), "no shape").SetName("missing shape");
        yield return new TestCaseData(WithHeader("""{"__metadata__":{"op":1}}"""), "not a string").SetName("metadata value not a string");
    }

    [TestCaseSource(nameof(Malformed))]
    public void MalformedFilesGetAClearError(byte[] file, string expected)
    {
        var e = Assert.Throws<SafetensorsFormatException>(() => Safetensors.Parse(file));
        Assert.That(e!.Message, Does.Contain(expected));
    }

    [Test]
    public void FuzzedFilesNeverCrash()
    {
        // Thousands of corruptions of a valid file: byte flips, truncations, random header lengths and garbage
        // JSON. Each either parses into tensors that lie inside the buffer or throws SafetensorsFormatException.
        var valid = Safetensors.Serialize(AllDTypes(), new Dictionary<string, string> { ["op"] = "x" });
        var rng = new Random(12345);
        int parsed = 0, rejected = 0;
        for (int i = 0; i < 5000; i++)
        {
            var b = (byte[])valid.Clone();
            switch (i % 5)
            {
                case 0: for (int k = 0; k < 1 + rng.Next(4); k++) b[rng.Next(b.Length)] = (byte)rng.Next(256); break;
                case 1: b = b[..rng.Next(b.Length)]; break;
                case 2: BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)rng.NextInt64()); break;
                case 3:
                    {
                        int at = 8 + rng.Next((int)BinaryPrimitives.ReadUInt64LittleEndian(valid)); b[at]
                    = (byte)"{}[]\":,0123456789-e"[rng.Next(19)]; break;
                    }
                default: BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)rng.Next(b.Length)); break;
            }
            try
            {
                using var f = Safetensors.Parse(b);
                foreach (var t in f.Tensors.Values) Assert.That(t.Data.Length, Is.EqualTo(t.Count * t.DType.Size()));
                parsed++;
            }
            catch (SafetensorsFormatException) { rejected++; }
        }
        Assert.That(rejected, Is.GreaterThan(1000));
        TestContext.Out.WriteLine($"{parsed} corrupted files still parsed consistently, {rejected} rejected");
    }

    [Test]
    public void MissingFileIsFileNotFound() =>
        Assert.Throws<FileNotFoundException>(() => Safetensors.Read("/nonexistent/x.safetensors"));
}
