using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Reflection;

namespace PoolKernels.Cli;

/// <summary>
/// The <c>poolkernels</c> command line (System.CommandLine): every command and option with its help, typed and
/// range-checked values, and one exit-code convention. <see cref="Run"/> is the whole program with its output on
/// the given writers, so tests call it in-process.
/// </summary>
public static class CliApp
{
    /// <summary>Exit code: every check passed (or the command has nothing to check).</summary>
    public const int ExitPass = 0;
    /// <summary>Exit code: a test vector or a conformance case failed.</summary>
    public const int ExitFailed = 1;
    /// <summary>Exit code: usage error: unknown command or option, a bad or out-of-range value, a stray argument, a
    /// path that does not exist, no vector files, an unknown or unavailable device.</summary>
    public const int ExitUsage = 2;

    private const string ExitCodes = "Exit codes: 0 pass, 1 a check or verify case failed, 2 usage error.";

    private const string DeviceHelp = "Device id: reference, simd, ilgpu-cpu, opencl:N, cuda:N, auto (first of cuda:0, a GPU opencl:N, "
        + "simd) or all; repeatable and comma-separated lists allowed";

    /// <summary>The tool's version: the CLI assembly's informational version.</summary>
    public static string Version =>
        typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(CliApp).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>Runs the tool: parses <paramref name="args"/>, runs the command, returns the exit code
    /// (<see cref="ExitPass"/>, <see cref="ExitFailed"/>, <see cref="ExitUsage"/>).</summary>
    /// <param name="args">The command line without the program name.</param>
    /// <param name="stdout">Results: tables, JSON lines, help and the version.</param>
    /// <param name="stderr">Errors, notes and progress.</param>
    /// <param name="showProgress">Draw progress lines on <paramref name="stderr"/> (for an interactive terminal).</param>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, bool showProgress = false)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        var io = new Io(stdout, stderr, showProgress);
        var root = Build(io);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0 && parsed.Action is ParseErrorAction)
        {
            foreach (var e in parsed.Errors) stderr.WriteLine($"poolkernels: {e.Message}");
            if (parsed.UnmatchedTokens.FirstOrDefault(LooksLikeDevice) is { } stray)
                stderr.WriteLine($"poolkernels: device ids are given with --device, e.g. --device {stray}");
            var command = parsed.CommandResult.Command;
            stderr.WriteLine($"Run 'poolkernels{(command == root ? "" : " " + command.Name)} --help' for usage.");
            return ExitUsage;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is ArgumentException or FileNotFoundException or DirectoryNotFoundException or FormatException)
        {
            io.ProgressDone();
            string message = e is ArgumentException { ParamName: { } param }
                ? e.Message.Replace($" (Parameter '{param}')", "", StringComparison.Ordinal) : e.Message;
            stderr.WriteLine($"poolkernels: {message}");
            return ExitUsage;
        }
    }

    private static bool LooksLikeDevice(string token) =>
        token is "reference" or "simd" or "ilgpu-cpu" or "auto" or "all"
        || token.StartsWith("cuda", StringComparison.Ordinal) || token.StartsWith("opencl", StringComparison.Ordinal);

    private static Command Build(Io io)
    {
        var root = new Command("poolkernels", "Fused pooling and attention kernels on reference, simd, ilgpu-cpu, opencl:N and cuda:N.\n"
            + ExitCodes);
        root.Options.Add(new HelpOption { Recursive = true });
        var version = new Option<bool>("--version") { Description = "Print the version and exit." };
        root.Options.Add(version);
        root.SetAction(p =>
        {
            if (p.GetValue(version)) { io.Out.WriteLine(Version); return ExitPass; }
            // No command: the overview, as before.
            new HelpAction().Invoke(p);
            return ExitPass;
        });

        root.Subcommands.Add(DevicesCommand(io));
        root.Subcommands.Add(CheckCommand(io));
        root.Subcommands.Add(VerifyCommand(io));
        root.Subcommands.Add(BenchCommand(io));
        root.Subcommands.Add(TuneCommand(io));
        root.Subcommands.Add(EmbedCommandLine(io));
        root.Subcommands.Add(SearchCommandLine(io));
        root.Subcommands.Add(WordNetCommandLine(io));
        var ops = new Command("ops", "List the implemented operations.");
        ops.SetAction(_ => Commands.Ops(io));
        root.Subcommands.Add(ops);
        return root;
    }

    private static Command DevicesCommand(Io io)
    {
        var json = Flag("--json", "One JSON object per line; absent backends as {available: false, reason}.");
        var c = new Command("devices", "List the usable devices, and every backend probed and not found with the reason.") { json };
        c.SetAction(p => Commands.Devices(io, p.GetValue(json)));
        return c;
    }

    private static Command CheckCommand(Io io)
    {
        var paths = new Argument<string[]>("PATH")
        {
            Arity = ArgumentArity.OneOrMore,
            Description = "Test vector files (.safetensors with __metadata__.op) or folders searched recursively",
        };
        RejectOptionLike(paths);
        var device = DeviceOption("all");
        var repeat = IntOption("--repeat", "Timed runs per file and device (median reported)", 1, 1);
        var json = Flag("--json", "One JSON object per line: file, device, op, pass, max_abs_err, max_rel_err, median_ms, message.");
        var c = new Command("check", "Run safetensors test vectors on devices and compare with their expected outputs.\n"
            + "Exit codes: 0 all pass, 1 a file failed (including files that are not test vectors or are malformed), "
            + "2 usage error (a path that does not exist, no .safetensors file found, unknown device).")
        { paths, device, repeat, json };
        c.SetAction(p => Commands.Check(io, p.GetValue(paths)!, p.GetValue(device)!, p.GetValue(repeat), p.GetValue(json)));
        return c;
    }

    private static Command VerifyCommand(Io io)
    {
        var device = DeviceOption("all");
        var seed = IntOption("--seed", "Seed of the randomized cases", 1, int.MinValue, "S");
        var op = Many("--op", "Operation to verify (repeatable, comma lists); default every implemented one", "NAME");
        var json = Flag("--json", "One JSON object per line: op, device, cases, failed, pass, max_abs_err, max_rel_err, message.");
        var c = new Command("verify", "Randomized conformance of every operation on every device against reference.\n"
            + "Exit codes: 0 all match, 1 an op x device failed, 2 usage error.")
        { device, seed, op, json };
        c.SetAction(p => Commands.Verify(io, p.GetValue(device)!, p.GetValue(seed), p.GetValue(op)!, p.GetValue(json)));
        return c;
    }

    private static Command BenchCommand(Io io)
    {
        var op = Many("--op", "Operation to time (repeatable, comma lists); default every one with workloads", "NAME");
        var device = DeviceOption("auto");
        var repeat = IntOption("--repeat", "Timed runs per workload", 10, 1);
        var json = Flag("--json", "One JSON object per line: op, device, shape, median_ms, gbps, gflops, pct_bandwidth, pct_peak.");
        var plot = new Option<string?>("--plot") { Description = "Draw time against size to this PNG file", HelpName = "FILE.png" };
        var c = new Command("bench", "Time operations at representative shapes against the device's measured bandwidth and FMA peak.\n"
            + "Exit codes: 0 done, 2 usage error.")
        { op, device, repeat, json, plot };
        c.SetAction(p =>
            PerfCommands.Bench(io, p.GetValue(op)!, p.GetValue(device)!, p.GetValue(repeat), p.GetValue(json), p.GetValue(plot)));
        return c;
    }

    private static Command TuneCommand(Io io)
    {
        var device = new Option<string>("--device") { Description = "The device to tune (one id)", HelpName = "ID", Required = true };
        var op = Many("--op", "Operation to tune (repeatable, comma lists); default every tunable one", "NAME");
        var budget = PositiveDoubleOption("--budget", "Search time in seconds, shared by the operations", 60, "SECONDS");
        var cache = Text("--cache", "Tuning cache file (default ~/.cache/poolkernels/tuning.json)", "FILE");
        var c = new Command("tune", "Search kernel launch and tiling parameters on a device; every candidate is checked against "
            + "reference first. Exit codes: 0 done, 2 usage error.")
        { device, op, budget, cache };
        c.SetAction(p => PerfCommands.Tune(io, p.GetValue(device)!, p.GetValue(op)!, p.GetValue(budget), p.GetValue(cache)));
        return c;
    }

    private static Command EmbedCommandLine(Io io)
    {
        var texts = new Argument<string[]>("TEXT") { Arity = ArgumentArity.ZeroOrMore, Description = "Sentences to embed" };
        RejectOptionLike(texts);
        var o = new EmbedCommand.Options
        {
            File = Text("--file", "Embed every non-empty line of this file too", "lines.txt"),
            Out = Text("--out", "Write the [N, D] F32 'embeddings' tensor here instead of JSON lines", "vectors.safetensors"),
            Device = Text("--device", "Device id for pooling (default auto)", "ID"),
            Mode = Text("--mode", "Pooling modes, e.g. mean or cls,max", "MODES"),
            Dims = OptionalIntOption("--dims", "Keep the first N dimensions (Matryoshka)", 1),
            NoNormalize = Flag("--no-normalize", "Do not L2-normalize the embeddings."),
            Model = Text("--model", "A BERT-style ONNX model (with --vocab)", "model.onnx"),
            Vocab = Text("--vocab", "WordPiece vocabulary of --model", "vocab.txt"),
            PoolingConfig = Text("--pooling-config", "A sentence-transformers 1_Pooling folder", "DIR"),
            Batch = IntOption("--batch", "Sentences per model call", 32, 1),
            MaxTokens = IntOption("--max-tokens", "Tokens per sentence, longer ones truncated", 256, 1),
            Head = Text("--head", "A multi_layer_pool head state dict (needs --heads)", "head.safetensors"),
            Heads = OptionalIntOption("--heads", "Attention heads of --head", 1),
            Layers = Text("--layers", "Layers fed to --head, e.g. all or -4..-1", "SPEC"),
            LayerMode = Text("--layer-mode", "Per-layer pooling for --head: mean or last_token", "MODE"),
            Precision = PrecisionOption(),
            Calibration = Text("--calibration", "int8/uint8 ranges: a safetensors file with 'ranges' F32 [2,D] or calibration "
                + "embeddings [M,D] (default: the ranges of the embedded texts)", "FILE.safetensors"),
        };
        var c = new Command("embed", "Sentence embeddings with the built-in all-MiniLM-L6-v2 or a BERT-style ONNX model, pooled on a "
            + "device. Exit codes: 0 done, 2 usage error.") { texts };
        foreach (var option in o.All) c.Options.Add(option);
        c.SetAction(p => EmbedCommand.Run(io, p, p.GetValue(texts)!, o));
        return c;
    }

    private static Command SearchCommandLine(Io io)
    {
        var queries = new Argument<string[]>("QUERY") { Arity = ArgumentArity.ZeroOrMore, Description = "Queries to answer" };
        RejectOptionLike(queries);
        var o = new SearchCommand.Options
        {
            Queries = Text("--queries", "Answer every non-empty line of this file too", "queries.txt"),
            Corpus = Text("--corpus", "Documents, one per non-empty line: embedded and indexed (with --embeddings: their texts only)",
                "lines.txt"),
            Embeddings = Text("--embeddings", "Index these F32 [N,D] 'embeddings' (e.g. of embed --out) instead of embedding --corpus",
                "FILE.safetensors"),
            Index = Text("--index", "Save the index built from --corpus/--embeddings here; without them, load this index",
                "FILE.safetensors"),
            Int8 = Flag("--int8", "Keep an int8 copy of the corpus in the index and rescore the binary candidates with it"),
            Calibration = Text("--calibration", "int8 ranges of a new --int8 index: 'ranges' [2,D] or calibration embeddings [M,D] "
                + "(default: the corpus's own)", "FILE.safetensors"),
            K = IntOption("--k", "Documents per query", 10, 1),
            RescoreMultiplier = IntOption("--rescore-multiplier", "Binary candidates per result that are rescored", 4, 1),
            NoRescore = Flag("--no-rescore", "Rank by Hamming distance only (score D - 2 x distance)."),
            Device = Text("--device", "Device id (default auto)", "ID"),
            Model = Text("--model", "A BERT-style ONNX model (with --vocab) for the corpus and the queries", "model.onnx"),
            Vocab = Text("--vocab", "WordPiece vocabulary of --model", "vocab.txt"),
            Dims = OptionalIntOption("--dims", "Keep the first N dimensions (Matryoshka)", 1),
            Batch = IntOption("--batch", "Sentences per model call", 32, 1),
            MaxTokens = IntOption("--max-tokens", "Tokens per sentence, longer ones truncated", 256, 1),
            Json = Flag("--json", "One JSON object per query: query, results [{rank, index, score, text}]; the summary to stderr."),
        };
        var c = new Command("search", "Semantic search over a binary index (ubinary bits, optionally int8) of a corpus, with "
            + "rescoring; prints the top documents of each query and queries/s. Exit codes: 0 done, 2 usage error.") { queries };
        foreach (var option in o.All) c.Options.Add(option);
        c.SetAction(p => SearchCommand.Run(io, p, p.GetValue(queries)!, o));
        return c;
    }

    private static Command WordNetCommandLine(Io io)
    {
        var o = new WordNetCommand.Options
        {
            Dir = Text("--dir", $"WordNet 3.0 folder with data.noun/verb/adj/adv (default {Evaluation.WordNetTask.DefaultDirectory}; "
                + "apt-get install wordnet-base)", "DIR"),
            Split = Text("--split", "Synsets searched: heldout (FNV-1a-64 of \"pos:offset\" mod 100 < 20; default), train or all", "SPLIT"),
            Limit = OptionalIntOption("--limit", "Keep a fixed subset of N synsets of the split (those with the smallest hash)", 1),
            Precision = Text("--precision", $"Corpus precisions, a comma list of {WordNetCommand.PrecisionNames} (binary and ubinary: "
                + "without and with rescoring; binary-int8: bits for the candidates, int8 for the rescoring; default "
                + "float32,int8,binary,binary-int8)", "LIST"),
            RescoreMultiplier = IntOption("--rescore-multiplier", "Binary candidates per result that are rescored", 4, 1),
            CalibrationLimit = OptionalIntOption("--calibration-limit", "int8/uint8 ranges from N train definitions (default all)", 1),
            Cache = Text("--cache", "Folder of the embeddings cache (default ~/.cache/poolkernels/wordnet)", "DIR"),
            NoCache = Flag("--no-cache", "Embed again and write no cache file."),
            Device = Text("--device", "Device id (default auto)", "ID"),
            Model = Text("--model", "A BERT-style ONNX model (with --vocab)", "model.onnx"),
            Vocab = Text("--vocab", "WordPiece vocabulary of --model", "vocab.txt"),
            Batch = IntOption("--batch", "Sentences per model call", 32, 1),
            MaxTokens = IntOption("--max-tokens", "Tokens per sentence, longer ones truncated", 256, 1),
            Json = Flag("--json", "One JSON object per method: method, bytes_per_vector, recall_at_1, recall_at_10, mrr_at_10, ..."),
        };
        var c = new Command("wordnet", "Retrieval quality of float32, int8 and binary corpora on WordNet 3.0: each example sentence of a "
            + "synset is a query, its definition the relevant document; prints recall@1, recall@10, MRR@10. Exit codes: 0 done, 2 usage "
            + "error.");
        foreach (var option in o.All) c.Options.Add(option);
        c.SetAction(p => WordNetCommand.Run(io, p, o));
        return c;
    }

    // ---------------------------------------------------------------- option builders

    private static Option<string> PrecisionOption() => new("--precision")
    {
        Description = $"Output precision: {QuantizeFiles.Precisions} (quantize after pooling and normalization)",
        HelpName = "PRECISION",
        DefaultValueFactory = _ => "float32",
        CustomParser = r =>
        {
            string t = Token(r);
            if (!QuantizeFiles.TryParsePrecision(t, out _))
                r.AddError($"--precision: unknown precision '{t}'; expected {QuantizeFiles.Precisions}");
            return t;
        },
    };

    /// <summary>A positional value that looks like an option (--x, -x) is an unknown option, not a path or a text
    /// (a file named so can be given as ./-x).</summary>
    private static void RejectOptionLike(Argument<string[]> argument) => argument.Validators.Add(r =>
    {
        foreach (var t in r.Tokens)
            if (t.Value.Length > 1 && t.Value[0] == '-' && !double.TryParse(t.Value, CultureInfo.InvariantCulture, out _))
                r.AddError($"Unrecognized option '{t.Value}'.");
    });

    private static Option<bool> Flag(string name, string description) => new(name) { Description = description };

    private static Option<string?> Text(string name, string description, string helpName) =>
        new(name) { Description = description, HelpName = helpName };

    private static Option<string[]> Many(string name, string description, string helpName) =>
        new(name) { Description = description, HelpName = helpName, Arity = ArgumentArity.ZeroOrMore, DefaultValueFactory = _ => [] };

    private static Option<string[]> DeviceOption(string fallback) => new("--device")
    {
        Description = DeviceHelp,
        HelpName = "ID",
        Arity = ArgumentArity.ZeroOrMore,
        DefaultValueFactory = _ => [fallback],
    };

    /// <summary>The option's value token (the last one when repeated).</summary>
    private static string Token(ArgumentResult r) => r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";

    private static int ParseInt(ArgumentResult r, string name, int min)
    {
        string t = Token(r);
        if (!int.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v))
        {
            r.AddError($"{name}: '{t}' is not an integer");
            return 0;
        }
        if (v < min) r.AddError($"{name}: {v} is out of range (must be >= {min})");
        return v;
    }

    private static Option<int> IntOption(string name, string description, int fallback, int min, string helpName = "N") => new(name)
    {
        Description = min == int.MinValue ? description : $"{description}, >= {min.ToString(CultureInfo.InvariantCulture)}",
        HelpName = helpName,
        DefaultValueFactory = _ => fallback,
        CustomParser = r => ParseInt(r, name, min),
    };

    private static Option<int?> OptionalIntOption(string name, string description, int min) => new(name)
    {
        Description = description,
        HelpName = "N",
        CustomParser = r => ParseInt(r, name, min),
    };

    private static Option<double> PositiveDoubleOption(string name, string description, double fallback, string helpName) => new(name)
    {
        Description = $"{description}, > 0",
        HelpName = helpName,
        DefaultValueFactory = _ => fallback,
        CustomParser = r =>
        {
            string t = Token(r);
            if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
            {
                r.AddError($"{name}: '{t}' is not a number");
                return 0;
            }
            if (!(v > 0)) r.AddError($"{name}: {t} is out of range (must be > 0)");
            return v;
        },
    };
}
