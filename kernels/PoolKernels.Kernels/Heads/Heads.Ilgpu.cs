using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Heads;

/// <summary>
/// The pooling-head building blocks, ILGPU (ilgpu-cpu, opencl, cuda).
/// <para>GEMM: y = x·Wᵀ + bias + residual, shared-memory tiled. The group is T×T threads, T the largest power of two
/// with T² ≤ the device's group size (T = 2 on a 4-thread ilgpu-cpu group, 16 on GPUs); a group owns a 4T × T output
/// tile, each thread 4 rows of one column, and walks k in steps of T, staging a 4T × T slice of x and a T × T slice of W
/// (read along k, so neighbouring threads read neighbouring addresses of both row-major inputs) in shared memory.
/// Out-of-range rows, columns and k steps load 0 and are not stored, so any shape runs.</para>
/// <para>LayerNorm: one group per row, mean then variance through <see cref="GroupReduce.Sum"/> (two passes, as the
/// reference). GEGLU and AddRows: one thread per output element.</para>
/// </summary>
internal static class HeadsIlgpu
{
    private const int MaxT = 16, RowsPerThread = 4;

    /// <summary>The GEMM tile side for <paramref name="accelerator"/>: largest power of two T with T² ≤ group limit, T ≤ 16.</summary>
    public static int TileSide(Accelerator accelerator)
    {
        int g = GroupReduce.GroupSize(accelerator), t = 1;
        while ((t * 2) * (t * 2) <= g && t * 2 <= MaxT) t *= 2;
        return t;
    }

