using System.Text.RegularExpressions;

namespace Xmem.Tests;

/// <summary>
/// Every entry point of libxmem enters the fork gate before anything else (src/Xmem/Pool/ForkGate.cs): a call that
/// races a fork() must wait until the fork is over, or the child inherits a half-done call. The behaviour is tested
/// by ForkGateTests and tests/python/test_fork.py; this test keeps it true for every export, including one added
/// later: an export is either one call to a skeleton of src/Xmem.Native/Exports/Export.cs, each of which enters the
/// gate first, or a body whose first statement enters it.
/// </summary>
public sealed partial class NativeExportGateTests
{
    private const string GateStatement = "using ForkGate.Scope fork = ForkGate.Enter();";

    private static string NativeDir => Path.Combine(BuildPaths.RepoRoot, "src", "Xmem.Native");

    private static IEnumerable<string> Sources() =>
        Directory.EnumerateFiles(NativeDir, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                        && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal));

    // An [UnmanagedCallersOnly] method: its name, then either "=> expression;" or the first statement of its block.
    [GeneratedRegex(@"\[UnmanagedCallersOnly[^\]]*\]\s*(?:internal|private|public)\s+static\s+[\w\*<>, ]+?\s+(?<name>\w+)\s*\([^)]*\)\s*(?:=>\s*(?<expr>[^;]+);|\{\s*(?<first>[^;]*;))")]
    private static partial Regex EntryPoint();

    // A skeleton of Export.cs: an internal static int method, generic over its body, and its first statement (its
    // constraints hold no "=", so the match never runs on through an expression-bodied alias into the next method).
    [GeneratedRegex(@"internal\s+static\s+int\s+(?<name>\w+)<[^>]+>\([^)]*\)\s*(?:where[^{=]+)?\{\s*(?<first>[^;]*;)")]
    private static partial Regex Skeleton();

    // A skeleton's alias: an internal static int method, generic over its body, that is one call of another skeleton
    // (Export.OnPool(pool, body) => Run(new PoolCall<TBody>(pool, body))).
    [GeneratedRegex(@"internal\s+static\s+int\s+(?<name>\w+)<[^>]+>\([^)]*\)\s*(?:where[^=]+)?=>\s*(?<target>\w+)[<(]")]
    private static partial Regex SkeletonAlias();

    [GeneratedRegex(@"^Export\.(?<skeleton>\w+)\(")]
    private static partial Regex SkeletonCall();

    [Fact]
    public void EveryExport_EntersTheForkGate_FirstThing()
    {
        string exportCs = File.ReadAllText(Path.Combine(NativeDir, "Exports", "Export.cs"));
        Dictionary<string, string> skeletons = Skeleton().Matches(exportCs).ToDictionary(m => m.Groups["name"].Value, m => m.Groups["first"].Value.Trim());
        foreach (Match alias in SkeletonAlias().Matches(exportCs))
        {
            // An alias enters the gate exactly when the skeleton it calls does.
            Assert.True(skeletons.TryGetValue(alias.Groups["target"].Value, out string? first), $"Export.{alias.Groups["name"].Value} calls {alias.Groups["target"].Value}, which is no skeleton");
            skeletons[alias.Groups["name"].Value] = first;
        }

        Assert.Contains("OnPool", skeletons.Keys);
        Assert.All(skeletons, s => Assert.True(s.Value == GateStatement, $"skeleton Export.{s.Key} starts with '{s.Value}', not the fork gate"));

        var problems = new List<string>();
        int exports = 0;
        // The pthread_atfork handlers are the gate's own closing and opening, called by fork(), not by a caller.
        foreach (string file in Sources().Where(f => Path.GetFileName(f) != "ForkHandlers.cs"))
        {
            foreach (Match m in EntryPoint().Matches(File.ReadAllText(file)))
            {
                exports++;
                string name = m.Groups["name"].Value;
                if (m.Groups["expr"].Success)
                {
                    Match call = SkeletonCall().Match(m.Groups["expr"].Value.Trim());
                    if (!call.Success || !skeletons.ContainsKey(call.Groups["skeleton"].Value))
                    {
                        problems.Add($"{Path.GetFileName(file)}: {name} is '=> {m.Groups["expr"].Value.Trim()}', not a call to a skeleton of Export.cs");
                    }
                }
                else if (m.Groups["first"].Value.Trim() != GateStatement)
                {
                    problems.Add($"{Path.GetFileName(file)}: {name} starts with '{m.Groups["first"].Value.Trim()}', not the fork gate");
                }
            }
        }

        Assert.Empty(problems);
        // The 56 functions of xmem.h and the two DLPack deleters: the pattern found every entry point.
        Assert.True(exports == 58, $"found {exports} [UnmanagedCallersOnly] methods in {NativeDir}, not 58: a new one (update the count) or one the pattern no longer sees");
    }
}
