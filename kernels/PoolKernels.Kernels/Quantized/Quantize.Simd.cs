using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PoolKernels.Kernels.Quantized;

/// <summary>
/// <c>quantize</c>, managed and multi-threaded over blocks of 64 rows. int8/uint8 compute <see cref="QuantizeMath.Level"/>'s
/// double arithmetic 4 lanes at a time (the same bits as every other backend); binary packing compares 8 dimensions at a time (Vector256 x
/// &gt; 0, the lane mask bit-reversed into numpy
/// packbits order). Allocates only when a call needs more range scratch than any before it.
/// </summary>
internal static unsafe class QuantizeSimd
{
    private const int RowBlock = 64;
    private static readonly byte[] Rev = Enumerable.Range(0, 256).Select(b => QuantizeMath.Reverse((uint)b)).ToArray();

    /// <summary>Per-dimension ranges of [rows, dim] (see <see cref="QuantizeReference.Ranges"/>).</summary>
    public static int Ranges(ReadOnlySpan<float> data, int rows, int dim, Span<float> start, Span<float> end)
    {
        if (rows == 0) { start.Slice(0, dim).Clear(); end.Slice(0, dim).Clear(); return -1; }
        data.Slice(0, dim).CopyTo(start); data.Slice(0, dim).CopyTo(end);
        int bad = dim;
        for (int r = 0; r < rows; r++)
        {
            var row = data.Slice(r * dim, dim);
            for (int d = 0; d < dim; d++)
            {
                float x = row[d];
                if (!float.IsFinite(x) && d < bad) bad = d;
                if (x < start[d]) start[d] = x;
                if (x > end[d]) end[d] = x;
            }
        }
        return bad == dim ? -1 : bad;
    }

    /// <summary>int8/uint8 (<paramref name="pack"/> false) or binary/ubinary (true) of x [N,D] into output.</summary>
    public static void Run(ReadOnlySpan<float> x, ReadOnlySpan<float> start, ReadOnlySpan<float> end, Span<byte> output, int n, int dim,
        bool pack, bool signed, WorkerPool pool)
    {
        if (n == 0 || dim == 0) return;
        var job = Job.Cached ??= new();
        if (!pack)
        {
            // start and step per dimension in double, as QuantizeMath.Level computes them (the same bits)
            if (job.Scratch.Length < 2 * dim) job.Scratch = new double[2 * dim];
            for (int d = 0; d < dim; d++)
            {
                job.Scratch[d] = start[d];
                job.Scratch[dim + d] = ((double)end[d] - start[d]) / 255.0;
            }
        }
        fixed (float* px = x) fixed (byte* po = output) fixed (double* sc = job.Scratch)
        {
            job.X = px; job.StartD = sc; job.Step = sc + dim; job.Out = po; job.N = n; job.D = dim; job.Pack = pack; job.Signed = signed;
            pool.Run(job, (n + RowBlock - 1) / RowBlock);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X; internal double* StartD, Step; internal byte* Out; internal int N, D; internal bool Pack, Signed;
        internal double[] Scratch = [];

        public void Execute(int item, int worker)
        {
            int r0 = item * RowBlock, r1 = Math.Min(N, r0 + RowBlock);
            byte flip = Signed ? (byte)0x80 : (byte)0;
            if (!Pack)
            {
                for (int r = r0; r < r1; r++)
                {
                    float* row = X + (long)r * D; byte* o = Out + (long)r * D;
                    int d = 0;
                    if (Avx.IsSupported)
                    {
                        // 8 lanes: widen (vcvtps2pd), the double arithmetic, truncate (vcvttpd2dq), narrow to bytes
                        var top = Vector256.Create(255.0);
                        ulong flip8 = flip * 0x0101010101010101UL;
                        for (; d + 8 <= D; d += 8)
                        {
                            Vector128<int> Levels(int at)
                            {
                                var step = Avx.LoadVector256(Step + at);
                                var t = Avx.Divide(Avx.Subtract(Avx.ConvertToVector256Double(Sse.LoadVector128(row + at)),
                                    Avx.LoadVector256(StartD + at)), step);
                                var keep = Vector256.GreaterThan(t, Vector256<double>.Zero) & ~Vector256.Equals(step,
                                    Vector256<double>.Zero);
                                return Avx.ConvertToVector128Int32WithTruncation(Vector256.ConditionalSelect(keep, Avx.Min(t, top),
                                    Vector256<double>.Zero));
                            }
                            var pair = Vector128.Narrow(Levels(d).AsUInt32(), Levels(d + 4).AsUInt32());
                            *(ulong*)(o + d) = Vector128.Narrow(pair, pair).AsUInt64().ToScalar() ^ flip8;
                        }
                    }
                    else if (Vector256.IsHardwareAccelerated)
                    {
                        // t = (x − start)/step in double, 4 lanes; t > 0 ? min(t, 255) : 0 (NaN gives 0), truncated; step 0 gives 0
                        var top = Vector256.Create(255.0);
                        for (; d + 4 <= D; d += 4)
                        {
                            var step = Vector256.Load(Step + d);
                            var t = (Vector256.Create((double)row[d], row[d + 1], row[d + 2],
                                row[d + 3]) - Vector256.Load(StartD + d)) / step;
                            var keep = Vector256.GreaterThan(t, Vector256<double>.Zero) & ~Vector256.Equals(step, Vector256<double>.Zero);
                            var q = Vector256.ConvertToInt64(Vector256.ConditionalSelect(keep, Vector256.Min(t, top),
                                Vector256<double>.Zero));
                            o[d] = (byte)(q.GetElement(0) ^ flip); o[d + 1] = (byte)(q.GetElement(1) ^ flip);
                            o[d + 2] = (byte)(q.GetElement(2) ^ flip); o[d + 3] = (byte)(q.GetElement(3) ^ flip);
                        }
                    }
                    for (; d < D; d++)
                    {
                        double step = Step[d];
                        double t = step == 0 ? 0 : (row[d] - StartD[d]) / step;
                        o[d] = (byte)((t >= 255.0 ? 255 : t > 0 ? (int)t : 0) ^ flip);
                    }
                }
                return;
            }
            int w = (D + 7) / 8, full = D / 8;
            for (int r = r0; r < r1; r++)
            {
                float* row = X + (long)r * D; byte* o = Out + (long)r * w;
                int b = 0;
                if (Vector256.IsHardwareAccelerated)
                    for (; b < full; b++)
                        o[b] = (byte)(Rev[Vector256.GreaterThan(Vector256.Load(row + b * 8),
                            Vector256<float>.Zero).ExtractMostSignificantBits()] ^ flip);
                for (; b < w; b++)
                {
                    int v = 0;
                    for (int j = 0; j < 8 && b * 8 + j < D; j++) if (row[b * 8 + j] > 0) v |= 0x80 >> j;
                    o[b] = (byte)(v ^ flip);
                }
            }
        }
    }
}
