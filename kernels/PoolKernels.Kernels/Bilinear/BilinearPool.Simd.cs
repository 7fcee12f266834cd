using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PoolKernels.Kernels.Bilinear;

/// <summary>
/// <c>bilinear_pool</c>, managed SIMD: z = Σ_n x_n ⊗ y_n / count per batch row, a [Dx,N]·[N,Dy] product of two
/// row-major [N,·] matrices. Work items are (batch row, block of 12 rows of z). With AVX-512 a whole block runs a 12 × 32
/// register tile per 32 columns: per kept token n it loads y[n, j..j+31] (two vectors) and broadcasts x[n, i..i+11]
/// (24 independent FMAs, 24 zmm accumulators, nothing packed: both operands are read along their rows), then scales by
/// 1/count on the way out. Kept tokens are listed once per item (per-worker scratch), so masked tokens cost nothing.
/// The columns past the last multiple of 32 and a short last row block (and machines without AVX-512) accumulate each
/// output row with TensorPrimitives.MultiplyAdd. The signed square root follows in place, the L2 normalization per
/// batch row afterwards. No allocation in steady state.
/// <para>Measured (poolkernels bench, [32,784,512] self, same run): the row-wise MultiplyAdd alone reached 10-13% of
/// the FMA peak (each FMA loads and stores the output row); the register tile keeps z in registers for all N tokens.</para>
/// </summary>
internal static unsafe class BilinearPoolSimd
{
    private const int MR = 12, NR = 32;

    /// <summary>See <see cref="BilinearPoolReference.Run"/>.</summary>
    public static void Run<TMask>(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<TMask> mask, Span<float> output,
        int batch, int n, int dx, int dy, bool signedSqrt, bool normalize, WorkerPool? pool = null) where TMask : unmanaged
    {
        if (batch == 0 || dx == 0 || dy == 0) return;
        pool ??= WorkerPool.Shared;
        fixed (float* xp = x) fixed (float* yp = y) fixed (TMask* mp = mask) fixed (float* op = output)
        {
            var job = Job<TMask>.Cached ??= new();
            job.X = xp; job.Y = y.IsEmpty ? xp : yp; job.Mask = mask.IsEmpty ? null : mp; job.Out = op;
            job.N = n; job.Dx = dx; job.Dy = dy; job.SignedSqrt = signedSqrt;
            job.Blocks = (dx + MR - 1) / MR;
            pool.EnsureScratch(ref job.Kept, n);
            pool.Run(job, batch * job.Blocks);
            job.X = job.Y = job.Out = null;
        }
        if (normalize)
            for (int b = 0; b < batch; b++) Sequence.SequencePoolSimd.NormalizeInPlace(output.Slice(b * dx * dy, dx * dy));
    }

    /// <summary>sign(z)·√|z| in place.</summary>
    public static void SignedSqrt(Span<float> z, Span<float> tmp)
    {
        TensorPrimitives.Abs(z, tmp);
        TensorPrimitives.Sqrt(tmp, tmp);
        TensorPrimitives.CopySign(tmp, z, z);
    }

    private sealed class Job<TMask> : IParallelJob where TMask : unmanaged
    {
        [ThreadStatic] internal static Job<TMask>? Cached;
        internal float* X, Y, Out;
        internal TMask* Mask;
        internal int N, Dx, Dy, Blocks;
        internal bool SignedSqrt;
        internal int[]?[] Kept = [];

