using Xmem.SharedMemory;
using Xmem.Interop;

namespace Xmem.Core;

/// <summary>
/// The managed side of the fork gate that makes fork() safe for processes that call xmem through its C ABI (C,
/// Python). The gate itself is counted in C, in libxmem (src/Xmem.Native/Gate/fork_gate.c), before a call enters the
/// .NET runtime and after it has left it: counted here, a thread attaching itself to the runtime or allocating under
/// the GC's lock could be copied mid-way by a fork, and the child would wait for it for ever. What stays here: the
/// sleeps without a bound, which must step out of that gate (<see cref="FutexWait"/>), and the fork generation that
/// tells objects inherited through fork from objects made in the process itself.
/// </summary>
/// <remarks>
/// A .NET process never forks (its runtime would not survive it): there no gate is installed, and
/// <see cref="FutexWait"/> is the plain futex wait.
/// </remarks>
internal static unsafe class ForkGate
{
    // Plain zero-initialised statics: no static constructor, so no class-initialisation check on the wait path.
    private static delegate*<nint, uint, long, long> s_gatedWait;
    private static int s_generation;

    /// <summary>How many forks separate this process from the one that loaded xmem: 0 there, 1 in its children, …
    /// A pool opened before the last fork was inherited through it.</summary>
    internal static int Generation => Volatile.Read(ref s_generation);

    /// <summary>Installs the C ABI's futex wait, which steps out of the gate for the sleep (set once, when libxmem's
    /// runtime starts, before any export runs).</summary>
    internal static void SetGatedWait(delegate*<nint, uint, long, long> wait) => s_gatedWait = wait;

    /// <summary>Sleeps while <c>*word == expected</c>, at most <paramref name="timeoutNs"/> (negative: no limit), out
    /// of the fork gate, so that a wait without a bound never holds a fork back. The result is futex(2)'s.</summary>
    internal static long FutexWait(nint word, uint expected, long timeoutNs)
    {
        delegate*<nint, uint, long, long> wait = s_gatedWait;
        return wait is not null ? wait(word, expected, timeoutNs) : Libc.FutexWait(word, expected, timeoutNs);
    }

    /// <summary>What a child made by fork() does with the objects it inherited (set once, by the pool layer: it
    /// makes every pool opened before the fork inert). A plain static: read only by the child handler.</summary>
    private static Action? s_afterForkInChild;

    /// <summary>Sets the child handler's work on inherited objects (<see cref="AfterForkInChild"/>).</summary>
    internal static void SetChildHook(Action hook) => Volatile.Write(ref s_afterForkInChild, hook);

    /// <summary>fork()'s child handler, after the C gate was reset: the generation goes up, making everything opened
    /// before the fork inherited, then the child hook runs (the pool layer makes every pool opened before the fork
    /// inert in this child). Only the forking thread exists here.</summary>
    internal static void AfterForkInChild()
    {
        Interlocked.Increment(ref s_generation);
        ProcessInfo.ResetAfterFork();
        Volatile.Read(ref s_afterForkInChild)?.Invoke();
    }
}
