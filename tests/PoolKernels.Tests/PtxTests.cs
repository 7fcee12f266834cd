using System.Diagnostics;
using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using NUnit.Framework;
using PoolKernels.Kernels;

namespace PoolKernels.Tests;

/// <summary>
/// Every ILGPU kernel marked [GpuKernel] compiles to PTX (no GPU needed) and assembles with ptxas for sm_80
/// and sm_90; ptxas's register and shared-memory report is printed. ptxas comes from $POOLKERNELS_PTXAS or PATH;
/// with POOLKERNELS_REQUIRE_PTXAS=1 (set by .ci/run) its absence fails the test instead of skipping it.
/// </summary>
public class PtxTests
{
    public static IEnumerable<TestCaseData> Kernels() =>
        from m in typeof(GpuKernelAttribute).Assembly.GetTypes().SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
        from a in m.GetCustomAttributes<GpuKernelAttribute>()
        let closed = a.TypeArguments.Length == 0 ? m : m.MakeGenericMethod(a.TypeArguments)
        select new TestCaseData(closed)
            .SetName($"PTX {m.DeclaringType!.Name}.{m.Name}<{string.Join(",", a.TypeArguments.Select(t => t.Name))}>");

    private static string? Ptxas()
    {
        var env = Environment.GetEnvironmentVariable("POOLKERNELS_PTXAS");
        if (!string.IsNullOrEmpty(env) && File.Exists(env)) return env;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
            if (File.Exists(Path.Combine(dir, "ptxas"))) return Path.Combine(dir, "ptxas");
        return null;
    }

    [Test]
    public void EveryKernelFamilyIsMarked() => Assert.That(Kernels().Count(), Is.GreaterThanOrEqualTo(2));

    [TestCaseSource(nameof(Kernels))]
    public void AssemblesForSm80AndSm90(MethodInfo kernel)
    {
        var ptxas = Ptxas();
        if (ptxas is null)
        {
            if (TestDevices.Required("POOLKERNELS_REQUIRE_PTXAS"))
                Assert.Fail("POOLKERNELS_REQUIRE_PTXAS is set but no ptxas was found ($POOLKERNELS_PTXAS or PATH).");
            Assert.Ignore("ptxas not found: set POOLKERNELS_PTXAS (see .ci/install-deps.sh) to assemble the generated PTX.");
        }
        // The library's shared context (rooted for the process): a context per test case enumerated every OpenCL/CUDA device
        // again, and one whose creation or Dispose failed was left to its finalizer (ILGPU's Context finalizer can throw
        // NullReferenceException from ExtensionBase.Dispose, which kills the test host).
        var context = Devices.Context;
        bool explicitGroup = kernel.GetParameters().FirstOrDefault()?.ParameterType is not { } p || !p.Name!.StartsWith("Index",
            StringComparison.Ordinal);
        foreach (var (arch, name) in new[] { (CudaArchitecture.SM_80, "sm_80"), (CudaArchitecture.SM_90, "sm_90") })
        {
            using var backend = new PTXBackend(context, new CudaCapabilityContext(arch), arch, CudaInstructionSet.ISA_78, null);
            var entry = explicitGroup ? EntryPointDescription.FromExplicitlyGroupedKernel(kernel)
                : EntryPointDescription.FromImplicitlyGroupedKernel(kernel);
            var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
            var file = Path.Combine(Path.GetTempPath(), $"pk-{Guid.NewGuid():N}.ptx");
            File.WriteAllText(file, compiled.PTXAssembly);
            try
            {
                var psi = new ProcessStartInfo(ptxas, ["--gpu-name", name, "-v", file, "-o",
                    file + ".cubin"])
                { RedirectStandardError = true, RedirectStandardOutput = true };
                using var proc = Process.Start(psi)!;
                string err = proc.StandardError.ReadToEnd() + proc.StandardOutput.ReadToEnd();
                proc.WaitForExit();
                Assert.That(proc.ExitCode, Is.Zero, $"ptxas {name} failed:\n{err}");
                foreach (var line in err.Split('\n').Where(l => l.Contains("Used", StringComparison.Ordinal) || l.Contains("smem",
                    StringComparison.Ordinal)))
                    TestContext.Out.WriteLine($"{name}: {line.Trim()}");
            }
            finally { File.Delete(file); File.Delete(file + ".cubin"); }
        }
    }
}
