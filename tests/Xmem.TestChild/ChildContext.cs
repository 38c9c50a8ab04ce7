using System.Globalization;

namespace Xmem.TestChild;

/// <summary>What a command gets: its arguments, and the line protocol with the test (stdout is replies and
/// notices, one per line, flushed at once; stdin is the test's instructions, one per line).</summary>
internal sealed class ChildContext(string command, string[] args)
{
    /// <summary>The command word.</summary>
    public string Command { get; } = command;

    /// <summary>The arguments after the command word.</summary>
    public IReadOnlyList<string> Args { get; } = args;

    /// <summary>Argument <paramref name="i"/>; exits with a usage error when missing.</summary>
    public string Arg(int i) => i < Args.Count ? Args[i] : throw new ArgumentException($"{Command}: argument {i + 1} is missing.");

    public int IntArg(int i) => int.Parse(Arg(i), CultureInfo.InvariantCulture);

    public long LongArg(int i) => long.Parse(Arg(i), CultureInfo.InvariantCulture);

    /// <summary>Argument <paramref name="i"/>, or <paramref name="fallback"/> when absent.</summary>
    public string ArgOr(int i, string fallback) => i < Args.Count ? Args[i] : fallback;

    /// <summary>Writes one line to the test.</summary>
    public void Reply(string line)
    {
        Console.Out.WriteLine(line);
        Console.Out.Flush();
    }

    /// <summary>Reads the test's next instruction; null when the test closed stdin (or died).</summary>
    public string? ReadInstruction() => Console.In.ReadLine();

    /// <summary>The one-line form of an error: <c>error &lt;FullTypeName&gt;: &lt;message on one line&gt;</c>.</summary>
    public static string DescribeError(Exception e) =>
        $"error {e.GetType().FullName}: {e.Message.ReplaceLineEndings(" ")}";
}
