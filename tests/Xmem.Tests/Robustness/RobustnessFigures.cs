using System.Globalization;

namespace Xmem.Tests.Robustness;

/// <summary>The figures of the robustness suite (kills survived, buffers lost, corrupt segments tried, crashes):
/// each test appends one line to <c>artifacts/robustness-figures.txt</c> at the repository root, so that a run's
/// numbers can be quoted in docs/robustness.md.</summary>
internal static class RobustnessFigures
{
    private static readonly Lock s_gate = new();

    public static string FilePath => Path.Combine(BuildPaths.RepoRoot, "artifacts", "robustness-figures.txt");

    /// <summary>Appends <c>UTC-time test key=value ...</c>; returns the line (for the test output).</summary>
    public static string Record(string test, params (string Key, object Value)[] figures)
    {
        string line = string.Create(CultureInfo.InvariantCulture,
            $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ssZ} {test} {string.Join(' ', figures.Select(f => string.Create(CultureInfo.InvariantCulture, $"{f.Key}={f.Value}")))}");
        lock (s_gate)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(FilePath)!);
            File.AppendAllLines(FilePath, [line]);
        }

        return line;
    }
}
