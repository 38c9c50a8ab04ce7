using System.Globalization;
using Xmem.Tests.Shared;
using Xunit.Abstractions;

namespace Xmem.Tests.Robustness;

/// <summary>
/// A long-lived consumer must never reach the kernel's limit on mappings (vm.max_map_count, about 65k): the mappings
/// it keeps for slots it no longer uses are bounded by XMEM_MAX_MAPPINGS (least recently used ones go first), and
/// memory under a live guard is never unmapped.
/// </summary>
public sealed class MappingBudgetTests(ITestOutputHelper output) : PoolTest
{
    private static int Field(string reply, string key)
    {
        string part = reply.Split(' ').Single(p => p.StartsWith(key + "=", StringComparison.Ordinal));
        return int.Parse(part[(key.Length + 1)..], CultureInfo.InvariantCulture);
    }

    [Fact]
    public void Consumer_GettingAThousandSlotsUnderABudgetOf64_KeepsAtMostBudgetPlusHeldMappingsAndReadsEveryByte()
    {
        const int Capacity = 1000, Budget = 64, Held = 8, Passes = 2;
        string name = NewName("budget");
        using BufferPool pool = BufferPool.Create(name, Capacity);
        int[] slots = pool.PreallocateCpu(4096, Capacity); // in flight: live while the consumer gets them
        foreach (int s in slots)
        {
            using BufferGuard g = pool.GetMut(s);
            BytePattern.Fill(g.Span, s);
        }

        using (TestChild child = TestChild.Start("mapping-budget", name, Budget.ToString(CultureInfo.InvariantCulture), Held.ToString(CultureInfo.InvariantCulture), Passes.ToString(CultureInfo.InvariantCulture)))
        {
            string reply = child.Expect("ok");
            output.WriteLine(RobustnessFigures.Record("mappingbudget", ("slots", Capacity), ("budget", Budget), ("held", Held), ("reply", reply.Replace(' ', ','))));
            Assert.Equal((Capacity - Held) * Passes, Field(reply, "gets"));
            // Before the budget every slot it ever got stayed mapped: 1000 here, and 65k+ kill a real consumer.
            Assert.InRange(Field(reply, "max-mapped"), Held + 1, Budget + Held + 1);
            Assert.InRange(Field(reply, "final-mapped"), 1, Budget);
            child.Send("exit");
            Assert.Equal(0, child.WaitForExit());
        }

        foreach (int s in slots)
        {
            Assert.Equal(0, pool.Release(s));
        }
    }
}
