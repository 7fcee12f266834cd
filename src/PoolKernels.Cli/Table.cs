using System.Text.Json;

namespace PoolKernels.Cli;

/// <summary>Where a command writes: results to <see cref="Out"/>, messages and progress to <see cref="Err"/>.</summary>
/// <param name="Out">Standard output: tables and JSON lines only.</param>
/// <param name="Err">Standard error: messages, warnings and progress.</param>
/// <param name="ShowProgress">Whether to draw a progress line on <see cref="Err"/> (an interactive terminal).</param>
internal sealed class Io(TextWriter Out, TextWriter Err, bool ShowProgress)
{
    public TextWriter Out { get; } = Out;
    public TextWriter Err { get; } = Err;
    public bool ShowProgress { get; } = ShowProgress;
    private int _progressWidth;

    /// <summary>Overwrites the progress line on stderr (nothing when not interactive; never on stdout).</summary>
    public void Progress(string text)
    {
        if (!ShowProgress) return;
        if (text.Length > 100) text = text[..100];
        Err.Write("\r" + text.PadRight(Math.Max(_progressWidth, text.Length)));
        _progressWidth = text.Length;
    }

    /// <summary>Clears the progress line.</summary>
    public void ProgressDone()
    {
        if (!ShowProgress || _progressWidth == 0) return;
        Err.Write("\r" + new string(' ', _progressWidth) + "\r");
        _progressWidth = 0;
    }
}

/// <summary>Plain-text tables and JSON lines.</summary>
internal static class Output
{
    public static void Table(TextWriter w, IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = rows.ToList();
        var widths = headers.Select((h, i) => Math.Max(h.Length, all.Count == 0 ? 0 : all.Max(r => r[i].Length))).ToArray();
        w.WriteLine(string.Join("  ", headers.Select((h, i) => h.PadRight(widths[i]))).TrimEnd());
        w.WriteLine(string.Join("  ", widths.Select(x => new string('-', x))));
        foreach (var r in all) w.WriteLine(string.Join("  ", r.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
    }

    public static void Json(TextWriter w, object value) => w.WriteLine(JsonSerializer.Serialize(value, Options));

    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static string Num(double v) => double.IsFinite(v)
        ? v.ToString(v != 0 && Math.Abs(v) < 1e-3 ? "0.00e+0" : "0.###", System.Globalization.CultureInfo.InvariantCulture)
        : v.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
