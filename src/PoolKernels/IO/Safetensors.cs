using System.Buffers;
using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;

namespace PoolKernels.IO;

/// <summary>A safetensors file that failed validation: the message says what and where.</summary>
public sealed class SafetensorsFormatException(string message) : FormatException(message);

/// <summary>
/// The tensors and <c>__metadata__</c> of a safetensors file. Files above <see cref="Safetensors.MapThreshold"/>
/// are memory-mapped copy-on-write and their tensors are views into the mapping: writing a tensor changes this
/// process's copy only (never the file); dispose the file when done. After <see cref="Dispose"/> the tensors of a
/// mapped file throw <see cref="ObjectDisposedException"/> when their data is read (Data.Span, AsSpan, any operation);
/// disposing while another thread still uses a span of the mapping is the caller's race (as for any unmanaged memory).
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    private readonly IDisposable? _owner;
    /// <summary>Tensors by name, in file order.</summary>
    public IReadOnlyDictionary<string, HostTensor> Tensors { get; }
    /// <summary>The string map under <c>__metadata__</c> (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    internal SafetensorsFile(IReadOnlyDictionary<string, HostTensor> tensors, IReadOnlyDictionary<string, string> metadata,
        IDisposable? owner)
    { Tensors = tensors; Metadata = metadata; _owner = owner; }

    /// <summary>Releases the mapping (tensors of a mapped file must not be used afterwards).</summary>
    public void Dispose() => _owner?.Dispose();
}

/// <summary>
/// Reader and writer of the safetensors format (8-byte little-endian header length, JSON header,
/// raw little-endian data). Every header field is validated before any data is touched: header length
/// within the file and at most <see cref="MaxHeaderBytes"/>, known dtypes, non-negative shapes whose
/// byte size equals the offsets' span, offsets inside the data section, no overlaps.
/// </summary>
public static class Safetensors
{
    /// <summary>Largest accepted JSON header (the reference implementation uses 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;
    /// <summary>Files at least this large are memory-mapped instead of read.</summary>
    public const long MapThreshold = 64L << 20;

