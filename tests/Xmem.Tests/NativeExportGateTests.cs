using System.Text.RegularExpressions;

namespace Xmem.Tests;

/// <summary>
/// Every way into libxmem's managed code from outside passes the fork gate before the runtime is entered
/// (src/Xmem.Native/Gate/fork_gate.c): a call that races a fork() must wait until the fork is over, before the
/// runtime attaches its thread or allocates for it, or the child inherits a runtime mid-way. The gate is in C, so
/// this test keeps the shape that guarantees it true for every entry point, including one added later: every
/// [UnmanagedCallersOnly] method is named xmemi_* (never an exported name, which the library's export list would
/// publish), and the only callers of an xmemi_* are C wrappers that enter the gate first: exports.g.c (generated from
/// include/xmem.h; tests/c/check_abi.py checks it is current and that no xmemi_* is exported) and dlpack_deleters.c.
/// The behaviour: tests/c/fork_gate_test.c, tests/c/fork_stress.c and tests/python/test_fork.py.
/// </summary>
public sealed partial class NativeExportGateTests
{
    private static string NativeDir => Path.Combine(BuildPaths.RepoRoot, "src", "Xmem.Native");

    private static IEnumerable<string> Sources() =>
        Directory.EnumerateFiles(NativeDir, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                        && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal));

    // An [UnmanagedCallersOnly] method: its attribute's arguments and its name.
    [GeneratedRegex(@"\[UnmanagedCallersOnly(?<args>[^\]]*)\]\s*(?:internal|private|public)\s+static\s+[\w\*<>, ]+?\s+(?<name>\w+)\s*\(")]
    private static partial Regex EntryPoint();

    [GeneratedRegex(@"EntryPoint\s*=\s*""(?<entry>\w+)""")]
    private static partial Regex EntryPointName();

    // A C function that enters the gate before anything else, then calls one managed implementation.
    [GeneratedRegex(@"\)\s*\{\s*xmem_thread_gate \*gate = xmem_gate_enter\(\);\s*(?:[\w\s\*]+=\s*)?(?<impl>xmemi_\w+)\(")]
    private static partial Regex GatedCall();

    [Fact]
    public void EveryManagedEntryPoint_IsReachedOnlyThroughAWrapperThatEntersTheForkGateFirst()
    {
        string gateDir = Path.Combine(NativeDir, "Gate");
        var gated = new HashSet<string>();
        var cCallers = new Dictionary<string, int>();
        foreach (string c in Directory.EnumerateFiles(gateDir, "*.c"))
        {
            string text = File.ReadAllText(c);
            foreach (Match m in GatedCall().Matches(text))
            {
                gated.Add(m.Groups["impl"].Value);
            }

            foreach (Match m in Regex.Matches(text, @"\b(xmemi_\w+)\("))
            {
                cCallers[m.Groups[1].Value] = cCallers.GetValueOrDefault(m.Groups[1].Value) + 1;
            }
        }

        var problems = new List<string>();
        int entryPoints = 0;
        // The pthread_atfork handlers run on the forking thread, called by fork() itself: the one thread a child has.
        foreach (string file in Sources().Where(f => Path.GetFileName(f) != "ForkHandlers.cs"))
        {
            foreach (Match m in EntryPoint().Matches(File.ReadAllText(file)))
            {
                entryPoints++;
                string name = m.Groups["name"].Value;
                Match entry = EntryPointName().Match(m.Groups["args"].Value);
                if (!entry.Success || !entry.Groups["entry"].Value.StartsWith("xmemi_", StringComparison.Ordinal))
                {
                    problems.Add($"{Path.GetFileName(file)}: {name} is reachable as '{(entry.Success ? entry.Groups["entry"].Value : "a pointer")}', not only as an xmemi_* behind the gate");
                    continue;
                }

                string impl = entry.Groups["entry"].Value;
                if (!gated.Contains(impl))
                {
                    problems.Add($"{Path.GetFileName(file)}: {impl} has no C wrapper that enters the fork gate first (src/Xmem.Native/Gate)");
                }
                else if (cCallers.GetValueOrDefault(impl) != 2)
                {
                    // Its declaration and its one gated call.
                    problems.Add($"{impl} is named {cCallers.GetValueOrDefault(impl)} times in src/Xmem.Native/Gate, not twice (its declaration and its gated call)");
                }
            }
        }

        Assert.Empty(problems);
        // The 56 functions of xmem.h and the two DLPack deleters: the pattern found every entry point.
        Assert.True(entryPoints == 59, $"found {entryPoints} [UnmanagedCallersOnly] methods in {NativeDir}, not 59: a new one (update the count) or one the pattern no longer sees");
    }
}
