using System.Globalization;
using Xmem.Interop;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Tests.Robustness;

/// <summary>
/// Open against automatic removal (docs/layout.md, "Removal"): a remover takes the removal lock (byte 0), CASes the
/// State Ready → Removing, checks every entry's liveness, and puts Ready back when one is alive. "An opener registers
/// its entry before it reads State, so either the remover sees the opener alive, or the opener sees Removing and
/// fails cleanly with 'not found' once the remover has finished". And a process may die at any instruction (crash
/// rules). So an Open of a pool that some process keeps alive must never fail with "not found".
/// </summary>
public sealed unsafe class PoolRemovalRaceTests : PoolTest
{
    private static long StateOffset => 12;

    private static long EntryStateOffset(int entry) => LayoutConstants.ProcessTableOffset + ((long)entry * LayoutConstants.ProcessEntrySize);

    private static void WriteState(string name, uint state)
    {
        using var seg = RawSegment.Open(Shm.ControlPath(name));
        Volatile.Write(ref ((PoolHeader*)seg.Base)->State, state);
    }

    /// <summary>
    /// The real race. This process keeps the (non-persistent) pool alive throughout; two children open and detach it
    /// in a loop. Every detach of a non-persistent pool runs the automatic remover, which marks the pool Removing for
    /// a moment and puts Ready back because other processes are alive. No Open may fail: the pool is never removed.
    /// </summary>
    [Fact]
    public void Open_of_a_pool_kept_alive_never_fails_while_other_processes_detach()
    {
        string name = NewName("openrace");
        using BufferPool pool = BufferPool.Create(name, capacity: 4);
        using TestChild a = TestChild.Start("robust-openloop", name, "3000");
        using TestChild b = TestChild.Start("robust-openloop", name, "3000");
        _ = a.Expect("ready");
        _ = b.Expect("ready");
        string ra = a.Expect("result");
        string rb = b.Expect("result");
        Assert.Equal(0, a.WaitForExit());
        Assert.Equal(0, b.WaitForExit());
        foreach (string r in new[] { ra, rb })
        {
            Assert.True(Field(r, "opened") > 0, r);
            Assert.True(Field(r, "notfound") == 0 && Field(r, "other") == 0, $"an Open of a pool that this process keeps alive failed: {r}");
        }

        Assert.Equal(LayoutConstants.PoolStateReady, (uint)Shm.ReadControl(name, StateOffset, 4));
    }

    /// <summary>
    /// Deterministic form of the race above: a remover holds the removal lock and has marked the pool Removing; an
    /// opener starts; the remover then sees the opener alive and gives up (Ready, lock released). The opener must
    /// attach (it registered before it read State, so the remover saw it), not fail with "not found".
    /// </summary>
    [Fact]
    public void Open_meeting_a_remover_that_gives_up_attaches()
    {
        string name = NewName("removergivesup");
        using BufferPool pool = BufferPool.Create(name, capacity: 4); // entry 0: the opener lands on entry 1
        using SafeFd remover = SegmentFile.TryOpen(PoolName.ControlObject(name), writable: true)!;
        Assert.True(Libc.TryLockByte(remover.Fd, LayoutConstants.RemovalLockByte));
        WriteState(name, LayoutConstants.PoolStateRemoving);
        using TestChild c = TestChild.Start("open", name);

        // The remover now checks liveness: wait until the opener is registered (or has given up already).
        Shm.WaitUntil(() => c.HasExited || (uint)Shm.ReadControl(name, EntryStateOffset(1), 4) != LayoutConstants.ProcessFree, "the opener registering");
        WriteState(name, LayoutConstants.PoolStateReady); // it saw a live process: it puts Ready back and gives up
        Libc.UnlockByte(remover.Fd, LayoutConstants.RemovalLockByte);

        string answer = c.ReadLine();
        Assert.True(answer == "opened 4", $"an Open that met a remover which gave up must attach; it answered '{answer}'");
        Assert.Equal(0, c.WaitForExit());
    }

    /// <summary>
    /// A remover killed right after its CAS Ready → Removing (its removal lock dies with it) leaves a pool that live
    /// processes still use marked Removing. Nothing puts Ready back while any process is attached, so every later
    /// Open fails with "not found" (and a Create of the name with "exists"): the name is lost until every process
    /// detaches. A new opener must attach to the live pool.
    /// </summary>
    [Fact]
    public void A_remover_killed_after_marking_the_pool_Removing_does_not_lock_openers_out()
    {
        string name = NewName("removerdied");
        using BufferPool pool = BufferPool.Create(name, capacity: 4);
        using BufferGuard g = pool.AcquireCpu(64); // the pool is in use by a live process
        WriteState(name, LayoutConstants.PoolStateRemoving); // what the dead remover left; its lock is gone

        using TestChild c = TestChild.Start("open", name);
        string answer = c.ReadLine();
        _ = c.WaitForExit();
        Assert.True(answer == "opened 4", $"an Open of a live pool whose remover died before putting Ready back must attach; it answered '{answer}'");
    }

    private static long Field(string result, string key)
    {
        foreach (string part in result.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part.StartsWith(key + "=", StringComparison.Ordinal))
            {
                return long.Parse(part[(key.Length + 1)..], CultureInfo.InvariantCulture);
            }
        }

        throw new Xunit.Sdk.XunitException($"no '{key}' in '{result}'");
    }
}
