using System.Globalization;
using System.Text;

namespace PoolKernels.Evaluation;

/// <summary>Which synsets of WordNet a <see cref="WordNetTask"/> holds (see <see cref="WordNetTask.IsHeldOut"/>).</summary>
public enum WordNetSplit
{
    /// <summary>The synsets that are not held out (about 80%).</summary>
    Train,
    /// <summary>The held-out synsets: FNV-1a-64 of "pos:offset" mod 100 &lt; 20 (about 20%).</summary>
    HeldOut,
    /// <summary>Every synset with an example.</summary>
    All,
}

/// <summary>
/// One WordNet 3.0 synset: its part of speech (the data file's: n, v, a, r; adjective satellites 's' are 'a'), its
/// 8-digit offset as written in the file, its words, its definition (the gloss without the examples) and its example
/// sentences (the double-quoted pieces of the gloss, without the quotes or an attribution after them).
/// </summary>
public sealed record WordNetSynset(char Pos, string Offset, string[] Words, string Definition, string[] Examples)
{
    /// <summary>"pos:offset", e.g. "n:00001740": unique over the four data files, and what the split hashes.</summary>
    public string Key => $"{Pos}:{Offset}";
}

/// <summary>
/// The WordNet gloss/example retrieval task (issues 17 and 18): each example sentence of a synset is a query, the
/// synset's definition its one relevant document, and the definitions of all synsets of the split the corpus. Only
/// synsets with at least one example and a non-empty definition take part. The split is by synset, not by pair: a synset is held out when
/// FNV-1a-64 (offset basis 14695981039346656037, prime 1099511628211) of the UTF-8 bytes of "pos:offset" (e.g.
/// "v:00001740") mod 100 is below 20, so the same synsets are held out in every program that computes it
/// (Python: <c>h = 0xcbf29ce484222325; for b in key.encode(): h = ((h ^ b) * 0x100000001b3) % 2**64; h % 100 &lt; 20</c>).
/// Synsets are in file order: data.noun, data.verb, data.adj, data.adv, each in its file's order.
/// </summary>
public sealed class WordNetTask
{
    /// <summary>The data files read, in this order, with the part of speech of their synsets.</summary>
    public static readonly (string File, char Pos)[] DataFiles =
        [("data.noun", 'n'), ("data.verb", 'v'), ("data.adj", 'a'), ("data.adv", 'r')];

    /// <summary>Where Debian's <c>wordnet-base</c> installs the data files.</summary>
    public const string DefaultDirectory = "/usr/share/wordnet";

    /// <summary>The percentage of synsets held out.</summary>
    public const int HeldOutPercent = 20;

    /// <summary>The synsets of the split (each with at least one example), in file order.</summary>
    public required IReadOnlyList<WordNetSynset> Synsets { get; init; }

    /// <summary>The split loaded.</summary>
    public required WordNetSplit Split { get; init; }

    /// <summary>The queries: every example of every synset, synset by synset.</summary>
    public required IReadOnlyList<string> Queries { get; init; }

    /// <summary>The corpus: the definitions of <see cref="Synsets"/>, one per synset, in the same order.</summary>
    public required IReadOnlyList<string> Documents { get; init; }

    /// <summary>For each query, the index of its synset's document in <see cref="Documents"/>.</summary>
    public required IReadOnlyList<int> QueryDocument { get; init; }

    /// <summary>For each query, the indices of its relevant documents (here exactly one: its synset's).</summary>
    public IReadOnlyList<int[]> Relevance => QueryDocument.Select(d => new[] { d }).ToArray();

    /// <summary>
    /// Reads data.noun, data.verb, data.adj and data.adv from <paramref name="dir"/> and keeps the synsets of
    /// <paramref name="split"/> that have an example. <paramref name="limit"/> keeps at most that many of them, a fixed
    /// subset: the ones with the smallest FNV-1a-64 hash of their key (spread over the parts of speech), kept in file order.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No such folder, or none of the data files in it (the message says to
    /// install the Debian package wordnet-base).</exception>
    /// <exception cref="FormatException">A synset line that is not in the WordNet data format.</exception>
    public static WordNetTask Load(string dir, WordNetSplit split = WordNetSplit.HeldOut, int? limit = null)
    {
        ArgumentNullException.ThrowIfNull(dir);
        if (limit is < 0) throw new ArgumentOutOfRangeException(nameof(limit), limit, "limit must be >= 0.");
        var files = DataFiles.Select(f => (Path: Path.Combine(dir, f.File), f.Pos)).ToArray();
        if (!Directory.Exists(dir) || files.All(f => !File.Exists(f.Path)))
            throw new DirectoryNotFoundException($"no WordNet data files (data.noun, data.verb, data.adj, data.adv) in {dir}; install "
                + "WordNet 3.0 with 'apt-get install wordnet-base' (Debian/Ubuntu, into /usr/share/wordnet) or give the folder that "
                + "has them.");
        var synsets = new List<WordNetSynset>();
        foreach (var (path, pos) in files)
        {
            if (!File.Exists(path)) continue;
            int lineNumber = 0;
            foreach (var line in File.ReadLines(path))
            {
                lineNumber++;
                if (line.Length == 0 || line.StartsWith("  ", StringComparison.Ordinal)) continue; // the licence header
                WordNetSynset s;
                try { s = ParseLine(line, pos); }
                catch (FormatException e) { throw new FormatException($"{path}:{lineNumber}: {e.Message}", e); }
                if (s.Examples.Length > 0 && s.Definition.Length > 0 && InSplit(s, split)) synsets.Add(s);
            }
        }
        if (limit is { } n && n < synsets.Count)
        {
            var keep = synsets.Select((s, i) => (Hash: Fnv1a64(s.Key), Index: i)).OrderBy(x => x.Hash).ThenBy(x => x.Index).Take(n)
                .Select(x => x.Index).Order().ToArray();
            synsets = keep.Select(i => synsets[i]).ToList();
        }
        var queries = new List<string>();
        var queryDocument = new List<int>();
        for (int i = 0; i < synsets.Count; i++)
            foreach (var e in synsets[i].Examples) { queries.Add(e); queryDocument.Add(i); }
        return new WordNetTask
        {
            Synsets = synsets,
            Split = split,
            Queries = queries,
            Documents = synsets.Select(s => s.Definition).ToArray(),
            QueryDocument = queryDocument,
        };
    }

