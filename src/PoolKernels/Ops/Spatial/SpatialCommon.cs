using System.Globalization;
using System.Runtime.InteropServices;

namespace PoolKernels;

/// <summary>Argument checks and buffer access shared by the spatial / retrieval operations.</summary>
internal static class SpatialArgs
{
    public static ReadOnlySpan<float> F(DeviceTensor t) => MemoryMarshal.Cast<byte, float>(t.Host.Span);
    public static Span<float> FOut(DeviceTensor t) => MemoryMarshal.Cast<byte, float>(t.Host.Span);

    // fixed arity, no params array: a steady-state call allocates nothing
    public static void Devices(Device device, string n1, DeviceTensor? t1, string n2, DeviceTensor? t2,
        string? n3 = null, DeviceTensor? t3 = null, string? n4 = null, DeviceTensor? t4 = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        Check.SameDevice(device, n1, t1);
        Check.SameDevice(device, n2, t2);
        if (n3 is not null) Check.SameDevice(device, n3, t3);
        if (n4 is not null) Check.SameDevice(device, n4, t4);
    }

    public static void F32(DeviceTensor t, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        Check.DTypeIs(t.DType, name, "F32", t.DType == DType.F32);
    }

    public static void MaskDType(DeviceTensor t, string name) => Check.DTypeIs(t.DType, name, "I64|I32|U8|BOOL", t.DType.IsMask());

    /// <summary>The output must be F32 of exactly <paramref name="shape"/>.</summary>
    public static void Output(DeviceTensor output, params ReadOnlySpan<int> shape)
    {
        ArgumentNullException.ThrowIfNull(output, nameof(output));
        Check.DTypeIs(output.DType, nameof(output), "F32", output.DType == DType.F32);
        if (!output.Shape.SequenceEqual(shape))
            throw new ArgumentException($"output is {Shape.Format(output.Shape)} but the operation produces {Shape.Format(shape)}.",
                nameof(output));
    }

    public static void Shaped(DeviceTensor t, string name, string layout, params ReadOnlySpan<int> shape)
    {
        if (!t.Shape.SequenceEqual(shape))
            throw new ArgumentException($"{Check.D(name)} must be {layout} = {Shape.Format(shape)}, got {Shape.Format(t.Shape)}.", name);
    }

    public static void PositiveFinite(float p, string name)
    {
        if (!(p > 0 && float.IsFinite(p))) throw new ArgumentException($"{Check.D(name)} must be a finite number > 0, got {p}.", name);
    }

    /// <summary>"k" or "h,w" → (h, w).</summary>
    public static (int H, int W) Pair(string text, string name)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length is < 1 or > 2) throw new ArgumentException($"{Check.D(name)} = '{text}' must be 'n' or 'h,w'.", name);
        int a = Int(parts[0], name), b = parts.Length == 2 ? Int(parts[1], name) : a;
        return (a, b);
    }

    /// <summary>"1,2,4" → [1,2,4].</summary>
    public static int[] List(string text, string name) =>
        text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(s => Int(s, name)).ToArray();

    private static int Int(string s, string name) => int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v)
        ? v : throw new ArgumentException($"{Check.D(name)} entry '{s}' is not an integer.", name);
}
