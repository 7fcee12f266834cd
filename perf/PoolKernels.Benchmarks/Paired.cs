using System.Diagnostics;
using System.Reflection;

namespace PoolKernels.Benchmarks;

/// <summary>
/// <c>--paired Class MethodA MethodB ...</c>: a same-process A/B for machines too noisy for BenchmarkDotNet's separate
/// processes (on the shared 2-core VM, two BDN runs of one class gave ORT/simd ratios of 0.78 and 1.46). Runs the class's
/// [GlobalSetup] once, then in each round every method after a 20 ms pause (ONNX Runtime's threads stop spinning) and
/// one untimed call, keeping the least of PER timed calls (default 3); per-round minima are paired, so slow drifts of
/// the machine cancel in the ratios. Prints each method's median round minimum and its speedup over the first method
/// (median and quartiles of the per-round ratios). ROUNDS (default 30) sets the rounds.
/// </summary>
internal static class Paired
{
    public static void Run(string[] args)
    {
        var type = typeof(Paired).Assembly.GetTypes().FirstOrDefault(t => t.Name == args[0])
            ?? throw new ArgumentException($"no benchmark class {args[0]}", nameof(args));
        var obj = Activator.CreateInstance(type)!;
        type.GetMethods().FirstOrDefault(m => m.GetCustomAttribute<BenchmarkDotNet.Attributes.GlobalSetupAttribute>() != null)?.Invoke(obj,
            null);
        var methods = args.Skip(1).Select(n => type.GetMethod(n) ?? throw new ArgumentException($"no method {type.Name}.{n}",
            nameof(args))).ToArray();
        int rounds = int.Parse(Environment.GetEnvironmentVariable("ROUNDS") ?? "30"),
            per = int.Parse(Environment.GetEnvironmentVariable("PER") ?? "3");
        var mins = methods.Select(_ => new List<double>()).ToArray();
        for (int w = 0; w < 3; w++) foreach (var m in methods) m.Invoke(obj, null);
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < methods.Length; i++)
            {
                Thread.Sleep(20);
                methods[i].Invoke(obj, null);
                double best = double.MaxValue;
                for (int k = 0; k < per; k++)
                {
                    var sw = Stopwatch.StartNew();
                    methods[i].Invoke(obj, null);
                    best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
                }
                mins[i].Add(best);
            }
        for (int i = 0; i < methods.Length; i++)
        {
            var ratios = mins[i].Zip(mins[0], (a, b) => b / a).Order().ToArray(); // > 1: faster than the first method
            Console.WriteLine($"{methods[i].Name,-24} median {Median(mins[i]),9:F3} ms  min {mins[i].Min(),9:F3} ms  speedup vs "
                + $"{methods[0].Name}: " +
                $"median {Median(ratios):F2} (quartiles {ratios[ratios.Length / 4]:F2}-{ratios[3 * ratios.Length / 4]:F2})");
        }
        (obj as IDisposable)?.Dispose();
    }

    private static double Median(IEnumerable<double> xs)
    {
        var a = xs.Order().ToArray();
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }
}
