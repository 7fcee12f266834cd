using System.Globalization;

namespace PoolKernels.Verification;

/// <summary>
/// quantize, hamming_topk and binary_search in the registry: randomized cases (D not a multiple of 8, W = 1, W not a
/// multiple of 4, rows wider than the GPU histogram, exact ties from duplicate rows and small-integer queries, k = N,
/// k·multiplier &gt; N, empty shapes) and bench workloads.
/// </summary>
internal sealed class QuantizedFamily : IOpFamily
{
    public static IEnumerable<OpSpec> Specs()
    {
        yield return new OpSpec("quantize", RunQuantize, QuantizeCases) { BenchCases = QuantizeBench, Prepare = PrepareQuantize };
        yield return new OpSpec("hamming_topk", RunHamming, HammingCases) { BenchCases = HammingBench, Prepare = PrepareHamming };
        yield return new OpSpec("binary_search", RunBinarySearch, BinarySearchCases)
        {
            BenchCases = BinarySearchBench,
            Prepare = PrepareBinarySearch
        };
    }

    private static Dictionary<string, string> P(params string[] kv)
    {
        var d = new Dictionary<string, string>();
        for (int i = 0; i + 1 < kv.Length; i += 2) d[kv[i]] = kv[i + 1];
        return d;
    }

    private static string S(long v) => v.ToString(CultureInfo.InvariantCulture);

    // ------------------------------------------------------------------------------------------------ runs

    private static IReadOnlyDictionary<string, HostTensor> RunQuantize(Device d, OpCall c) => new Dictionary<string, HostTensor>
    {
        ["out"] = d.Quantize(c.Input("embeddings"), Quantization.ParsePrecision(c.Text("precision")), c.Optional("ranges"),
            c.Optional("calibration")),
    };

    private static IReadOnlyDictionary<string, HostTensor> RunHamming(Device d, OpCall c)
    {
        var query = c.Input("query");
        int k = c.Int("k", 10);
        c.CheckSize("k", "index [Q,k] I64 and distance [Q,k] I32", 12, query.Shape.Length > 0 ? query.Shape[0] : 1, k);
        var (i, dist) = d.HammingTopk(query, c.Input("db"), k);
        return new Dictionary<string, HostTensor> { ["index"] = i, ["distance"] = dist };
    }

    private static IReadOnlyDictionary<string, HostTensor> RunBinarySearch(Device d, OpCall c)
    {
        var query = c.Input("query");
        int k = c.Int("k", 10);
        c.CheckSize("k", "index [Q,k] I64 and score [Q,k] F32", 12, query.Shape.Length > 0 ? query.Shape[0] : 1, k);
        var (i, s) = d.BinarySearch(query, c.Input("db"), k, c.Int("rescore_multiplier", 4), c.Bool("rescore", true));
        return new Dictionary<string, HostTensor> { ["index"] = i, ["score"] = s };
    }

    // ------------------------------------------------------------------------------------------------ random cases

    /// <summary>Random bytes [rows, w] as U8 or I8 (the same bits).</summary>
    internal static HostTensor Bytes(RandomTensors r, DType dtype, int rows, int w)
    {
        var b = new byte[(long)rows * w];
        r.Rng.NextBytes(b);
        return new HostTensor(dtype, [rows, w], b);
    }

    /// <summary>A packed corpus of D-dimensional rows: ubinary bytes (padding bits 0), as binary (I8, ubinary − 128) when asked;
    /// rows i ≥ <paramref name="unique"/> repeat row i mod unique (exact ties).</summary>
    internal static HostTensor Packed(RandomTensors r, int rows, int dim, bool signed, int unique = int.MaxValue)
    {
        int w = (dim + 7) / 8;
        var b = new byte[(long)rows * w];
        r.Rng.NextBytes(b);
        int pad = 8 * w - dim;
        for (int i = 0; i < rows; i++)
        {
            if (i >= unique) Array.Copy(b, (long)(i % unique) * w, b, (long)i * w, w);
            if (w > 0) b[(long)i * w + w - 1] &= (byte)(0xFF << pad);
        }
        if (signed) for (int i = 0; i < b.Length; i++) b[i] ^= 0x80;
        return new HostTensor(signed ? DType.I8 : DType.U8, [rows, w], b);
    }