    /// <summary>Reads a file (memory-mapped when large).</summary>
    public static SafetensorsFile Read(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"Safetensors file not found: {path}", path);
        if (info.Length < MapThreshold) return Parse(File.ReadAllBytes(path), null, path);
        // Copy-on-write: the tensors are handed out as writable Memory<byte>; a write must land in private pages, not fault
        // on read-only ones (and never reach the file).
        var mmf = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.CopyOnWrite);
        try
        {
            var manager = new MappedMemory(mmf, info.Length);
            return Parse(manager.Memory, manager, path);
        }
        catch { mmf.Dispose(); throw; }
    }

    /// <summary>Parses an in-memory file. The tensors view <paramref name="bytes"/> (no copy).</summary>
    public static SafetensorsFile Parse(Memory<byte> bytes, string name = "<memory>") => Parse(bytes, null, name);

    private static SafetensorsFile Parse(Memory<byte> bytes, IDisposable? owner, string name)
    {
        try { return ParseCore(bytes, owner, name); }
        catch (SafetensorsFormatException) { owner?.Dispose(); throw; }
        catch (Exception e) when (e is JsonException or InvalidOperationException or OverflowException or ArgumentException or
            DecoderFallbackException)
        {
            owner?.Dispose();
            throw new SafetensorsFormatException($"{name}: malformed safetensors header: {e.Message}");
        }
    }

    private static SafetensorsFile ParseCore(Memory<byte> bytes, IDisposable? owner, string name)
    {
        var span = bytes.Span;
        if (span.Length < 8)
            throw new SafetensorsFormatException($"{name}: file has {span.Length} bytes, fewer than the 8-byte header length.");
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(span);
        if (headerLen > MaxHeaderBytes || headerLen > (ulong)(span.Length - 8))
            throw new SafetensorsFormatException($"{name}: header length {headerLen} exceeds the file ({span.Length} bytes) or the "
                + $"{MaxHeaderBytes}-byte limit.");
        var header = span.Slice(8, (int)headerLen);
        var data = bytes[(8 + (int)headerLen)..];
        using var doc = JsonDocument.Parse(new UTF8Encoding(false, true).GetString(header).TrimEnd(' '),
            new JsonDocumentOptions { MaxDepth = 16 });
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException($"{name}: header is not a JSON object.");

        var metadata = new Dictionary<string, string>();
        var tensors = new Dictionary<string, HostTensor>();
        var spans = new List<(long Begin, long End, string Name)>();
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object)
                    throw new SafetensorsFormatException($"{name}: __metadata__ is not an object.");
                foreach (var m in prop.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String)
                        throw new SafetensorsFormatException($"{name}: __metadata__.{m.Name} is not a string.");
                    metadata[m.Name] = m.Value.GetString()!;
                }
                continue;
            }
            var e = prop.Value;
            if (e.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException($"{name}: tensor '{prop.Name}' is not an object.");
            if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String || !DTypes.TryParse(dt.GetString()!,
                out var dtype))
                throw new SafetensorsFormatException($"{name}: tensor '{prop.Name}' has a missing or unknown dtype "
                    + $"({(e.TryGetProperty("dtype", out var d2) ? d2.ToString() : "none")}).");
            if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
                throw new SafetensorsFormatException($"{name}: tensor '{prop.Name}' has no shape array.");
            var shape = new int[sh.GetArrayLength()];
            if (shape.Length > 16) throw new SafetensorsFormatException($"{name}: tensor '{prop.Name}' has {shape.Length} dimensions.");
            int k = 0;
            foreach (var dim in sh.EnumerateArray())
            {
                if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long dv) || dv < 0 || dv > int.MaxValue)
                    throw new SafetensorsFormatException($"{name}: tensor '{prop.Name}' has an invalid dimension {dim}.");
                shape[k++] = (int)dv;
            }
            if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
                throw new SafetensorsFormatException($"{name}: tensor '{prop.Name}' has no [begin, end] data_offsets.");
            long begin = off[0].TryGetInt64(out var bv) ? bv : -1, end = off[1].TryGetInt64(out var ev) ? ev : -1;
            if (begin < 0 || end < begin || end > data.Length)
                throw new SafetensorsFormatException($"{name}: tensor '{prop.Name}' offsets [{begin}, {end}] lie outside the "
                    + $"{data.Length}-byte data section.");
            long count = 1;
            foreach (int dv in shape) count = checked(count * dv);
            long need = checked(count * dtype.Size());
            if (need != end - begin)
                throw new SafetensorsFormatException($"{name}: tensor '{prop.Name}' {dtype.Name()}{PoolKernels.Shape.Format(shape)} needs "
                    + $"{need} bytes but its offsets span {end - begin}.");
            if (tensors.ContainsKey(prop.Name)) throw new SafetensorsFormatException($"{name}: tensor '{prop.Name}' appears twice.");
            tensors[prop.Name] = new HostTensor(dtype, shape, data.Slice((int)begin, (int)(end - begin)), owned: true);
            spans.Add((begin, end, prop.Name));
        }
        spans.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        for (int i = 1; i < spans.Count; i++)
            if (spans[i].Begin < spans[i - 1].End)
                throw new SafetensorsFormatException($"{name}: tensors '{spans[i - 1].Name}' and '{spans[i].Name}' overlap.");
        return new SafetensorsFile(tensors, metadata, owner);
    }

    /// <summary>Serializes tensors (in the order given) and metadata to bytes; the header is padded to 8 bytes.</summary>
    public static byte[] Serialize(IEnumerable<KeyValuePair<string, HostTensor>> tensors, IReadOnlyDictionary<string,
        string>? metadata = null)
    {
        using var ms = new MemoryStream();
        Write(ms, tensors, metadata);
        return ms.ToArray();
    }

    /// <summary>Writes a safetensors file.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, HostTensor>> tensors, IReadOnlyDictionary<string,
        string>? metadata = null)
    {
        using var fs = File.Create(path);
        Write(fs, tensors, metadata);
    }

    /// <summary>Writes safetensors to a stream.</summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, HostTensor>> tensors, IReadOnlyDictionary<string,
        string>? metadata = null)
    {
        var list = tensors.ToList();
        var headerBuf = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(headerBuf))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (n, t) in list)
            {
                w.WriteStartObject(n);
                w.WriteString("dtype", t.DType.Name());
                w.WriteStartArray("shape");
                foreach (int d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + t.Data.Length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += t.Data.Length;
            }
            w.WriteEndObject();
        }
        int pad = (8 - headerBuf.WrittenCount % 8) % 8;
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(headerBuf.WrittenCount + pad));
        stream.Write(len);
        stream.Write(headerBuf.WrittenSpan);
        for (int i = 0; i < pad; i++) stream.WriteByte((byte)' ');
        foreach (var (_, t) in list) stream.Write(t.Data.Span);
    }

    private sealed unsafe class MappedMemory : MemoryManager<byte>
    {
        private readonly MemoryMappedFile _file;
        private readonly MemoryMappedViewAccessor _view;
        private readonly byte* _ptr;
        private readonly int _length;

        public MappedMemory(MemoryMappedFile file, long length)
        {
            if (length > int.MaxValue)
                throw new SafetensorsFormatException($"File of {length} bytes exceeds the 2 GiB that one mapping view supports here.");
            _file = file;
            _view = file.CreateViewAccessor(0, length, MemoryMappedFileAccess.CopyOnWrite);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _ptr = p + _view.PointerOffset;
            _length = (int)length;
        }

        private int _disposed;

        public override Span<byte> GetSpan()
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            return new(_ptr, _length);
        }

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            if ((uint)elementIndex > (uint)_length) throw new ArgumentOutOfRangeException(nameof(elementIndex));
            return new(_ptr + elementIndex);
        }

        public override void Unpin() { }

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return; // once: a second Dispose must not release twice
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _file.Dispose();
        }
    }
}
