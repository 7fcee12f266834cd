namespace PoolKernels.Kernels.Training;

/// <summary>The hyper-parameters of one AdamW step, as plain numbers (ILGPU passes them by value).</summary>
internal struct AdamWParams
{
    /// <summary>Learning rate, β1, β2, eps, weight decay.</summary>
    public float Lr, Beta1, Beta2, Eps, WeightDecay;
    /// <summary>1 − β1^t and √(1 − β2^t) of this step t (computed in double on the host).</summary>
    public float Bc1, Bc2Sqrt;
}

/// <summary>
/// <c>adamw_step</c> (one step of torch.optim.AdamW, single-tensor, no amsgrad), reference in double per element:
/// param ← param·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; param ← param − (lr / (1 − β1^t))·m /
/// (√v / √(1 − β2^t) + eps). In place on param, exp_avg (m) and exp_avg_sq (v).
/// </summary>
internal static class AdamWReference
{
    /// <summary>Runs the step. Arguments are assumed validated.</summary>
    public static void Run(Span<float> param, ReadOnlySpan<float> grad, Span<float> m, Span<float> v, in AdamWParams p)
    {
        for (int i = 0; i < param.Length; i++)
        {
            double g = grad[i], x = param[i] * (1.0 - (double)p.Lr * p.WeightDecay);
            double mi = p.Beta1 * (double)m[i] + (1.0 - p.Beta1) * g, vi = p.Beta2 * (double)v[i] + (1.0 - p.Beta2) * g * g;
            x -= p.Lr / (double)p.Bc1 * mi / (Math.Sqrt(vi) / p.Bc2Sqrt + p.Eps);
            param[i] = (float)x; m[i] = (float)mi; v[i] = (float)vi;
        }
    }
}
