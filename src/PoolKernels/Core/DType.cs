namespace PoolKernels;

/// <summary>Element types of tensors and test vectors (docs/operations.md (test vectors) names).</summary>
public enum DType
{
    /// <summary>IEEE binary64.</summary>
    F64,
    /// <summary>IEEE binary32.</summary>
    F32,
    /// <summary>IEEE binary16.</summary>
    F16,
    /// <summary>bfloat16 (upper half of binary32).</summary>
    BF16,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned byte.</summary>
    U8,
    /// <summary>Boolean, one byte, nonzero = true.</summary>
    Bool,
    /// <summary>Signed byte (two's complement; <c>quantize</c> int8/binary outputs, int8 corpora).</summary>
    I8,
}

/// <summary>Helpers for <see cref="DType"/>.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int Size(this DType t) => t switch
    {
        DType.F64 or DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 => 2,
        _ => 1,
    };

    /// <summary>The safetensors name ("F32", "BOOL", ...).</summary>
    public static string Name(this DType t) => t == DType.Bool ? "BOOL" : t.ToString();

    /// <summary>Parses a safetensors dtype name; false for unknown names.</summary>
    public static bool TryParse(string name, out DType t)
    {
        switch (name)
        {
            case "F64": t = DType.F64; return true;
            case "F32": t = DType.F32; return true;
            case "F16": t = DType.F16; return true;
            case "BF16": t = DType.BF16; return true;
            case "I64": t = DType.I64; return true;
            case "I32": t = DType.I32; return true;
            case "U8": t = DType.U8; return true;
            case "I8": t = DType.I8; return true;
            case "BOOL": t = DType.Bool; return true;
            default: t = default; return false;
        }
    }

    /// <summary>The dtype of a CLR element type (<see cref="bool"/> maps to <see cref="DType.Bool"/>).</summary>
    public static DType Of<T>() =>
        typeof(T) == typeof(float) ? DType.F32 : typeof(T) == typeof(Half) ? DType.F16 : typeof(T) == typeof(BFloat16) ? DType.BF16 :
        typeof(T) == typeof(double) ? DType.F64 : typeof(T) == typeof(long) ? DType.I64 : typeof(T) == typeof(int) ? DType.I32 :
        typeof(T) == typeof(byte) ? DType.U8 : typeof(T) == typeof(bool) ? DType.Bool : typeof(T) == typeof(sbyte) ? DType.I8 :
        throw new ArgumentException($"Element type {typeof(T).Name} is not supported.", nameof(T));

    /// <summary>True for F32, F16 and BF16: the inputs that "F32|F16|BF16" accepts.</summary>
    public static bool IsFloatInput(this DType t) => t is DType.F32 or DType.F16 or DType.BF16;
    /// <summary>True for the mask types I64, I32, U8, BOOL.</summary>
    public static bool IsMask(this DType t) => t is DType.I64 or DType.I32 or DType.U8 or DType.Bool;
    /// <summary>True for the index types I64, I32.</summary>
    public static bool IsIndex(this DType t) => t is DType.I64 or DType.I32;
    /// <summary>True for the integer dtypes (I64, I32, I8, U8, BOOL): compared exactly by the test vectors.</summary>
    public static bool IsInteger(this DType t) => t is DType.I64 or DType.I32 or DType.I8 or DType.U8 or DType.Bool;
}
