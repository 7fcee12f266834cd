namespace PoolKernels.Evaluation;

/// <summary>How the corpus is stored and searched in <see cref="QuantizedRetrieval"/>.</summary>
public enum RetrievalMethod
{
    /// <summary>F32 corpus, <c>similarity_topk</c> (dot = cosine for normalized embeddings).</summary>
    Float32,
    /// <summary>I8 corpus (<c>quantize</c> int8 with calibration ranges), <c>similarity_topk</c> of the float query scaled by
    /// each dimension's step (the ranking of q · x̂, x̂ the dequantized corpus).</summary>
    Int8,
    /// <summary>U8 corpus (uint8), searched as <see cref="Int8"/>: the same levels, so the same ranking.</summary>
    Uint8,
    /// <summary>Packed bits (binary, I8 [N, ceil(D/8)]), <c>binary_search</c> without rescoring: Hamming distance only.</summary>
    Binary,
    /// <summary>Packed bits, <c>binary_search</c> with rescoring: k·multiplier Hamming candidates rescored by the float query
    /// against the ±1 bits.</summary>
    BinaryRescore,
    /// <summary>Packed bits as ubinary (U8): the same bits as binary, the same results.</summary>
    Ubinary,
    /// <summary>ubinary with rescoring.</summary>
    UbinaryRescore,
    /// <summary>Packed bits for the candidates (<c>hamming_topk</c>, k·multiplier of them), rescored by <c>similarity_topk</c>
    /// of the scaled float query over the candidates' int8 rows (as <c>poolkernels search --int8</c>: bits in memory, int8
    /// on disk).</summary>
    BinaryInt8Rescore,
}

/// <summary>One row of <see cref="QuantizedRetrieval.Run"/>: a method, its memory per corpus vector and its scores.</summary>
public sealed record RetrievalResult(RetrievalMethod Method, string Name, int BytesPerVector, RetrievalScores Scores);

/// <summary>
/// The quality check of issue 18: the same queries and corpus searched with the corpus as float32, int8, uint8, binary
/// and ubinary (with and without rescoring), all with the library's ops on one device (<c>quantize</c>,
/// <c>similarity_topk</c>, <c>binary_search</c>), top 10, scored by <see cref="RetrievalMetrics"/>.
/// </summary>
public static class QuantizedRetrieval
{
    /// <summary>The method's name in tables and on the command line.</summary>
    public static string Name(RetrievalMethod m, int multiplier) => m switch
    {
        RetrievalMethod.Float32 => "float32",
        RetrievalMethod.Int8 => "int8",
        RetrievalMethod.Uint8 => "uint8",
        RetrievalMethod.Binary => "binary",
        RetrievalMethod.BinaryRescore => $"binary+rescore x{multiplier}",
        RetrievalMethod.Ubinary => "ubinary",
        RetrievalMethod.UbinaryRescore => $"ubinary+rescore x{multiplier}",
        RetrievalMethod.BinaryInt8Rescore => $"binary+int8 rescore x{multiplier}",
        _ => throw new ArgumentOutOfRangeException(nameof(m), m, "unknown method"),
    };

    /// <summary>Bytes per corpus vector of D dimensions: 4·D, D, D, ceil(D/8), and ceil(D/8) + D for bits + int8.</summary>
    public static int BytesPerVector(RetrievalMethod m, int d) => m switch
    {
        RetrievalMethod.Float32 => 4 * d,
        RetrievalMethod.Int8 or RetrievalMethod.Uint8 => d,
        RetrievalMethod.BinaryInt8Rescore => (d + 7) / 8 + d,
        _ => (d + 7) / 8,
    };