    /// <summary>The GEMM kernel; grid = (ceil(m / 4T), ceil(n / T)) groups of T² threads.</summary>
    [GpuKernel]
    public static void GemmKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> bias, ArrayView<float> residual,
        ArrayView<float> y,
        int m, int n, int k, int t, int hasBias, int hasResidual)
    {
        var sa = SharedMemory.Allocate<float>(MaxT * RowsPerThread * MaxT);
        var sb = SharedMemory.Allocate<float>(MaxT * MaxT);
        int tid = Group.IdxX, tx = tid % t, ty = tid / t;
        int bm = t * RowsPerThread;
        int row0 = Grid.IdxX * bm, col0 = Grid.IdxY * t;
        float acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
        for (int k0 = 0; k0 < k; k0 += t)
        {
            // x slice [bm rows][t k]: thread loads RowsPerThread elements, consecutive tids along k.
            for (int e = tid; e < bm * t; e += t * t)
            {
                int r = e / t, kk = e % t;
                int gr = row0 + r, gk = k0 + kk;
                sa[r * t + kk] = gr < m && gk < k ? x[(long)gr * k + gk] : 0f;
            }
            {
                int c = tid / t, kk = tid % t;
                int gc = col0 + c, gk = k0 + kk;
                sb[kk * t + c] = gc < n && gk < k ? w[(long)gc * k + gk] : 0f;
            }
            Group.Barrier();
            for (int kk = 0; kk < t; kk++)
            {
                float bv = sb[kk * t + tx];
                acc0 += sa[(ty) * t + kk] * bv;
                acc1 += sa[(ty + t) * t + kk] * bv;
                acc2 += sa[(ty + 2 * t) * t + kk] * bv;
                acc3 += sa[(ty + 3 * t) * t + kk] * bv;
            }
            Group.Barrier();
        }
        int col = col0 + tx;
        if (col >= n) return;
        float bb = hasBias != 0 ? bias[col] : 0f;
        Store(y, residual, hasResidual, row0 + ty, col, n, m, acc0 + bb);
        Store(y, residual, hasResidual, row0 + ty + t, col, n, m, acc1 + bb);
        Store(y, residual, hasResidual, row0 + ty + 2 * t, col, n, m, acc2 + bb);
        Store(y, residual, hasResidual, row0 + ty + 3 * t, col, n, m, acc3 + bb);
    }

    private static void Store(ArrayView<float> y, ArrayView<float> residual, int hasResidual, int row, int col, int n, int m, float v)
    {
        if (row >= m) return;
        long at = (long)row * n + col;
        y[at] = hasResidual != 0 ? v + residual[at] : v;
    }

    /// <summary>Launches the GEMM; absent bias/residual are passed as any view with the flag 0.</summary>
    public static void Gemm(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> w,
        ArrayView<float> bias,
        ArrayView<float> residual, ArrayView<float> y, int m, int n, int k, bool hasBias, bool hasResidual)
    {
        if (m == 0 || n == 0) return;
        int t = TileSide(accelerator);
        var kernel = KernelCache.Get(accelerator, GemmKernel, a => a.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, int, int, int, int, int, int>(GemmKernel));
        var grid = new Index2D((m + t * RowsPerThread - 1) / (t * RowsPerThread), (n + t - 1) / t);
        kernel(stream, new KernelConfig(grid, new Index2D(t * t, 1)), x, w, bias, residual, y, m, n, k, t, hasBias ? 1 : 0,
            hasResidual ? 1 : 0);
    }

    /// <summary>LayerNorm, one group per row.</summary>
    [GpuKernel]
    public static void LayerNormKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ArrayView<float> y, int dim, float eps)
    {
        long row = (long)Grid.IdxX * dim;
        float s = 0;
        for (int i = Group.IdxX; i < dim; i += Group.DimX) s += x[row + i];
        float mean = GroupReduce.Sum(s) / dim;
        float ss = 0;
        for (int i = Group.IdxX; i < dim; i += Group.DimX) { float d = x[row + i] - mean; ss += d * d; }
        float rstd = XMath.Rsqrt(GroupReduce.Sum(ss) / dim + eps);
        for (int i = Group.IdxX; i < dim; i += Group.DimX) y[row + i] = (x[row + i] - mean) * rstd * w[i] + b[i];
    }

    /// <summary>Launches <see cref="LayerNormKernel"/> over <paramref name="rows"/> rows.</summary>
    public static void LayerNorm(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> x, ArrayView<float> w,
        ArrayView<float> b,
        ArrayView<float> y, int rows, int dim, float eps)
    {
        if (rows == 0 || dim == 0) return;
        var kernel = KernelCache.Get(accelerator, LayerNormKernel, a => a.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, int, float>(LayerNormKernel));
        kernel(stream, new KernelConfig(rows, GroupReduce.GroupSize(accelerator)), x, w, b, y, dim, eps);
    }

    /// <summary>GEGLU, one thread per output element: y[r,i] = h[r,i]·gelu(h[r,f+i]).</summary>
    [GpuKernel]
    public static void GegluKernel(Index1D i, ArrayView<float> h, ArrayView<float> y, int f)
    {
        long r = i / f, c = i % f;
        y[i] = h[r * 2 * f + c] * HeadsMath.Gelu(h[r * 2 * f + f + c]);
    }

    /// <summary>Launches <see cref="GegluKernel"/>.</summary>
    public static void Geglu(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> h, ArrayView<float> y, int rows, int f)
    {
        if (rows == 0 || f == 0) return;
        var kernel = KernelCache.Get(accelerator, GegluKernel, a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>,
            int>(GegluKernel));
        kernel(stream, checked(rows * f), h, y, f);
    }

    /// <summary>AddRows, one thread per element: y[b,r,c] = float(x[b,r,c]) + add[r,c] (when hasAdd).</summary>
    [GpuKernel(typeof(float), typeof(F32Reader))]
    [GpuKernel(typeof(ushort), typeof(F16Reader))]
    public static void AddRowsKernel<TRaw, TElem>(Index1D i, ArrayView<TRaw> x, ArrayView<float> add, ArrayView<float> y, int rows, int dim,
        int hasAdd)
        where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
    {
        float v = default(TElem).ToFloat(x[i]);
        if (hasAdd != 0) v += add[(i / dim) % rows * (long)dim + i % dim];
        y[i] = v;
    }

    /// <summary>Launches <see cref="AddRowsKernel{TRaw, TElem}"/> on byte views of x.</summary>
    public static void AddRows<TRaw, TElem>(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> x, ArrayView<float> add,
        ArrayView<float> y,
        int batch, int rows, int dim, bool hasAdd) where TRaw : unmanaged where TElem : struct, IElementReader<TRaw>
    {
        long count = (long)batch * rows * dim;
        if (count == 0) return;
        var kernel = KernelCache.Get(accelerator, AddRowsKernel<TRaw, TElem>, a => a.LoadAutoGroupedKernel<Index1D, ArrayView<TRaw>,
            ArrayView<float>,
            ArrayView<float>, int, int, int>(AddRowsKernel<TRaw, TElem>));
        kernel(stream, checked((int)count), x.Cast<TRaw>(), add, y, rows, dim, hasAdd ? 1 : 0);
    }
}

/// <summary>Signature of <see cref="HeadsIlgpu.AddRows{TRaw, TElem}"/> once its types are closed.</summary>
internal delegate void AddRowsLaunch(Accelerator accelerator, AcceleratorStream stream, ArrayView<byte> x, ArrayView<float> add,
    ArrayView<float> y,
    int batch, int rows, int dim, bool hasAdd);
