using Xmem.Core;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xmem.Interop;
using Xmem.Native.Gate;

namespace Xmem.Native.Exports;

/// <summary>
/// The pthread_atfork handlers that make fork() safe in a process using libxmem (src/Xmem.Native/Gate/fork_gate.c):
/// prepare closes the C gate and drains it, then waits for the finalizers queued so far; the parent handler opens the
/// gate; the child handler resets it and makes every pool opened before the fork inert in the child, closing its
/// copies of their descriptors without unlocking them (so a child never keeps its parent's process entry alive).
/// Registered once, when the runtime starts (on the first call into the library), with the gate's futex wait; a fork
/// before that copies no managed state. They run on the forking thread, the one thread a child has.
/// Only the C ABI registers them: a .NET process cannot fork (its runtime would not survive it), and the handlers
/// would otherwise run in the child of a fork-and-exec.
/// </summary>
internal static unsafe class ForkHandlers
{
    [ModuleInitializer]
    [SuppressMessage("Usage", "CA2255:The 'ModuleInitializer' attribute should not be used in libraries", Justification = "libxmem is the process's C ABI: the handlers must be in place before any export runs.")]
    internal static void Register()
    {
        ForkGate.SetGatedWait(&NativeGate.FutexWaitOutsideGate);
        // ENOMEM is the only failure; fork safety is then lost, but every call still works.
        _ = Libc.RegisterAtfork(&Prepare, &Parent, &Child, 0);
    }

    [UnmanagedCallersOnly]
    private static void Prepare()
    {
        NativeGate.Close();
        try
        {
            if (ForkGate.Generation == 0)
            {
                // Finalizers (xmem's SafeHandles) are managed code on the finalizer thread, outside the gate. A child
                // of a fork has no finalizer thread (only the forking thread survives), so there is nothing to wait
                // for there, and waiting would never end.
                GC.WaitForPendingFinalizers();
            }
        }
        catch (Exception)
        {
            // Nothing may cross into fork().
        }
    }

    [UnmanagedCallersOnly]
    private static void Parent() => NativeGate.Open();

    [UnmanagedCallersOnly]
    private static void Child()
    {
        NativeGate.ResetInChild();
        try
        {
            // The child's runtime still lists the parent's threads, whose stacks (and the Thread objects in their
            // TLS) glibc gives to the child's new threads: left listed, they corrupt the list and the child's next
            // collection hangs. Before the child can start a thread, they are detached (Gate/runtime_threads.c).
            _ = NativeGate.ForgetRuntimeParentThreads();
            ForkGate.AfterForkInChild();
        }
        catch (Exception)
        {
            // A pool left unabandoned keeps failing later calls with its own errors; nothing may cross into fork().
        }
    }
}
