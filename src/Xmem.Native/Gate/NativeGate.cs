using System.Runtime.InteropServices;

namespace Xmem.Native.Gate;

/// <summary>
/// The C fork gate linked into libxmem (fork_gate.c, dlpack_deleters.c; "xmemgate" is a DirectPInvoke, resolved at
/// link time: no library is loaded). Every exported xmem_* function enters the gate in C before the runtime is
/// entered (exports.g.c); the managed code calls these for fork's handlers, the waits that step out of the gate, and
/// the DLPack deleters it hands out.
/// </summary>
internal static unsafe partial class NativeGate
{
    private const string Library = "xmemgate";

    /// <summary>fork()'s prepare handler: closes the gate and waits until no other thread is inside.</summary>
    [LibraryImport(Library, EntryPoint = "xmem_gate_close")]
    internal static partial void Close();

    /// <summary>fork()'s parent handler: opens the gate once every fork under way is done.</summary>
    [LibraryImport(Library, EntryPoint = "xmem_gate_open")]
    internal static partial void Open();

    /// <summary>fork()'s child handler: the gate open and empty but for the forking thread's own count.</summary>
    [LibraryImport(Library, EntryPoint = "xmem_gate_reset_in_child")]
    internal static partial void ResetInChild();

    /// <summary>fork()'s child handler: detaches the parent's threads from the runtime and leaves the forking thread
    /// alone on its thread list (runtime_threads.c); the number dropped, or -1 (nothing changed).</summary>
    [LibraryImport(Library, EntryPoint = "xmem_gate_runtime_forget_parent_threads")]
    internal static partial int ForgetRuntimeParentThreads();

    /// <summary>A handle destroy's grace period: returns once every other thread that was inside a call has left it
    /// (or stepped out to sleep); the calling thread steps out meanwhile (fork_gate.c).</summary>
    [LibraryImport(Library, EntryPoint = "xmem_gate_wait_calls_in_flight")]
    internal static partial void WaitCallsInFlight();

    /// <summary>futex(FUTEX_WAIT) on a word shared between processes, out of the gate for the sleep only: the
    /// thread is counted in again before it returns into the runtime. Returns syscall(2)'s result.</summary>
    [LibraryImport(Library, EntryPoint = "xmem_gate_futex_wait")]
    private static partial long FutexWait(uint* word, uint expected, long timeoutNs);

    /// <summary><see cref="FutexWait(uint*, uint, long)"/> in the shape of <c>Xmem.Core.ForkGate.SetGatedWait</c>.</summary>
    internal static long FutexWaitOutsideGate(nint word, uint expected, long timeoutNs) => FutexWait((uint*)word, expected, timeoutNs);

    /// <summary>The gated DLPack deleter for a DLManagedTensorVersioned (versioned) or a DLManagedTensor.</summary>
    [LibraryImport(Library, EntryPoint = "xmem_gate_dlpack_deleter")]
    internal static partial nint DlpackDeleter(int versioned);
}
