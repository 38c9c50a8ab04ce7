using System.Globalization;
using Xmem.Tests.Shared;

namespace Xmem.Tests.CrossProcess;

/// <summary>Many threads in several real processes acquire, get, add_ref, forget and release on one small pool for a
/// bounded time; no slot may be handed out twice, and everything must be free at the end.</summary>
public sealed class ConcurrencyTests(Xunit.Abstractions.ITestOutputHelper output) : PoolTest
{
    [Theory]
    [InlineData(4, 2, 3)]   // capacity 4: mostly full, many waits and recycles
    [InlineData(16, 2, 3)]  // room to spare: many gets on live slots
    public void ManyThreadsInSeveralProcesses_NeverHandOutASlotTwice(int capacity, int children, int threadsEach)
    {
        const int durationMs = 2000;
        using BufferPool pool = NewPool(capacity, tag: "stress");
        var kids = new List<TestChild>();
        try
        {
            for (int c = 0; c < children; c++)
            {
                TestChild kid = TestChild.Start("stress", pool.Name, threadsEach.ToString(CultureInfo.InvariantCulture), durationMs.ToString(CultureInfo.InvariantCulture), (c + 1).ToString(CultureInfo.InvariantCulture));
                kids.Add(kid);
            }

            foreach (TestChild kid in kids)
            {
                kid.Expect("ready");
            }

            foreach (TestChild kid in kids)
            {
                kid.Send("go");
            }

            // This process takes part too (tag 0).
            StressResult mine = StressWorker.Run(pool, threadsEach, TimeSpan.FromMilliseconds(durationMs), 0);
            var lines = new List<string> { "parent " + mine.ToLine() };
            var violations = new List<string>(mine.Violations);
            long acquired = mine.Acquired;
            foreach (TestChild kid in kids)
            {
                string line = kid.Expect("result");
                lines.Add($"child {kid.Pid} {line}");
                int exit = kid.WaitForExit();
                if (exit != 0)
                {
                    violations.Add($"child {kid.Pid} exited {exit}: {kid.StandardError}");
                }

                acquired += long.Parse(line.Split(' ')[0].Split('=')[1], CultureInfo.InvariantCulture);
            }

            lines.ForEach(output.WriteLine);
            Assert.True(violations.Count == 0, string.Join("\n", violations.Take(20).Concat(lines)));
            Assert.True(acquired > 0, "nothing was acquired: " + string.Join("\n", lines));

            // Every count is back to 0, every slot free and unlocked, and the whole pool can be acquired again.
            for (int i = 0; i < capacity; i++)
            {
                Assert.Equal(0, pool.RefCount(i));
                ulong w = Shm.SlotWordOf(pool.Name, capacity, i);
                Assert.Equal(Xmem.Layout.SlotWord.Free, Xmem.Layout.SlotWord.State(w));
                Assert.Equal(0, Xmem.Layout.SlotWord.Owner(w));
            }

            Assert.Equal(0, Shm.Waiters(pool.Name));
            var all = Enumerable.Range(0, capacity).Select(_ => pool.AcquireCpu(64)).ToList();
            Assert.Equal(capacity, all.Select(g => g.MetaIndex).Distinct().Count());
            all.ForEach(g => g.Dispose());
        }
        finally
        {
            kids.ForEach(k => k.Dispose());
        }
    }

    [Fact]
    public void ManyThreadsInOneProcess_TwoInstances_NeverHandOutASlotTwice()
    {
        using BufferPool a = NewPool(3, tag: "stress1");
        using BufferPool b = BufferPool.Open(a.Name);
        var ta = new BackgroundCall<StressResult>(() => StressWorker.Run(a, 3, TimeSpan.FromMilliseconds(1000), 1));
        StressResult rb = StressWorker.Run(b, 3, TimeSpan.FromMilliseconds(1000), 2);
        StressResult ra = ta.Join();
        Assert.True(ra.Violations.Count + rb.Violations.Count == 0, string.Join("\n", ra.Violations.Concat(rb.Violations).Take(20)));
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(0, a.RefCount(i));
        }
    }
}
