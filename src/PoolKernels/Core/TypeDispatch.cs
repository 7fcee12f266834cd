namespace PoolKernels;

/// <summary>Work that is generic over up to three element types, chosen at run time from dtypes.
/// Implemented by ref structs that carry the op's spans, so dispatch neither boxes nor allocates.</summary>
internal interface ITypedRunner
{
    void Run<T1, T2, T3>() where T1 : unmanaged where T2 : unmanaged where T3 : unmanaged;
}

/// <summary>Maps run-time dtypes to CLR types (F32 float, F16 Half, BF16 BFloat16, F64 double, I64 long,
/// I32 int, U8 and BOOL byte) and calls <see cref="ITypedRunner.Run{T1,T2,T3}"/>.</summary>
internal static class TypeDispatch
{
    public static void Run<TR>(ref TR r, DType a, DType b, DType c) where TR : ITypedRunner, allows ref struct
    {
        switch (a)
        {
            case DType.F32: L2<TR, float>(ref r, b, c); break;
            case DType.F16: L2<TR, Half>(ref r, b, c); break;
            case DType.BF16: L2<TR, BFloat16>(ref r, b, c); break;
            case DType.F64: L2<TR, double>(ref r, b, c); break;
            case DType.I64: L2<TR, long>(ref r, b, c); break;
            case DType.I32: L2<TR, int>(ref r, b, c); break;
            default: L2<TR, byte>(ref r, b, c); break;
        }
    }

    private static void L2<TR, T1>(ref TR r, DType b, DType c) where TR : ITypedRunner, allows ref struct where T1 : unmanaged
    {
        switch (b)
        {
            case DType.F32: L3<TR, T1, float>(ref r, c); break;
            case DType.F16: L3<TR, T1, Half>(ref r, c); break;
            case DType.BF16: L3<TR, T1, BFloat16>(ref r, c); break;
            case DType.F64: L3<TR, T1, double>(ref r, c); break;
            case DType.I64: L3<TR, T1, long>(ref r, c); break;
            case DType.I32: L3<TR, T1, int>(ref r, c); break;
            default: L3<TR, T1, byte>(ref r, c); break;
        }
    }

    private static void L3<TR, T1, T2>(ref TR r, DType c) where TR : ITypedRunner, allows ref struct where T1 : unmanaged where T2
        : unmanaged
    {
        switch (c)
        {
            case DType.F32: r.Run<T1, T2, float>(); break;
            case DType.F16: r.Run<T1, T2, Half>(); break;
            case DType.BF16: r.Run<T1, T2, BFloat16>(); break;
            case DType.F64: r.Run<T1, T2, double>(); break;
            case DType.I64: r.Run<T1, T2, long>(); break;
            case DType.I32: r.Run<T1, T2, int>(); break;
            default: r.Run<T1, T2, byte>(); break;
        }
    }
}
