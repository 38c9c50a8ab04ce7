using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Xmem.Native.Exports;

/// <summary>
/// In the C ABI's library every guard is kept alive by its handle (the guard handle table) until xmem_guard_release,
/// xmem_guard_forget, a send, or the close of its pool gives its reference back; it can never be collected undisposed.
/// So the library makes its guards without a finalizer (<see cref="BufferGuard.ReleaseWhenCollected"/>): registering
/// one for finalization took more instructions than the rest of an acquire (docs/c-abi.md, rule 6).
/// </summary>
internal static class GuardLifetime
{
    [ModuleInitializer]
    [SuppressMessage("Usage", "CA2255:The 'ModuleInitializer' attribute should not be used in libraries", Justification = "libxmem is the process's C ABI: set before any export makes a guard.")]
    internal static void OwnedByHandles() => BufferGuard.ReleaseWhenCollected = false;
}