    /// <summary>
    /// Searches <paramref name="documents"/> [N,D] F32 with <paramref name="queries"/> [Q,D] F32 (normalized embeddings)
    /// by each method, top min(10, N), and scores the results against <paramref name="relevant"/> (Q lists).
    /// int8/uint8 take their ranges from <paramref name="calibration"/> [M,D] F32 (e.g. the train split's embeddings),
    /// else from the documents themselves.
    /// </summary>
    public static IReadOnlyList<RetrievalResult> Run(Device device, HostTensor queries, HostTensor documents, IReadOnlyList<int[]> relevant,
        IEnumerable<RetrievalMethod> methods, HostTensor? calibration = null, int rescoreMultiplier = 4)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(documents);
        ArgumentNullException.ThrowIfNull(relevant);
        ArgumentNullException.ThrowIfNull(methods);
        if (queries.Rank != 2 || documents.Rank != 2 || queries.Shape[1] != documents.Shape[1])
            throw new ArgumentException($"queries [Q,D] and documents [N,D] must share D, got {queries} and {documents}.", nameof(queries));
        if (queries.Shape[0] != relevant.Count)
            throw new ArgumentException($"{queries.Shape[0]} queries but {relevant.Count} relevance lists.", nameof(relevant));
        int n = documents.Shape[0], d = documents.Shape[1], k = Math.Min(10, n);
        var results = new List<RetrievalResult>();
        foreach (var m in methods)
        {
            var ranked = Search(device, m, queries, documents, calibration, k, rescoreMultiplier);
            var scores = RetrievalMetrics.Evaluate(ranked, k, relevant);
            results.Add(new RetrievalResult(m, Name(m, rescoreMultiplier), BytesPerVector(m, d), scores));
        }
        return results;
    }

    /// <summary>The top-k document indices [Q·k] of one method.</summary>
    public static long[] Search(Device device, RetrievalMethod m, HostTensor queries, HostTensor documents, HostTensor? calibration, int k,
        int rescoreMultiplier = 4)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(documents);
        switch (m)
        {
            case RetrievalMethod.Float32:
                return device.SimilarityTopk(queries, documents, k).Index.AsSpan<long>().ToArray();
            case RetrievalMethod.Int8 or RetrievalMethod.Uint8:
                {
                    var precision = m == RetrievalMethod.Int8 ? QuantizePrecision.Int8 : QuantizePrecision.Uint8;
                    var ranges = Ranges(calibration ?? documents);
                    var db = device.Quantize(documents, precision, ranges);
                    return device.SimilarityTopk(ScaleBySteps(queries, ranges), db, k).Index.AsSpan<long>().ToArray();
                }
            case RetrievalMethod.BinaryInt8Rescore:
                return BinaryInt8Search(device, queries, documents, calibration, k, rescoreMultiplier);
            default:
                {
                    bool ubinary = m is RetrievalMethod.Ubinary or RetrievalMethod.UbinaryRescore;
                    bool rescore = m is RetrievalMethod.BinaryRescore or RetrievalMethod.UbinaryRescore;
                    var bits = device.Quantize(documents, ubinary ? QuantizePrecision.Ubinary : QuantizePrecision.Binary);
                    return device.BinarySearch(queries, bits, k, rescoreMultiplier, rescore).Index.AsSpan<long>().ToArray();
                }
        }
    }

    private static long[] BinaryInt8Search(Device device, HostTensor queries, HostTensor documents, HostTensor? calibration, int k,
        int multiplier)
    {
        int q = queries.Shape[0], n = documents.Shape[0], d = documents.Shape[1], c = (int)Math.Min(n, (long)k * multiplier);
        var ranges = Ranges(calibration ?? documents);
        var int8 = device.Quantize(documents, QuantizePrecision.Int8, ranges);
        var (cand, _) = device.HammingTopk(device.Quantize(queries, QuantizePrecision.Ubinary),
            device.Quantize(documents, QuantizePrecision.Ubinary), c);
        var candidates = cand.AsSpan<long>();
        var scaled = ScaleBySteps(queries, ranges);
        var rows = new byte[(long)c * d];
        var found = new long[(long)q * k];
        for (int i = 0; i < q; i++)
        {
            var levels = int8.Data.Span;
            for (int r = 0; r < c; r++) levels.Slice((int)candidates[i * c + r] * d, d).CopyTo(rows.AsSpan(r * d, d));
            var one = HostTensor.From(scaled.AsSpan<float>().Slice(i * d, d), 1, d);
            var local = device.SimilarityTopk(one, new HostTensor(DType.I8, [c, d], rows), k).Index.AsSpan<long>();
            for (int r = 0; r < k; r++) found[i * k + r] = candidates[i * c + (int)local[r]];
        }
        return found;
    }

    /// <summary>Per-dimension [min; max] [2,D] of <paramref name="data"/> [M,D] F32: the ranges <c>quantize</c> derives from
    /// calibration data (sentence-transformers' <c>calibration_embeddings</c>).</summary>
    public static HostTensor Ranges(HostTensor data)
    {
        ArgumentNullException.ThrowIfNull(data);
        int m = data.Shape[0], d = data.Shape[1];
        if (m < 1) throw new ArgumentException("calibration data needs at least one row.", nameof(data));
        var x = data.AsSpan<float>();
        var r = new float[2 * d];
        x[..d].CopyTo(r);
        x[..d].CopyTo(r.AsSpan(d));
        for (int i = 1; i < m; i++)
            for (int j = 0; j < d; j++)
            {
                float v = x[i * d + j];
                if (v < r[j]) r[j] = v;
                if (v > r[d + j]) r[d + j] = v;
            }
        return HostTensor.From(r, 2, d);
    }

    /// <summary>
    /// q_d·step_d with step_d = (end_d − start_d)/255: q · level equals q · x̂ minus a constant per query (x̂ the middle of
    /// each level's interval), so <c>similarity_topk</c> of the scaled query over the int8 (or uint8) levels ranks as the
    /// dequantized corpus would; plain q · level would weigh each dimension by its range.
    /// </summary>
    public static HostTensor ScaleBySteps(HostTensor queries, HostTensor ranges)
    {
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(ranges);
        int q = queries.Shape[0], d = queries.Shape[1];
        var r = ranges.AsSpan<float>();
        var x = queries.AsSpan<float>();
        var scaled = new float[(long)q * d];
        for (int i = 0; i < q; i++)
            for (int j = 0; j < d; j++)
                scaled[i * d + j] = (float)(x[i * d + j] * (((double)r[d + j] - r[j]) / 255));
        return HostTensor.From(scaled, q, d);
    }
}
