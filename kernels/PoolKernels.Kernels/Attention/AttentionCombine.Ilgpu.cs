using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PoolKernels.Kernels.Attention;

/// <summary>
/// <c>attention_combine</c>, ILGPU (the rules of <see cref="AttentionCombineReference"/>, in float): one thread per output
/// element (r, d) (and per row when Ev = 0); each thread takes the row's max and weights over the N partials itself (N is
/// small, a few splits), so no shared memory or barrier is needed and the order of the sum is fixed.
/// </summary>
internal static class AttentionCombineIlgpu
{
    /// <summary>The kernel: index over R·max(Ev, 1); the thread with d = 0 also writes lse.</summary>
    [GpuKernel]
    public static void Kernel(Index1D index, ArrayView<float> outs, ArrayView<float> lses, ArrayView<float> output, ArrayView<float> lse,
        int n, int rows, int ev)
    {
        int w = XMath.Max(ev, 1);
        int r = index / w, d = index - r * w;
        float m = float.NegativeInfinity;
        bool nan = false;
        for (int i = 0; i < n; i++)
        {
            float l = lses[(long)i * rows + r];
            nan |= float.IsNaN(l);
            m = XMath.Max(m, l);
        }
        float o, ls;
        if (nan || float.IsPositiveInfinity(m)) { o = float.NaN; ls = float.NaN; }
        else if (m == float.NegativeInfinity) { o = 0f; ls = float.NegativeInfinity; }
        else
        {
            float s = 0f, acc = 0f;
            for (int i = 0; i < n; i++)
            {
                float l = lses[(long)i * rows + r];
                if (l == float.NegativeInfinity) continue;
                float e = XMath.Exp(l - m);
                s += e;
                if (d < ev) acc += e * outs[((long)i * rows + r) * ev + d];
            }
            o = acc / s; ls = m + XMath.Log(s);
        }
        if (d < ev) output[(long)r * ev + d] = o;
        if (d == 0) lse[r] = ls;
    }

    /// <summary>Launches <see cref="Kernel"/> on <paramref name="stream"/>.</summary>
    public static void Launch(Accelerator accelerator, AcceleratorStream stream, ArrayView<float> outs, ArrayView<float> lses,
        ArrayView<float> output, ArrayView<float> lse, int n, int rows, int ev)
    {
        long total = (long)rows * Math.Max(ev, 1);
        if (total == 0) return;
        var kernel = KernelCache.Get(accelerator, Kernel,
            a => a.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int,
                int>(Kernel));
        kernel(stream, checked((int)total), outs, lses, output, lse, n, rows, ev);
    }
}
