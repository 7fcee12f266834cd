namespace PoolKernels.Verification;

/// <summary>Deterministic random inputs for conformance cases.</summary>
public sealed class RandomTensors(int seed)
{
    /// <summary>The generator (for choices a case makes itself).</summary>
    public Random Rng { get; } = new(seed);

    /// <summary>Uniform floats in [lo, hi), stored as <paramref name="dtype"/> (rounded once).</summary>
    public HostTensor Floats(DType dtype, float lo, float hi, params int[] shape)
    {
        var v = new float[Shape.Count(shape)];
        for (int i = 0; i < v.Length; i++) v[i] = lo + (float)Rng.NextDouble() * (hi - lo);
        var t = HostTensor.From(v, shape);
        return dtype == DType.F32 ? t : t.To(dtype);
    }

    /// <summary>Floats with a few NaN, +inf and -inf planted.</summary>
    public HostTensor FloatsWithSpecials(DType dtype, params int[] shape)
    {
        var t = Floats(DType.F32, -2, 2, shape);
        var s = t.AsSpan<float>();
        float[] specials = [float.NaN, float.PositiveInfinity, float.NegativeInfinity];
        for (int k = 0; k < Math.Min(3, s.Length); k++) s[Rng.Next(s.Length)] = specials[k];
        return dtype == DType.F32 ? t : t.To(dtype);
    }

    /// <summary>A [B,T] mask: row kinds cycle through right padding, left padding, ragged holes, empty and full.
    /// Nonzero keep values vary (1, 2, 7) to check that any nonzero keeps.</summary>
    public HostTensor Mask(DType dtype, int batch, int seqLen)
    {
        var m = new long[(long)batch * seqLen];
        for (int b = 0; b < batch; b++)
        {
            int kind = (b + Rng.Next(5)) % 5, len = seqLen == 0 ? 0 : 1 + Rng.Next(seqLen);
            for (int t = 0; t < seqLen; t++)
            {
                bool keep = kind switch
                {
                    0 => t < len,
                    1 => t >= seqLen - len,
                    2 => Rng.Next(3) != 0,
                    3 => false,
                    _ => true,
                };
                m[b * seqLen + t] = keep ? (dtype == DType.Bool ? 1 : 1 + Rng.Next(3) * 3) : 0;
            }
        }
        return HostTensor.From(m, batch, seqLen).To(dtype);
    }

    /// <summary>[rows, dim] F32 rows of unit L2 norm (retrieval databases and queries).</summary>
    public HostTensor UnitRows(int rows, int dim)
    {
        var t = Floats(DType.F32, -1, 1, rows, dim);
        var v = t.AsSpan<float>();
        for (int i = 0; i < rows; i++)
        {
            var row = v.Slice(i * dim, dim);
            double n = 0;
            foreach (float x in row) n += (double)x * x;
            for (int j = 0; j < dim; j++) row[j] = (float)(row[j] / Math.Max(Math.Sqrt(n), 1e-12));
        }
        return t;
    }

    /// <summary>One of the float input dtypes.</summary>
    public DType FloatType() => Rng.Next(3) switch { 0 => DType.F32, 1 => DType.F16, _ => DType.BF16 };
    /// <summary>One of the mask dtypes.</summary>
    public DType MaskType() => Rng.Next(4) switch { 0 => DType.I64, 1 => DType.I32, 2 => DType.U8, _ => DType.Bool };
}
