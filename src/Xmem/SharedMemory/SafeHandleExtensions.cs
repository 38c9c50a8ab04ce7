using System.Runtime.InteropServices;

namespace Xmem.SharedMemory;

internal static class SafeHandleExtensions
{
    /// <summary>Takes a lease on the handle; throws ObjectDisposedException when it is already closed.</summary>
    internal static void DangerousAddRefChecked(this SafeHandle handle)
    {
        bool ok = false;
        handle.DangerousAddRef(ref ok);
    }
}