    private static IReadOnlyList<(string, OpCall)> QuantizeCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int N, int D, string Prec, string Src)[] list =
        [
            (5, 16, "int8", "ranges"), (4, 13, "uint8", "ranges"), (6, 24, "uint8", "calibration"), (3, 13, "int8", "calibration"),
            (7, 9, "int8", "self"), (6, 24, "uint8", "self-const"), (4, 16, "binary", "self"), (3, 385, "binary", "zeros"),
            (5, 13, "ubinary", "zeros"), (2, 1, "ubinary", "self"), (2, 7, "binary", "self"), (0, 5, "int8", "self"), (3, 0, "binary",
                "self"),
        ];
        foreach (var (n, d, prec, src) in list)
        {
            var x = r.Floats(DType.F32, -2, 2, n, d);
            var xs = x.AsSpan<float>();
            if (src == "zeros") for (int i = 0; i < xs.Length; i += 3) xs[i] = i % 2 == 0 ? 0f : -0f;
            if (src == "self-const") for (int i = 0; i < n; i++) xs[i * d + 5] = 0.75f;
            var inputs = new Dictionary<string, HostTensor> { ["embeddings"] = x };
            if (src == "ranges")
            {
                // narrower than the data, so both clamps are exercised
                var rg = new float[2 * d];
                for (int j = 0; j < d; j++)
                {
                    rg[j] = -1.5f + (float)r.Rng.NextDouble();
                    rg[d + j] = rg[j] + 0.5f + 2 * (float)r.Rng.NextDouble();
                }
                inputs["ranges"] = HostTensor.From(rg, 2, d);
            }
            if (src == "calibration") inputs["calibration"] = r.Floats(DType.F32, -1.5f, 1.5f, 10, d);
            cases.Add(($"{prec} {src} N{n} D{d}", new OpCall(inputs, P("precision", prec))));
        }
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> HammingCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int Q, int N, int W, int K, DType Qt, DType Dt, int Unique)[] list =
        [
            (3, 40, 1, 5, DType.U8, DType.U8, int.MaxValue), (2, 20, 16, 20, DType.I8, DType.I8, int.MaxValue), (4, 64, 48, 10,
                DType.U8, DType.U8, 16),
            (2, 50, 13, 7, DType.U8, DType.I8, int.MaxValue), (3, 33, 6, 33, DType.I8, DType.U8, 11), (1, 1, 3, 1, DType.U8, DType.U8,
                int.MaxValue),
            (2, 5, 4, 0, DType.U8, DType.U8, int.MaxValue), (0, 5, 4, 2, DType.U8, DType.U8, int.MaxValue), (2, 6, 0, 3, DType.U8,
                DType.U8, int.MaxValue),
            (5, 300, 32, 17, DType.U8, DType.U8, 100), (2, 12, 1032, 5, DType.U8, DType.U8, 6), (2, 9, 1031, 9, DType.I8, DType.U8,
                int.MaxValue),
            // rows of 64·n bytes (the AVX-512 path), with duplicates, k = N, and 2048 bytes (byte counts summed in two runs)
            (6, 500, 64, 9, DType.U8, DType.U8, 120), (5, 70, 128, 70, DType.I8, DType.U8, 30), (3, 40, 2048, 6, DType.U8, DType.U8, 10),
        ];
        foreach (var (q, n, w, k, qt, dt, unique) in list)
        {
            var db = Bytes(r, dt, n, w);
            var b = db.Data.Span;
            for (int i = unique; i < n; i++) b.Slice(i % unique * w, w).CopyTo(b.Slice(i * w, w));
            var query = Bytes(r, qt, q, w);
            if (q > 1 && n > 0) b.Slice(0, w).CopyTo(query.Data.Span.Slice(w, w)); // a query equal to row 0: distance 0
            var inputs = new Dictionary<string, HostTensor> { ["query"] = query, ["db"] = db };
            cases.Add(($"Q{q} N{n} W{w} k{k} {qt.Name()}/{dt.Name()}{(unique < n ? " duplicates" : "")}", new OpCall(inputs, P("k",
                S(k)))));
        }
        return cases;
    }

    private static IReadOnlyList<(string, OpCall)> BinarySearchCases(int seed)
    {
        var r = new RandomTensors(seed);
        var cases = new List<(string, OpCall)>();
        (int Q, int D, int N, int K, int M, bool Rescore, bool Signed, bool Ints, int Unique)[] list =
        [
            (3, 13, 50, 6, 4, false, true, false, int.MaxValue), (2, 24, 30, 8, 10, true, false, false, int.MaxValue),
            (3, 20, 40, 4, 1, true, true, false, int.MaxValue), (3, 64, 100, 5, 4, true, false, false, int.MaxValue),
            (3, 16, 60, 7, 3, true, false, true, 12), (2, 1, 9, 9, 2, true, true, true, int.MaxValue), (2, 9, 25, 25, 4, true, false,
                true, 5),
            (2, 8, 5, 0, 4, true, false, false, int.MaxValue), (0, 8, 5, 2, 4, true, false, false, int.MaxValue), (4, 37, 200, 10, 4,
                false, false, false, 50),
        ];
        foreach (var (q, d, n, k, m, rescore, signed, ints, unique) in list)
        {
            var query = ints ? RetrievalFamily.Integers(r, -2, 2, q, d) : r.Floats(DType.F32, -1, 1, q, d);
            var inputs = new Dictionary<string, HostTensor> { ["query"] = query, ["db"] = Packed(r, n, d, signed, unique) };
            cases.Add(($"Q{q} D{d} N{n} k{k} m{m} rescore {rescore} {(signed ? "I8" : "U8")}{(ints ? " integer ties" : "")}",
                new OpCall(inputs, P("k", S(k), "rescore_multiplier", S(m), "rescore", rescore ? "true" : "false"))));
        }
        return cases;
    }

    // ------------------------------------------------------------------------------------------------ bench

    private static bool Small(Device d) => d.Id == "ilgpu-cpu" || d.Kind == BackendKind.Reference;
    private static string Bk(long a, long b) => Tuning.Bucket(Tuning.Log2Bucket(a), Tuning.Log2Bucket(b));

    /// <summary>quantize D = 1024, N = 10k / 100k: int8 with calibration-free given ranges, and binary. Bytes 4·N·D in plus the
    /// output; "flops" = the 3 arithmetic operations per element of int8, 1 comparison per element of binary.</summary>
    private static IReadOnlyList<BenchCase> QuantizeBench(Device d)
    {
        var r = new RandomTensors(40);
        (int D, int[] Ns) = Small(d) ? (40, new[] { 8, 32 }) : (1024, new[] { 10_000, 100_000 });
        var list = new List<BenchCase>();
        foreach (int n in Ns) // smallest first
            foreach (var prec in new[] { "int8", "binary" })
            {
                var inputs = new Dictionary<string, HostTensor> { ["embeddings"] = r.Floats(DType.F32, -1, 1, n, D) };
                if (prec == "int8")
                {
                    var rg = new float[2 * D];
                    for (int j = 0; j < D; j++) { rg[j] = -0.9f; rg[D + j] = 0.9f; }
                    inputs["ranges"] = HostTensor.From(rg, 2, D);
                }
                int w = prec == "int8" ? D : (D + 7) / 8;
                list.Add(new BenchCase($"[{n},{D}] {prec}", n, new OpCall(inputs, P("precision", prec)),
                    4.0 * n * D + (double)n * w, (prec == "int8" ? 3.0 : 1.0) * n * D, Bk(n, D)));
            }
        return list;
    }

    /// <summary>hamming_topk k = 10: 256 × 100k × 256 bits (the FAISS IndexBinaryFlat comparison point), 1000 × 100k and
    /// 1000 × 1M × 1024 bits (the speed goal). Bytes: the db once, queries, outputs; "flops" = 64-bit word operations (XOR and
    /// popcount: 2 per word per pair).</summary>
    private static IReadOnlyList<BenchCase> HammingBench(Device d)
    {
        var r = new RandomTensors(41);
        (int Q, int N, int W)[] shapes = Small(d) ? [(2, 100, 4), (3, 400, 16)] : [(256, 100_000, 32), (1000, 100_000, 128), (1000,
            1_000_000, 128)];
        return shapes.Select(s => new BenchCase($"Q{s.Q} N{s.N} W{s.W} ({8 * s.W} bits) k10", s.N,
            new OpCall(new Dictionary<string, HostTensor>
            {
                ["query"] = Bytes(r, DType.U8, s.Q, s.W),
                ["db"] = Bytes(r, DType.U8, s.N,
                s.W)
            }, P("k", "10")),
            (double)s.N * s.W + (double)s.Q * s.W + 12.0 * s.Q * 10, 2.0 * s.Q * s.N * Math.Max(1, s.W / 8), Bk(s.Q, s.N))).ToList();
    }

    /// <summary>binary_search k = 10, rescore_multiplier 4, over a ubinary db: 256 × 100k × D 256 and 1000 × 1M × D 1024
    /// (the issue's "within 1.2× of hamming_topk alone"). Flops: the Hamming word operations plus 2·Q·40·D of rescoring.</summary>
    private static IReadOnlyList<BenchCase> BinarySearchBench(Device d)
    {
        var r = new RandomTensors(42);
        (int Q, int N, int D)[] shapes = Small(d) ? [(2, 100, 32), (3, 400, 100)] : [(256, 100_000, 256), (1000, 1_000_000, 1024)];
        return shapes.Select(s => new BenchCase($"Q{s.Q} N{s.N} D{s.D} k10 m4", s.N,
            new OpCall(new Dictionary<string, HostTensor>
            {
                ["query"] = r.Floats(DType.F32, -1, 1, s.Q, s.D),
                ["db"] = Packed(r, s.N,
                s.D, false)
            },
                P("k", "10", "rescore_multiplier", "4", "rescore", "true")),
            (double)s.N * ((s.D + 7) / 8) + 4.0 * s.Q * s.D + 12.0 * s.Q * 10,
            2.0 * s.Q * s.N * Math.Max(1, s.D / 64) + 2.0 * s.Q * 40 * s.D, Bk(s.Q, s.N))).ToList();
    }

    private static PreparedCall Stage(Device d, OpCall c, string op, Action<Func<string, DeviceTensor>, Func<string, DeviceTensor?>,
        Func<string, DeviceTensor>> launch)
    {
        var outs = OpRegistry.Find(op)!.Run(d, c);
        var ins = c.Inputs.ToDictionary(kv => kv.Key, kv => d.Upload(kv.Value));
        var os = outs.ToDictionary(kv => kv.Key, kv => d.Allocate(kv.Value.DType, kv.Value.Shape.ToArray()));
        Func<string, DeviceTensor> input = n => ins[n], output = n => os[n];
        Func<string, DeviceTensor?> optional = n => ins.GetValueOrDefault(n);
        return new PreparedCall(() => launch(input, optional, output), [.. ins.Values, .. os.Values]);
    }

    private static PreparedCall PrepareQuantize(Device d, OpCall c) => Stage(d, c, "quantize", (i, o, w) =>
        d.Quantize(i("embeddings"), w("out"), Quantization.ParsePrecision(c.Text("precision")), o("ranges"), o("calibration")));

    private static PreparedCall PrepareHamming(Device d, OpCall c) => Stage(d, c, "hamming_topk", (i, _, w) =>
        d.HammingTopk(i("query"), i("db"), w("index"), w("distance"), c.Int("k", 10)));

    private static PreparedCall PrepareBinarySearch(Device d, OpCall c) => Stage(d, c, "binary_search", (i, _, w) =>
        d.BinarySearch(i("query"), i("db"), w("index"), w("score"), c.Int("k", 10), c.Int("rescore_multiplier", 4), c.Bool("rescore",
            true)));
}
