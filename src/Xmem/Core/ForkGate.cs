using Xmem.SharedMemory;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xmem.Interop;

namespace Xmem.Core;

/// <summary>
/// Makes fork() safe for processes that call xmem through its C ABI (C, Python): the gate every export passes, which
/// fork's prepare handler closes and drains, and the fork generation that tells objects inherited through fork from
/// objects made in the process itself.
/// </summary>
/// <remarks>
/// A child made by fork() has one thread, the one that forked. Had any other thread been running managed code then
/// (inside an export, or a finalizer) or a garbage collection been under way, the child's copy of the runtime would
/// wait for that thread for ever at its first collection or its first call. So the prepare handler (managed code
/// itself, which cannot start while a collection runs) closes the gate and waits until no thread is inside it, and
/// until the finalizers queued so far have run; threads that arrive meanwhile wait outside, in the kernel, until the
/// parent handler opens the gate again. Waits without a bound inside xmem (a blocking acquire, a channel receive)
/// step out of the gate around their futex sleep (<see cref="LeaveForWait"/>), so they never hold a fork back.
///
/// Invariants:
/// - <c>Closed</c> counts the forks under way (prepare to parent handler) in this process; 0 in a new child.
/// - A stripe counts the threads inside the gate that were assigned to it; a thread counts itself once, however
///   deeply it nests (<c>t_depth</c>), and not while it sleeps in <see cref="LeaveForWait"/>.
/// - Dekker: <see cref="Enter"/> increments its stripe (a full fence) and then reads Closed; the prepare handler
///   increments Closed (a full fence) and then reads the stripes. So once the handler saw every stripe at 0, every
///   later Enter sees Closed and waits; none can be inside when fork() copies the process.
/// Left open: the few instructions between an export's entry into managed code and its increment (and between its
/// decrement and its return) are not covered; no runtime hook reaches them.
/// Cost on every export: two uncontended interlocked operations on the thread's stripe (a cache line of its own
/// unless more than 32 threads call xmem), one read of Closed, one thread-static access on entry and one on exit.
/// </remarks>
internal static unsafe class ForkGate
{
    private const int StripeCount = 32;

    // Plain zero-initialised statics: no static constructor, so the fast path has no class-initialisation check.
    // Accessed through refs only (a managed static may move); the futex word, which needs a fixed address, is
    // allocated on first use by the slow paths.
    private static Stripes s_stripes;
    private static int s_closed;
    private static nint s_wakeWord;
    private static int s_nextStripe;
    private static int s_generation;

    [ThreadStatic] private static ThreadGate t_gate;

    /// <summary>How many forks separate this process from the one that loaded xmem: 0 there, 1 in its children, …
    /// A pool opened before the last fork was inherited through it.</summary>
    internal static int Generation => Volatile.Read(ref s_generation);

    /// <summary>Counts the calling thread in; waits (outside managed code) while a fork is being prepared.
    /// Dispose the result on every path out of the export.</summary>
    internal static Scope Enter()
    {
        ref ThreadGate t = ref t_gate;
        int stripe = t.Stripe != 0 ? t.Stripe : t.Stripe = 1 + (int)((uint)Interlocked.Increment(ref s_nextStripe) % StripeCount);
        if (t.Depth++ == 0)
        {
            ref int c = ref Stripe(stripe);
            Interlocked.Increment(ref c); // a full fence: Closed is read after the increment is visible
            if (Volatile.Read(ref s_closed) != 0)
            {
                WaitWhileClosed(ref c);
            }
        }

        return new Scope(ref t, stripe);
    }

    /// <summary>Steps out of the gate before a sleep that may be long (a futex wait). Returns whether the thread was
    /// inside (the C ABI), to pass to <see cref="ReturnFromWait"/>; a .NET caller is never inside.</summary>
    internal static bool LeaveForWait()
    {
        ref ThreadGate t = ref t_gate;
        if (t.Depth == 0)
        {
            return false;
        }

        Interlocked.Decrement(ref Stripe(t.Stripe));
        return true;
    }

    /// <summary>Steps back in after the sleep, waiting while a fork is being prepared.</summary>
    internal static void ReturnFromWait(bool left)
    {
        if (!left)
        {
            return;
        }

        ref int c = ref Stripe(t_gate.Stripe);
        Interlocked.Increment(ref c);
        if (Volatile.Read(ref s_closed) != 0)
        {
            WaitWhileClosed(ref c);
        }
    }

    /// <summary>fork()'s prepare handler: closes the gate, waits until no other thread is inside, then until the
    /// finalizers queued so far have run. Runs as managed code, so it starts only once a collection is over.</summary>
    internal static void Close()
    {
        _ = WakeWord(); // allocated now, not in the parent handler
        Interlocked.Increment(ref s_closed); // a full fence: the stripes are read after every Enter can see it
        int own = t_gate.Depth != 0 ? 1 : 0; // a fork from inside an export: this thread's own count stays
        var spin = new SpinWait();
        while (CountInside() != own)
        {
            spin.SpinOnce(); // exports are short, and waits without a bound leave the gate
        }

        if (Generation == 0)
        {
            // Finalizers (xmem's SafeHandles) are managed code on the finalizer thread, outside the gate. A child of
            // a fork has no finalizer thread (only the forking thread survives), so there is nothing to wait for
            // there — and waiting would never end.
            GC.WaitForPendingFinalizers();
        }
    }

