using PoolKernels;
using PoolKernels.Cli;
using PoolKernels.Verification;

const string Usage = """
poolkernels — fused pooling and attention kernels on reference, simd, ilgpu-cpu, opencl:N and cuda:N

usage:
  poolkernels devices [--json]
  poolkernels check PATH... [--device ID|all] [--repeat N] [--json]
  poolkernels verify [--device ID|all] [--seed S] [--op NAME]... [--json]
  poolkernels bench [--op NAME]... [--device ID|all] [--repeat N] [--json] [--plot FILE.png]
  poolkernels tune --device ID [--op NAME]... [--budget SECONDS] [--cache FILE]
  poolkernels embed "text"... [--file lines.txt] [--out vectors.safetensors] [--device ID] [--mode MODES]
                   [--dims N] [--no-normalize] [--model model.onnx --vocab vocab.txt] [--pooling-config DIR]
                   [--batch N] [--max-tokens N] [--head head.safetensors --heads N [--layers SPEC] [--layer-mode mean|last_token]]
  poolkernels ops

Device ids: reference, simd, ilgpu-cpu, opencl:N, cuda:N, auto (first of cuda:0, a GPU opencl:N, simd), all.
""";

try
{
    if (args.Length == 0 || args[0] is "-h" or "--help" or "help") { Console.WriteLine(Usage); return 0; }
    var rest = args.Skip(1);
    return args[0] switch
    {
        "devices" => Commands.Devices(new Args(rest, "json")),
        "check" => Commands.Check(new Args(rest, "json")),
        "verify" => Commands.Verify(new Args(rest, "json")),
        "ops" => Commands.Ops(),
        "bench" => PerfCommands.Bench(new Args(rest, "json")),
        "tune" => PerfCommands.Tune(new Args(rest)),
        "embed" => EmbedCommand.Run(new Args(rest, "no-normalize")),
        _ => throw new ArgumentException($"Unknown command '{args[0]}'.\n{Usage}"),
    };
}
catch (Exception e) when (e is ArgumentException or FileNotFoundException or DirectoryNotFoundException or FormatException)
{
    Console.Error.WriteLine($"poolkernels: {e.Message}");
    return 2;
}

namespace PoolKernels.Cli
{
    internal static class Commands
    {
        public static int Devices(Args a)
        {
            a.RejectUnknown("json");
            var list = Device.List();
            if (a.Flag("json")) { foreach (var d in list) Output.Json(new { id = d.Id, name = d.Name, kind = d.Kind.ToString().ToLowerInvariant(), memory_bytes = d.MemoryBytes, compute_units = d.ComputeUnits, gpu = d.IsGpu }); return 0; }
            Output.Table(["id", "name", "memory", "compute units"],
                list.Select(d => (IReadOnlyList<string>)[d.Id, d.Name, $"{d.MemoryBytes / (1 << 20)} MiB", d.ComputeUnits.ToString(System.Globalization.CultureInfo.InvariantCulture)]));
            return 0;
        }

        public static int Ops()
        {
            foreach (var op in OpRegistry.All.Keys) Console.WriteLine(op);
            return 0;
        }

        /// <summary>Device ids named by --device: one id, "all" (every device present), default all.</summary>
        private static List<string> DeviceIds(Args a, string fallback)
        {
            var ids = a.All("device").DefaultIfEmpty(fallback).SelectMany(s => s.Split(',')).ToList();
            return ids.Contains("all") ? Device.List().Select(d => d.Id).ToList() : ids;
        }

        public static int Check(Args a)
        {
            a.RejectUnknown("device", "repeat", "json");
            if (a.Positional.Count == 0) throw new ArgumentException("check needs at least one vector file or folder.");
            var files = VectorRunner.Expand(a.Positional);
            int repeat = Math.Max(1, a.Int("repeat", 1));
            bool json = a.Flag("json");
            var rows = new List<IReadOnlyList<string>>();
            int failed = 0;
            foreach (var id in DeviceIds(a, "all"))
            {
                using var device = Device.Open(id);
                foreach (var file in files)
                {
                    var r = VectorRunner.Run(file, device, repeat);
                    if (!r.Pass) failed++;
                    string name = Path.GetRelativePath(Environment.CurrentDirectory, file);
                    if (json) Output.Json(new { file = name, device = r.Device, op = r.Op, pass = r.Pass, max_abs_err = r.MaxAbsErr, max_rel_err = r.MaxRelErr, median_ms = r.MedianMs, message = r.Message });
                    else rows.Add([name, r.Device, r.Pass ? "pass" : "FAIL", Output.Num(r.MaxAbsErr), Output.Num(r.MaxRelErr), Output.Num(r.MedianMs), r.Message]);
                }
            }
            if (!json)
            {
                Output.Table(["file", "device", "result", "max abs err", "max rel err", "median ms", "note"], rows);
                Console.WriteLine($"{rows.Count - failed} passed, {failed} failed");
            }
            return failed == 0 ? 0 : 1;
        }

        public static int Verify(Args a)
        {
            a.RejectUnknown("device", "seed", "op", "json");
            int seed = a.Int("seed", 1);
            bool json = a.Flag("json");
            var ops = a.All("op").Count > 0 ? a.All("op").SelectMany(s => s.Split(',')).ToList() : OpRegistry.All.Keys.ToList();
            foreach (var op in ops)
                if (OpRegistry.Find(op) is null) throw new ArgumentException($"Unknown operation '{op}'. Implemented: {string.Join(", ", OpRegistry.All.Keys)}.");
            using var reference = Device.Open("reference");
            var rows = new List<IReadOnlyList<string>>();
            int failed = 0;
            foreach (var id in DeviceIds(a, "all"))
            {
                using var device = id == "reference" ? Device.Open("reference") : Device.Open(id);
                foreach (var op in ops)
                {
                    var r = Conformance.Run(OpRegistry.All[op], device, reference, seed);
                    if (r.Failed > 0) failed++;
                    if (json) Output.Json(new { op = r.Op, device = r.Device, cases = r.Cases, failed = r.Failed, pass = r.Failed == 0, max_abs_err = r.MaxAbsErr, max_rel_err = r.MaxRelErr, message = r.Message });
                    else rows.Add([r.Op, r.Device, r.Failed == 0 ? "pass" : "FAIL", $"{r.Cases - r.Failed}/{r.Cases}", Output.Num(r.MaxAbsErr), Output.Num(r.MaxRelErr), r.Message]);
                }
            }
            if (!json)
            {
                Output.Table(["op", "device", "result", "cases", "max abs err", "max rel err", "note"], rows);
                Console.WriteLine(failed == 0 ? "all operations match the reference on every device" : $"{failed} op x device combinations FAILED");
            }
            return failed == 0 ? 0 : 1;
        }
    }
}
