using System.Globalization;
using System.Text.RegularExpressions;
using Xmem.Tests.Shared;

namespace Xmem.TestChild.Commands;

/// <summary>A long-lived consumer of many slots under a mapping budget (tests/Xmem.Tests/Robustness/MappingBudgetTests.cs).</summary>
internal static partial class MappingBudgetCommand
{
    /// <summary><c>mapping-budget POOL BUDGET HELD PASSES</c>: sets XMEM_MAX_MAPPINGS=BUDGET, opens the pool, keeps
    /// guards on slots 0..HELD-1, then Gets every other slot in turn, PASSES times, checking each byte against
    /// <see cref="BytePattern"/> (seed = slot) and counting this process's mappings of the pool's data segments in
    /// /proc/self/maps after every Get. Then checks the held guards' bytes again and replies
    /// <c>ok gets=N max-mapped=M final-mapped=F</c>, or <c>bad ...</c> at the first wrong byte.</summary>
    [ChildCommand("mapping-budget", "POOL BUDGET HELD PASSES")]
    internal static int Run(ChildContext ctx)
    {
        string name = ctx.Arg(0);
        Environment.SetEnvironmentVariable("XMEM_MAX_MAPPINGS", ctx.Arg(1));
        int held = ctx.IntArg(2);
        int passes = ctx.IntArg(3);
        using BufferPool pool = BufferPool.Open(name);
        var keep = new List<BufferGuard>();
        for (int s = 0; s < held; s++)
        {
            keep.Add(pool.Get(s));
        }

        int max = 0;
        long gets = 0;
        for (int pass = 0; pass < passes; pass++)
        {
            for (int s = held; s < pool.Capacity; s++)
            {
                using (BufferGuard g = pool.Get(s))
                {
                    long bad = BytePattern.FirstMismatch(g.ReadOnlySpan, s);
                    if (bad >= 0)
                    {
                        ctx.Reply($"bad slot {s} byte {bad} in pass {pass}");
                        return 1;
                    }

                    max = Math.Max(max, DataMappings(name));
                }

                gets++;
            }
        }

        foreach (BufferGuard g in keep)
        {
            long bad = BytePattern.FirstMismatch(g.ReadOnlySpan, g.MetaIndex);
            if (bad >= 0)
            {
                ctx.Reply($"bad held slot {g.MetaIndex} byte {bad}");
                return 1;
            }

            g.Dispose();
        }

        ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"ok gets={gets} max-mapped={max} final-mapped={DataMappings(name)}"));
        _ = ctx.ReadInstruction();
        return 0;
    }

    /// <summary>Lines of /proc/self/maps that map a data segment (<c>….s&lt;k&gt;.g&lt;g&gt;</c>) of the pool.</summary>
    private static int DataMappings(string pool)
    {
        string marker = "xmem.v1." + pool + ".";
        int n = 0;
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            int at = line.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0 && DataSuffix().IsMatch(line.AsSpan(at + marker.Length)))
            {
                n++;
            }
        }

        return n;
    }

    [GeneratedRegex(@"^[0-9a-f]{16}\.s\d+\.g\d+")]
    private static partial Regex DataSuffix();
}
