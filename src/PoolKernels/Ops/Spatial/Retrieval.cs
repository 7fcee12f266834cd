using System.Runtime.InteropServices;
using PoolKernels.Kernels.Retrieval;
using static PoolKernels.SpatialArgs;

namespace PoolKernels;

/// <summary>
/// Retrieval on every backend (docs/operations.md end of "Spatial and region pooling"): <c>similarity_topk</c> and SuperGlobal's
/// <c>rerank_refine</c>. Ranking everywhere: higher score first, equal scores by lower db index, NaN scores last.
/// </summary>
public static class Retrieval
{
    /// <summary>Parses dot | cosine (true for cosine).</summary>
    public static bool ParseMetric(string metric) => metric switch
    {
        "dot" or "ip" => false,
        "cosine" or "cos" => true,
        _ => throw new ArgumentException($"Unknown metric '{metric}'; expected dot or cosine.", "metric"),
    };

    /// <summary>
    /// <c>similarity_topk</c>: query [Q,D] F32, db [N,D] F32|F16|BF16|I8|U8 (values taken as numbers: an int8-quantized corpus
    /// scores as its integers; accumulated in float32), 0 &lt;= k &lt;= N → index [Q,k] I64 and score [Q,k] F32, best
    /// first (ties: lower index). dot: q·x; cosine: q·x / (max(‖q‖,1e-12)·max(‖x‖,1e-12)) (F.normalize then dot).
    /// The simd backend keeps a running k-best heap per query while streaming db (no score row is materialized); the
    /// ILGPU backends score a chunk of queries at a time and select on the device.
    /// </summary>
    public static (HostTensor Index, HostTensor Score) SimilarityTopk(this Device device, HostTensor query, HostTensor db, int k,
        bool cosine = false)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(db);
        Check.Rank(query.Shape, 2, "query", "[Q,D]");
        using var scope = new HostScope(device);
        var idx = scope.Output(DType.I64, query.Shape[0], Math.Max(k, 0));
        var sc = scope.Output(DType.F32, query.Shape[0], Math.Max(k, 0));
        device.SimilarityTopk(scope.Bind(query), scope.Bind(db), idx, sc, k, cosine);
        return (scope.Result(idx), scope.Result(sc));
    }

    /// <summary><c>similarity_topk</c> on device tensors: index [Q,k] I64, score [Q,k] F32.</summary>
    public static void SimilarityTopk(this Device device, DeviceTensor query, DeviceTensor db, DeviceTensor index, DeviceTensor score,
        int k, bool cosine = false)
    {
        Devices(device, "query", query, "db", db, "index", index, "score", score);
        var (q, n, d) = QueryDb(query, db, anyDb: true);
        if (k < 0 || k > n) throw new ArgumentException($"k must be in [0, N] = [0, {n}] for db {Shape.Format(db.Shape)}, got {k}.", "k");
        ArgumentNullException.ThrowIfNull(index);
        Check.DTypeIs(index.DType, "index", "I64", index.DType == DType.I64);
        Shaped(index, "index", "[Q,k]", q, k);
        Output(score, q, k);
        var plan = new TopkPlan(query, db, index, score, q, n, d, k, cosine);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct TopkPlan(DeviceTensor query, DeviceTensor db, DeviceTensor index, DeviceTensor score, int q, int n, int d,
        int k,
        bool cosine) : IPlan
    {
        public void Reference()
        {
            var wideDb = db.DType == DType.F32 ? F(db) : new HostTensor(db.DType, db.ShapeArray, db.Host).To(DType.F32).AsSpan<float>();
            SimilarityTopkReference.Run(F(query), wideDb, MemoryMarshal.Cast<byte, long>(index.Host.Span), FOut(score), q, n, d, k, cosine);
        }

        public void Simd(CpuDevice cpu) =>
            SimilarityTopkSimd.Run(F(query), db.Host.Span, DbKind(db.DType), MemoryMarshal.Cast<byte, long>(index.Host.Span), FOut(score),
                q, n,
                d, k, cosine, cpu.Pool);

        public void Ilgpu(IlgpuScope s)
        {
            // the ILGPU kernels read float rows: a narrower corpus is widened on the device first
            var wide = db.DType == DType.F32 ? s.View<float>(db) : s.Temp<float>(Math.Max((long)n * d, 1));
            if (db.DType != DType.F32) DbElementsIlgpu.Widen(s.Accelerator, s.Stream, s.Bytes(db), wide, (long)n * d, DbKind(db.DType));
            SimilarityTopkIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(query), wide, s.View<long>(index), s.View<float>(score),
                s.Dummy.Cast<long>(), q, n, d, k, cosine, s.Temp<float>);
        }
    }

    /// <summary>
    /// <c>rerank_refine</c> (SuperGlobal reranking): query [Q,D] F32, db [N,D] F32 (rows L2-normalized; used as stored),
    /// m > 0 (400), k >= 0 (9), beta (0.15). For each query, with m' = min(m, N): T = the m' best db rows by q·x; for i in
    /// T its neighbours are the min(k, m'−1) other members of T with the largest x_i·x_j; d'_i = (x_i + Σ_j β(x_i·x_j)·x_j)
    /// / (1 + Σ_j β(x_i·x_j)); S1_i = q·d'_i; q' = the elementwise max of the d' of the min(k+1, m') best by S1;
    /// S_i = (S1_i + q'·d'_i)/2. Returns order [Q,m'] I64 (db indices by S, best first) and scores [Q,m'] F32 (S in that
    /// order). Ties everywhere: higher score first, then lower db index. Every backend runs the whole computation itself
    /// (ILGPU: on the device, chunked over queries).
    /// </summary>
    public static (HostTensor Order, HostTensor Scores) RerankRefine(this Device device, HostTensor query, HostTensor db, int m = 400,
        int k = 9, float beta = 0.15f)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(db);
        Check.Rank(query.Shape, 2, "query", "[Q,D]");
        Check.Rank(db.Shape, 2, "db", "[N,D]");
        int mp = Math.Min(Math.Max(m, 0), db.Shape[0]);
        using var scope = new HostScope(device);
        var order = scope.Output(DType.I64, query.Shape[0], mp);
        var scores = scope.Output(DType.F32, query.Shape[0], mp);
        device.RerankRefine(scope.Bind(query), scope.Bind(db), order, scores, m, k, beta);
        return (scope.Result(order), scope.Result(scores));
    }

    /// <summary><c>rerank_refine</c> on device tensors: order [Q,min(m,N)] I64, scores [Q,min(m,N)] F32.</summary>
    public static void RerankRefine(this Device device, DeviceTensor query, DeviceTensor db, DeviceTensor order, DeviceTensor scores,
        int m = 400, int k = 9, float beta = 0.15f)
    {
        Devices(device, "query", query, "db", db, "order", order, "scores", scores);
        var (q, n, d) = QueryDb(query, db);
        if (m <= 0) throw new ArgumentException($"m must be > 0, got {m}.", "m");
        if (k < 0) throw new ArgumentException($"k must be >= 0, got {k}.", "k");
        if (!float.IsFinite(beta)) throw new ArgumentException($"beta must be finite, got {beta}.", "beta");
        int mp = Math.Min(m, n);
        k = Math.Min(k, m); // k >= m' - 1 already means "every other member of T"; capping keeps k + 1 from wrapping
        ArgumentNullException.ThrowIfNull(order);
        ArgumentNullException.ThrowIfNull(scores);
        Check.DTypeIs(order.DType, "order", "I64", order.DType == DType.I64);
        Shaped(order, "order", "[Q,min(m,N)]", q, mp);
        Check.DTypeIs(scores.DType, "scores", "F32", scores.DType == DType.F32);
        Shaped(scores, "scores", "[Q,min(m,N)]", q, mp);
        var plan = new RerankPlan(query, db, order, scores, q, n, d, m, k, beta);
        Dispatch.Run(device, ref plan);
    }

    private readonly struct RerankPlan(DeviceTensor query, DeviceTensor db, DeviceTensor order, DeviceTensor scores, int q, int n,
        int d, int m,
        int k, float beta) : IPlan
    {
        public void Reference() =>
            RerankRefineReference.Run(F(query), F(db), MemoryMarshal.Cast<byte, long>(order.Host.Span), FOut(scores), q, n, d, m, k, beta);

        public void Simd(CpuDevice cpu) =>
            RerankRefineSimd.Run(F(query), F(db), MemoryMarshal.Cast<byte, long>(order.Host.Span), FOut(scores), q, n, d, m, k, beta,
                cpu.Pool);

        public void Ilgpu(IlgpuScope s) => RerankRefineIlgpu.Launch(s.Accelerator, s.Stream, s.View<float>(query), s.View<float>(db),
            s.View<long>(order), s.View<float>(scores), s.Dummy.Cast<long>(), q, n, d, m, k, beta, s.Temp<byte>);
    }

    private static int DbKind(DType t) => t switch
    {
        DType.F16 => DbElements.F16,
        DType.BF16 => DbElements.BF16,
        DType.I8 => DbElements.I8,
        DType.U8 => DbElements.U8,
        _ => DbElements.F32,
    };

    internal static (int Q, int N, int D) QueryDb(DeviceTensor query, DeviceTensor db, bool anyDb = false)
    {
        F32(query, "query");
        if (!anyDb) F32(db, "db");
        else
        {
            ArgumentNullException.ThrowIfNull(db, "db");
            Check.DTypeIs(db.DType, "db", "F32|F16|BF16|I8|U8", db.DType is DType.F32 or DType.F16 or DType.BF16 or DType.I8 or DType.U8);
        }
        Check.Rank(query.Shape, 2, "query", "[Q,D]");
        Check.Rank(db.Shape, 2, "db", "[N,D]");
        if (db.Shape[1] != query.Shape[1])
            throw new ArgumentException($"db {Shape.Format(db.Shape)} must have the same D as query {Shape.Format(query.Shape)}.", "db");
        return (query.Shape[0], db.Shape[0], query.Shape[1]);
    }
}
