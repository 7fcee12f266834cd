using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Quantized;

/// <summary>
/// <c>quantize</c>, managed and multi-threaded over blocks of 64 rows. int8/uint8 use <see cref="QuantizeMath.Level"/>
/// (double arithmetic: the same bits as every other backend); binary packing compares 8 dimensions at a time (Vector256 x &gt; 0, the
/// lane mask bit-reversed into numpy
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
        fixed (float* px = x) fixed (float* ps = start) fixed (float* pe = end) fixed (byte* po = output)
        {
            var job = Job.Cached ??= new();
            job.X = px; job.Start = ps; job.End = pe; job.Out = po; job.N = n; job.D = dim; job.Pack = pack; job.Signed = signed;
            pool.Run(job, (n + RowBlock - 1) / RowBlock);
        }
    }

    private sealed class Job : IParallelJob
    {
        [ThreadStatic] internal static Job? Cached;
        internal float* X, Start, End; internal byte* Out; internal int N, D; internal bool Pack, Signed;

        public void Execute(int item, int worker)
        {
            int r0 = item * RowBlock, r1 = Math.Min(N, r0 + RowBlock);
            byte flip = Signed ? (byte)0x80 : (byte)0;
            if (!Pack)
            {
                for (int r = r0; r < r1; r++)
                {
                    float* row = X + (long)r * D; byte* o = Out + (long)r * D;
                    for (int d = 0; d < D; d++) o[d] = (byte)(QuantizeMath.Level(row[d], Start[d], End[d]) ^ flip);
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
