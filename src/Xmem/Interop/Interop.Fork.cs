using System.Runtime.InteropServices;

namespace Xmem.Interop;

internal static partial class Libc
{
    /// <summary>pthread_atfork(3), under the name glibc exports: pthread_atfork itself lives in libc_nonshared.a
    /// and calls <c>__register_atfork(prepare, parent, child, __dso_handle)</c>. A null DSO handle registers the
    /// handlers for the life of the process (they are dropped only by a dlclose of that DSO, and libxmem is never
    /// unloaded). fork(2) runs prepare in the forking thread, then parent or child after it. 0, or an errno value
    /// (ENOMEM) — not -1 with errno set. Null pointers are allowed for handlers not wanted.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "__register_atfork")]
    internal static unsafe partial int RegisterAtfork(delegate* unmanaged<void> prepare, delegate* unmanaged<void> parent, delegate* unmanaged<void> child, nint dsoHandle);

    /// <summary>getpid(2): never fails. Read directly, not through Environment.ProcessId, which is cached and so
    /// still names the parent in a child made by fork().</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "getpid")]
    internal static partial int GetPid();
}
