using System.Runtime.InteropServices;
using Xmem.Interop;

namespace Xmem.Pool;

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
/// Cost on every export: two uncontended interlocked operations on the thread's own stripe (cache line), one read
/// of Closed and two thread-static accesses.
/// </remarks>
internal static unsafe class ForkGate
{
    private const int StripeCount = 32;
    private const int StripeBytes = 128; // two cache lines: the adjacent-line prefetcher would otherwise pair stripes

    // Native memory, so the futex word and the counters have fixed addresses (managed statics could move).
    // Byte 0: Closed; stripe i at (i + 1) * StripeBytes.
    private static readonly byte* s_block = AllocateBlock();
    private static int s_nextStripe;
    private static int s_generation;

    [ThreadStatic] private static int t_depth;
    [ThreadStatic] private static int t_stripe; // 1 + the stripe's index; 0 until the thread's first Enter

    /// <summary>How many forks separate this process from the one that loaded xmem: 0 there, 1 in its children, …
    /// A pool remembers the generation it was opened in; one of an older generation was inherited through fork.</summary>
    internal static int Generation => Volatile.Read(ref s_generation);

    private static int* Closed => (int*)s_block;

    /// <summary>Counts the calling thread in; waits (outside managed code) while a fork is being prepared.
    /// Dispose the result on every path out of the export.</summary>
    internal static Scope Enter()
    {
        int d = t_depth;
        t_depth = d + 1;
        if (d == 0)
        {
            int* c = OwnStripe();
            Interlocked.Increment(ref *c); // a full fence: Closed is read after the increment is visible
            if (Volatile.Read(ref *Closed) != 0)
            {
                WaitWhileClosed(c);
            }
        }

        return default;
    }

    /// <summary>Counts the calling thread out (the last of nested entries does).</summary>
    private static void Exit()
    {
        int d = t_depth - 1;
        t_depth = d;
        if (d == 0)
        {
            // Interlocked (a full fence): everything this thread did inside is done before a preparer sees it out.
            Interlocked.Decrement(ref *OwnStripe());
        }
    }

    /// <summary>Steps out of the gate before a sleep that may be long (a futex wait). Returns whether the thread was
    /// inside (the C ABI), to pass to <see cref="ReturnFromWait"/>; a .NET caller is never inside.</summary>
    internal static bool LeaveForWait()
    {
        if (t_depth == 0)
        {
            return false;
        }

        Interlocked.Decrement(ref *OwnStripe());
        return true;
    }

    /// <summary>Steps back in after the sleep, waiting while a fork is being prepared.</summary>
    internal static void ReturnFromWait(bool left)
    {
        if (!left)
        {
            return;
        }

        int* c = OwnStripe();
        Interlocked.Increment(ref *c);
        if (Volatile.Read(ref *Closed) != 0)
        {
            WaitWhileClosed(c);
        }
    }

    /// <summary>fork()'s prepare handler: closes the gate, waits until no other thread is inside, then until the
    /// finalizers queued so far have run. Runs as managed code, so it starts only once a collection is over.</summary>
    internal static void Close()
    {
        Interlocked.Increment(ref *Closed); // a full fence: the stripes are read after every Enter can see it
        int own = t_depth != 0 ? 1 : 0; // a fork from inside an export: this thread's own count stays
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
        if (Interlocked.Decrement(ref *Closed) == 0)
        {
            _ = Libc.FutexWakeAll((nint)Closed);
        }
    }

    /// <summary>fork()'s child handler: resets the gate, then makes every pool opened before the fork inert in this
    /// child (<see cref="BufferPool.AbandonInheritedPools"/>). Only the forking thread exists here.</summary>
    internal static void AfterForkInChild()
    {
        ResetInChild();
        ProcessInfo.ResetAfterFork();
        BufferPool.AbandonInheritedPools();
    }

    /// <summary>The gate starts open and empty but for this thread's own count; the generation goes up, making
    /// everything opened before the fork inherited.</summary>
    private static void ResetInChild()
    {
        for (int i = 0; i < StripeCount; i++)
        {
            Volatile.Write(ref *Stripe(i), 0);
        }

        if (t_depth != 0)
        {
            Volatile.Write(ref *OwnStripe(), 1);
        }

        Volatile.Write(ref *Closed, 0);
        Interlocked.Increment(ref s_generation);
    }

    private static void WaitWhileClosed(int* stripe)
    {
        while (true)
        {
            Interlocked.Decrement(ref *stripe); // out while waiting: the preparer must not wait for us
            int closed;
            while ((closed = Volatile.Read(ref *Closed)) != 0)
            {
                // In the kernel, outside managed code, until the parent handler opens the gate (EAGAIN when it
                // changed meanwhile, EINTR on a signal: read it again either way).
                _ = Libc.FutexWait((nint)Closed, (uint)closed, -1);
            }

            Interlocked.Increment(ref *stripe);
            if (Volatile.Read(ref *Closed) == 0)
            {
                return; // in, and seen open after counting in (a later preparer waits for us)
            }
        }
    }

    private static int CountInside()
    {
        int n = 0;
        for (int i = 0; i < StripeCount; i++)
        {
            n += Volatile.Read(ref *Stripe(i));
        }

        return n;
    }

    private static int* OwnStripe()
    {
        int s = t_stripe;
        if (s == 0)
        {
            t_stripe = s = 1 + (int)((uint)Interlocked.Increment(ref s_nextStripe) % StripeCount);
        }

        return Stripe(s - 1);
    }

    private static int* Stripe(int i) => (int*)(s_block + ((i + 1) * StripeBytes));

    private static byte* AllocateBlock()
    {
        nuint bytes = (nuint)((StripeCount + 1) * StripeBytes);
        var block = (byte*)NativeMemory.AlignedAlloc(bytes, StripeBytes);
        NativeMemory.Clear(block, bytes);
        return block; // never freed: the handlers and exports use it for the life of the process
    }

    /// <summary>An export's stay inside the gate; <c>using</c> it counts the thread out on every path.</summary>
    internal readonly ref struct Scope
    {
        /// <summary>Counts the thread out.</summary>
        public void Dispose() => Exit();
    }
}