    /// <summary>fork()'s parent handler: opens the gate (once every fork under way is done) and wakes the waiters.</summary>
    internal static void Open()
    {
        if (Interlocked.Decrement(ref s_closed) == 0)
        {
            int* w = WakeWord();
            Interlocked.Increment(ref *w); // a new value: a waiter that read the old one does not sleep
            _ = Libc.FutexWakeAll((nint)w);
        }
    }

    /// <summary>What a child made by fork() does with the objects it inherited (set once, by the pool layer: it
    /// makes every pool opened before the fork inert). A plain static: read only by the child handler.</summary>
    private static Action? s_afterForkInChild;

    /// <summary>Sets the child handler's work on inherited objects (<see cref="AfterForkInChild"/>).</summary>
    internal static void SetChildHook(Action hook) => Volatile.Write(ref s_afterForkInChild, hook);

    /// <summary>fork()'s child handler: resets the gate, then runs the child hook (the pool layer makes every pool
    /// opened before the fork inert in this child). Only the forking thread exists here.</summary>
    internal static void AfterForkInChild()
    {
        ResetInChild();
        ProcessInfo.ResetAfterFork();
        Volatile.Read(ref s_afterForkInChild)?.Invoke();
    }

    /// <summary>The gate starts open and empty but for this thread's own count; the generation goes up, making
    /// everything opened before the fork inherited.</summary>
    private static void ResetInChild()
    {
        for (int i = 1; i <= StripeCount; i++)
        {
            Volatile.Write(ref Stripe(i), 0);
        }

        ref ThreadGate t = ref t_gate;
        if (t.Depth != 0)
        {
            Volatile.Write(ref Stripe(t.Stripe), 1);
        }

        Volatile.Write(ref s_closed, 0);
        Interlocked.Increment(ref s_generation);
    }

    private static void WaitWhileClosed(ref int stripe)
    {
        int* w = WakeWord();
        while (true)
        {
            Interlocked.Decrement(ref stripe); // out while waiting: the preparer must not wait for us
            while (true)
            {
                int seen = Volatile.Read(ref *w);
                if (Volatile.Read(ref s_closed) == 0)
                {
                    break;
                }

                // In the kernel, outside managed code, until the parent handler bumps the word (EAGAIN when it
                // changed since we read it, EINTR on a signal: look again either way).
                _ = Libc.FutexWait((nint)w, (uint)seen, -1);
            }

            Interlocked.Increment(ref stripe);
            if (Volatile.Read(ref s_closed) == 0)
            {
                return; // in, and seen open after counting in (a later preparer waits for us)
            }
        }
    }

    private static int CountInside()
    {
        int n = 0;
        for (int i = 1; i <= StripeCount; i++)
        {
            n += Volatile.Read(ref Stripe(i));
        }

        return n;
    }

    /// <summary>Stripe <paramref name="i"/> (1-based: 0 is "none yet" in <see cref="ThreadGate"/>).</summary>
    private static ref int Stripe(int i) => ref s_stripes[i - 1].Value;

    private static int* WakeWord()
    {
        nint w = Volatile.Read(ref s_wakeWord);
        if (w != 0)
        {
            return (int*)w;
        }

        nint fresh = (nint)NativeMemory.AllocZeroed(sizeof(int));
        nint won = Interlocked.CompareExchange(ref s_wakeWord, fresh, 0);
        if (won != 0)
        {
            NativeMemory.Free((void*)fresh);
            return (int*)won;
        }

        return (int*)fresh; // never freed: the handlers use it for the life of the process
    }

    /// <summary>An export's stay inside the gate; <c>using</c> it counts the thread out on every path. It keeps a
    /// reference to the thread's own gate state, so the exit does not look the thread-static up again (in a shared
    /// library each such lookup is a call into the dynamic linker's TLS resolver).</summary>
    internal readonly ref struct Scope
    {
        private readonly ref ThreadGate _gate;
        private readonly int _stripe;

        internal Scope(ref ThreadGate gate, int stripe)
        {
            _gate = ref gate;
            _stripe = stripe;
        }

        /// <summary>Counts the calling thread out (the last of nested entries does).</summary>
        public void Dispose()
        {
            if (--_gate.Depth == 0)
            {
                // Interlocked (a full fence): everything this thread did inside is done before a preparer sees it out.
                Interlocked.Decrement(ref Stripe(_stripe));
            }
        }
    }

    /// <summary>The calling thread's nesting depth inside the gate, and its stripe (1-based; 0 until its first entry).</summary>
    internal struct ThreadGate
    {
        internal int Depth;
        internal int Stripe;
    }

    /// <summary>One counter per 128 bytes (two cache lines: the adjacent-line prefetcher would otherwise pair them).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct PaddedCounter
    {
        [FieldOffset(0)] internal int Value;
    }

    [InlineArray(StripeCount)]
    private struct Stripes
    {
        private PaddedCounter _first;
    }
}