    private static bool InSplit(WordNetSynset s, WordNetSplit split) => split switch
    {
        WordNetSplit.All => true,
        WordNetSplit.HeldOut => IsHeldOut(s.Key),
        WordNetSplit.Train => !IsHeldOut(s.Key),
        _ => throw new ArgumentOutOfRangeException(nameof(split), split, "unknown split"),
    };

    /// <summary>Whether the synset "pos:offset" is held out: FNV-1a-64 of its UTF-8 bytes mod 100 &lt; 20.</summary>
    public static bool IsHeldOut(string key) => Fnv1a64(key) % 100 < HeldOutPercent;

    /// <summary>FNV-1a, 64 bits, of the UTF-8 bytes of <paramref name="text"/>.</summary>
    public static ulong Fnv1a64(string text)
    {
        ulong h = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes(text)) h = (h ^ b) * 1099511628211UL;
        return h;
    }

    /// <summary>Parses "train", "heldout" (or "held-out", "test") and "all".</summary>
    public static WordNetSplit ParseSplit(string text) => text.ToLowerInvariant() switch
    {
        "train" => WordNetSplit.Train,
        "heldout" or "held-out" or "held_out" or "test" => WordNetSplit.HeldOut,
        "all" => WordNetSplit.All,
        _ => throw new ArgumentException($"unknown split '{text}'; expected train, heldout or all.", nameof(text)),
    };

    /// <summary>
    /// Parses one synset line of a WordNet data file: <c>offset lex_filenum ss_type w_cnt (word lex_id){w_cnt} p_cnt
    /// ... | gloss</c> (w_cnt two hex digits). Words keep WordNet's underscores and adjective markers such as "(a)".
    /// </summary>
    public static WordNetSynset ParseLine(string line, char pos)
    {
        ArgumentNullException.ThrowIfNull(line);
        int bar = line.IndexOf(" | ", StringComparison.Ordinal);
        string head = bar < 0 ? line : line[..bar];
        string gloss = bar < 0 ? "" : line[(bar + 3)..];
        var f = head.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (f.Length < 4 || f[0].Length != 8 || !f[0].All(char.IsAsciiDigit))
            throw new FormatException($"not a WordNet synset line (expected an 8-digit offset first): '{Clip(line)}'");
        if (!int.TryParse(f[3], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int wordCount) || wordCount < 1
            || f.Length < 4 + 2 * wordCount)
            throw new FormatException($"synset {f[0]}: bad word count '{f[3]}': '{Clip(line)}'");
        var words = Enumerable.Range(0, wordCount).Select(i => f[4 + 2 * i]).ToArray();
        var (definition, examples) = SplitGloss(gloss);
        return new WordNetSynset(pos, f[0], words, definition, examples);
    }

    /// <summary>
    /// Splits a gloss into its definition and its examples. The gloss is cut at the semicolons outside double quotes;
    /// a piece that starts with a quote is an example (the text up to its last quote: an attribution after it, as in
    /// <c>"..."- Henry Miller</c>, is dropped), any other piece is part of the definition (the pieces joined with "; "),
    /// except that a definition piece ending in <c>: "example"</c> gives that example too (WordNet writes a few
    /// examples so). Quotes inside a definition that are not of that form (<c>as in "on the job"</c>) stay in it.
    /// </summary>
    public static (string Definition, string[] Examples) SplitGloss(string gloss)
    {
        ArgumentNullException.ThrowIfNull(gloss);
        var pieces = new List<string>();
        var current = new StringBuilder();
        bool quoted = false;
        foreach (char c in gloss)
        {
            if (c == '"') quoted = !quoted;
            if (c == ';' && !quoted) { pieces.Add(current.ToString()); current.Clear(); }
            else current.Append(c);
        }
        pieces.Add(current.ToString());
        var definition = new List<string>();
        var examples = new List<string>();
        foreach (var raw in pieces)
        {
            string piece = raw.Trim();
            if (piece.Length == 0) continue;
            if (piece[0] == '"')
            {
                int close = piece.LastIndexOf('"');
                AddExample(examples, close > 0 ? piece[1..close] : piece[1..]);
                continue;
            }
            int colon = piece.IndexOf(": \"", StringComparison.Ordinal);
            if (colon > 0 && piece[^1] == '"')
            {
                definition.Add(piece[..colon].TrimEnd());
                AddExample(examples, piece[(colon + 3)..^1]);
                continue;
            }
            definition.Add(piece);
        }
        return (string.Join("; ", definition), examples.ToArray());
    }

    private static void AddExample(List<string> examples, string text)
    {
        text = text.Trim();
        if (text.Length > 0) examples.Add(text);
    }

    private static string Clip(string line) => line.Length > 80 ? line[..80] + "..." : line;
}
