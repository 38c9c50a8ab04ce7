using Xmem.Core;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xmem.Interop;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>
/// The pthread_atfork handlers that make fork() safe in a process using libxmem (see <see cref="ForkGate"/>):
/// prepare closes the gate and drains it, the parent handler opens it, the child handler resets it and makes every
/// pool opened before the fork inert in the child, closing its copies of their descriptors without unlocking them
/// (so a child never keeps its parent's process entry alive). Registered once, when the runtime starts (on the
/// first call into the library); a fork before that copies no managed state.
/// Only the C ABI registers them: a .NET process cannot fork (its runtime would not survive it), and the handlers
/// would otherwise run in the child of a fork-and-exec.
/// </summary>
internal static unsafe class ForkHandlers
{
    [ModuleInitializer]
    [SuppressMessage("Usage", "CA2255:The 'ModuleInitializer' attribute should not be used in libraries", Justification = "libxmem is the process's C ABI: the handlers must be in place before any export runs.")]
    internal static void Register()
    {
        // ENOMEM is the only failure; fork safety is then lost, but every call still works.
        _ = Libc.RegisterAtfork(&Prepare, &Parent, &Child, 0);
    }

    [UnmanagedCallersOnly]
    private static void Prepare()
    {
        try
        {
            ForkGate.Close();
        }
        catch (Exception)
        {
            // Nothing may cross into fork(); the gate is closed before anything here can throw.
        }
    }

    [UnmanagedCallersOnly]
    private static void Parent()
    {
        try
        {
            ForkGate.Open();
        }
        catch (Exception)
        {
            // As above.
        }
    }

    [UnmanagedCallersOnly]
    private static void Child()
    {
        try
        {
            ForkGate.AfterForkInChild();
        }
        catch (Exception)
        {
            // A pool left unabandoned keeps failing later calls with its own errors; nothing may cross into fork().
        }
    }
}
