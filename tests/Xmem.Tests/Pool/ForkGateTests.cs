using Xmem.Core;
using Xmem.Pool;

namespace Xmem.Tests.Pool;

/// <summary>
/// The fork gate of the C ABI (<see cref="ForkGate"/>), driven in-process the way fork()'s atfork handlers drive it:
/// Close (prepare) waits for threads inside and holds new ones back until Open (parent). A .NET process cannot
/// fork; the forks themselves are tested from Python (tests/python/test_fork.py). Only threads that entered the gate
/// are affected, so closing it here does not disturb tests running in parallel.
/// </summary>
[Collection("ForkGate")] // one gate per process: these tests close it, so not two at once
public sealed class ForkGateTests : PoolTest
{
    private static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(60);

    [Fact]
    public void Close_waits_for_a_thread_inside_and_holds_new_entries_back_until_Open()
    {
        using var inside = new ManualResetEventSlim();
        using var leave = new ManualResetEventSlim();
        Thread holder = Start(() =>
        {
            using ForkGate.Scope scope = ForkGate.Enter();
            inside.Set();
            leave.Wait(Watchdog);
        });
        Assert.True(inside.Wait(Watchdog), "the holder never entered the gate");

        Thread close = Start(ForkGate.Close);
        bool opened = false;
        try
        {
            // Close cannot return while the holder is inside; waiting a little only gives a wrong Close the chance
            // to show itself (a correct one never returns here, however slow the machine).
            Assert.False(close.Join(TimeSpan.FromMilliseconds(300)), "Close returned while a thread was inside the gate");

            bool enteredLate = false;
            Thread late = Start(() =>
            {
                using ForkGate.Scope scope = ForkGate.Enter();
                Volatile.Write(ref enteredLate, true);
            });

            leave.Set();
            Assert.True(close.Join(Watchdog), "Close did not return once the gate was empty");
            Assert.True(holder.Join(Watchdog));
            Assert.False(Volatile.Read(ref enteredLate), "a thread entered the gate while it was closed");

            ForkGate.Open();
            opened = true;
            Assert.True(late.Join(Watchdog), "a thread held back at the closed gate was not let in by Open");
            Assert.True(Volatile.Read(ref enteredLate));
        }
        finally
        {
            leave.Set();
            if (!opened && close.Join(Watchdog))
            {
                ForkGate.Open();
            }
        }
    }

    [Fact]
    public void A_thread_sleeping_in_a_blocking_acquire_inside_the_gate_does_not_hold_Close_back()
    {
        using BufferPool pool = NewPool(1);
        BufferGuard only = pool.AcquireCpu(64);
        using var waiting = new ManualResetEventSlim();
        bool got = false;
        Thread blocked = Start(() =>
        {
            using ForkGate.Scope scope = ForkGate.Enter(); // as an export does
            waiting.Set();
            got = pool.TryAcquireCpu(64, Timeout.InfiniteTimeSpan, out BufferGuard? g);
            g?.Dispose();
        });
        Assert.True(waiting.Wait(Watchdog));

        Thread close = Start(ForkGate.Close);
        bool closed = close.Join(Watchdog);
        if (closed)
        {
            ForkGate.Open();
        }

        only.Dispose(); // frees the slot: the waiter wakes, steps back into the gate, and gets it
        Assert.True(blocked.Join(Watchdog), "the blocked acquire never returned");
        if (!closed && close.Join(Watchdog))
        {
            ForkGate.Open(); // leave the gate open for the other tests, whatever happened
        }

        Assert.True(closed, "Close waited on a thread asleep in a blocking acquire");
        Assert.True(got);
    }

    private static Thread Start(Action body)
    {
        var t = new Thread(() => body()) { IsBackground = true };
        t.Start();
        return t;
    }
}