        public void Execute(int item, int worker)
        {
            int b = item / Blocks, i0 = item % Blocks * MR, i1 = Math.Min(Dx, i0 + MR);
            int[] kept = Kept[worker]!;
            int count = 0;
            for (int t = 0; t < N; t++)
                if (Mask == null || Elements.Keep(Mask[(long)b * N + t])) kept[count++] = t;
            float* xb = X + (long)b * N * Dx, yb = Y + (long)b * N * Dy, zb = Out + (long)b * Dx * Dy;
            if (count == 0)
            {
                new Span<float>(zb + (long)i0 * Dy, (i1 - i0) * Dy).Clear();
                return;
            }
            float inv = 1f / count;
            int j = 0;
            if (Vector512.IsHardwareAccelerated && i1 - i0 == MR)
                fixed (int* kp = kept)
                    for (; j + NR <= Dy; j += NR)
                        Tile(xb + i0, Dx, yb + j, Dy, kp, count, zb + (long)i0 * Dy + j, Dy, inv);
            if (j < Dy)
                for (int i = i0; i < i1; i++)
                {
                    var acc = new Span<float>(zb + (long)i * Dy + j, Dy - j);
                    acc.Clear();
                    for (int c = 0; c < count; c++)
                    {
                        long row = kept[c];
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(yb + row * Dy + j, Dy - j), xb[row * Dx + i], acc, acc);
                    }
                    TensorPrimitives.Multiply(acc, inv, acc);
                }
            if (!SignedSqrt) return;
            float* tmp = stackalloc float[256];
            var rows = new Span<float>(zb + (long)i0 * Dy, (i1 - i0) * Dy);
            for (int f = 0; f < rows.Length; f += 256)
            {
                int len = Math.Min(256, rows.Length - f);
                BilinearPoolSimd.SignedSqrt(rows.Slice(f, len), new Span<float>(tmp, len));
            }
        }
    }

    /// <summary>z[r, 0..31] = inv · Σ_c x[kept[c], r]·y[kept[c], 0..31] for r &lt; 12 (x rows <paramref name="ldx"/> apart,
    /// y rows <paramref name="ldy"/>, z rows <paramref name="ldz"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile(float* x, int ldx, float* y, int ldy, int* kept, int count, float* z, int ldz, float inv)
    {
        Vector512<float> c0_0 = default, c0_1 = default, c1_0 = default, c1_1 = default, c2_0 = default, c2_1 = default, c3_0 = default,
            c3_1 = default, c4_0 = default, c4_1 = default, c5_0 = default, c5_1 = default, c6_0 = default, c6_1 = default, c7_0 = default,
            c7_1 = default, c8_0 = default, c8_1 = default, c9_0 = default, c9_1 = default, c10_0 = default, c10_1 = default,
            c11_0 = default, c11_1 = default;
        for (int c = 0; c < count; c++)
        {
            long row = kept[c];
            float* a = x + row * ldx, bp = y + row * ldy;
            var b0 = Vector512.Load(bp); var b1 = Vector512.Load(bp + 16);
            Vector512<float> s;
            s = Vector512.Create(a[0]); c0_0 = Vector512.FusedMultiplyAdd(s, b0, c0_0); c0_1 = Vector512.FusedMultiplyAdd(s, b1, c0_1);
            s = Vector512.Create(a[1]); c1_0 = Vector512.FusedMultiplyAdd(s, b0, c1_0); c1_1 = Vector512.FusedMultiplyAdd(s, b1, c1_1);
            s = Vector512.Create(a[2]); c2_0 = Vector512.FusedMultiplyAdd(s, b0, c2_0); c2_1 = Vector512.FusedMultiplyAdd(s, b1, c2_1);
            s = Vector512.Create(a[3]); c3_0 = Vector512.FusedMultiplyAdd(s, b0, c3_0); c3_1 = Vector512.FusedMultiplyAdd(s, b1, c3_1);
            s = Vector512.Create(a[4]); c4_0 = Vector512.FusedMultiplyAdd(s, b0, c4_0); c4_1 = Vector512.FusedMultiplyAdd(s, b1, c4_1);
            s = Vector512.Create(a[5]); c5_0 = Vector512.FusedMultiplyAdd(s, b0, c5_0); c5_1 = Vector512.FusedMultiplyAdd(s, b1, c5_1);
            s = Vector512.Create(a[6]); c6_0 = Vector512.FusedMultiplyAdd(s, b0, c6_0); c6_1 = Vector512.FusedMultiplyAdd(s, b1, c6_1);
            s = Vector512.Create(a[7]); c7_0 = Vector512.FusedMultiplyAdd(s, b0, c7_0); c7_1 = Vector512.FusedMultiplyAdd(s, b1, c7_1);
            s = Vector512.Create(a[8]); c8_0 = Vector512.FusedMultiplyAdd(s, b0, c8_0); c8_1 = Vector512.FusedMultiplyAdd(s, b1, c8_1);
            s = Vector512.Create(a[9]); c9_0 = Vector512.FusedMultiplyAdd(s, b0, c9_0); c9_1 = Vector512.FusedMultiplyAdd(s, b1, c9_1);
            s = Vector512.Create(a[10]); c10_0 = Vector512.FusedMultiplyAdd(s, b0, c10_0); c10_1 = Vector512.FusedMultiplyAdd(s, b1, c10_1);
            s = Vector512.Create(a[11]); c11_0 = Vector512.FusedMultiplyAdd(s, b0, c11_0); c11_1 = Vector512.FusedMultiplyAdd(s, b1, c11_1);
        }
        var sc = Vector512.Create(inv);
        (c0_0 * sc).Store(z + 0 * ldz); (c0_1 * sc).Store(z + 0 * ldz + 16);
        (c1_0 * sc).Store(z + 1 * ldz); (c1_1 * sc).Store(z + 1 * ldz + 16);
        (c2_0 * sc).Store(z + 2 * ldz); (c2_1 * sc).Store(z + 2 * ldz + 16);
        (c3_0 * sc).Store(z + 3 * ldz); (c3_1 * sc).Store(z + 3 * ldz + 16);
        (c4_0 * sc).Store(z + 4 * ldz); (c4_1 * sc).Store(z + 4 * ldz + 16);
        (c5_0 * sc).Store(z + 5 * ldz); (c5_1 * sc).Store(z + 5 * ldz + 16);
        (c6_0 * sc).Store(z + 6 * ldz); (c6_1 * sc).Store(z + 6 * ldz + 16);
        (c7_0 * sc).Store(z + 7 * ldz); (c7_1 * sc).Store(z + 7 * ldz + 16);
        (c8_0 * sc).Store(z + 8 * ldz); (c8_1 * sc).Store(z + 8 * ldz + 16);
        (c9_0 * sc).Store(z + 9 * ldz); (c9_1 * sc).Store(z + 9 * ldz + 16);
        (c10_0 * sc).Store(z + 10 * ldz); (c10_1 * sc).Store(z + 10 * ldz + 16);
        (c11_0 * sc).Store(z + 11 * ldz); (c11_1 * sc).Store(z + 11 * ldz + 16);
    }
}
