using System.Diagnostics.CodeAnalysis;
using Xmem.Interop;

namespace Xmem.Errors;

/// <summary>Every throw of the library, kept out of the hot paths, and the one errno → exception table.</summary>
internal static class ThrowHelper
{
    /// <summary>The errno → exception table. <paramref name="what"/> names the call, <paramref name="path"/> the object.</summary>
    internal static Exception OsError(string what, int errno, string? path)
    {
        string on = path is null ? "" : $" on '{path}'";
        return errno switch
        {
            Errno.ENOENT => new PoolNotFoundException($"{what} failed{on}: no such shared-memory object. Check the pool name, and that the pool was created and not removed.", path, errno),
            Errno.EEXIST => new PoolExistsException($"{what} failed{on}: the object exists already. Open it instead, or remove it first (`xmem rm`)."),
            Errno.EACCES or Errno.EPERM => new PoolPermissionException($"{what} failed{on}: permission denied. The pool belongs to another user; create it with a group mode (e.g. 0660) to share it, or run as its owner.", errno),
            Errno.ENOSPC or Errno.ENOMEM or Errno.EFBIG or Errno.EDQUOT => new XmemOutOfMemoryException($"{what} failed{on}: out of memory or out of space in the shared-memory directory ({SharedMemoryDirectory.Path}). Free memory, release buffers, or give the container a larger /dev/shm (--shm-size).", errno),
            Errno.EMFILE or Errno.ENFILE => new XmemException(XmemStatus.OsError, $"{what} failed{on}: too many open files. Raise the descriptor limit (ulimit -n).", errno),
            Errno.ENAMETOOLONG => new ArgumentException($"{what} failed{on}: the name is too long for the file system."),
            _ => new XmemException(XmemStatus.OsError, $"{what} failed{on}: errno {errno} ({new System.ComponentModel.Win32Exception(errno).Message}).", errno),
        };
    }

    [DoesNotReturn]
    internal static void ThrowOsError(string what, int errno, string? path) => throw OsError(what, errno, path);

    [DoesNotReturn]
    internal static void ThrowIndexOutOfRange(int metaIndex, int capacity) =>
        throw new MetaIndexOutOfRangeException(nameof(metaIndex), metaIndex, $"meta index {metaIndex} is outside this pool's slots 0..{capacity - 1}.");

    /// <summary>A pool or channel name that breaks its rules; <paramref name="message"/> says which and how.</summary>
    [DoesNotReturn]
    internal static void ThrowInvalidName(string message, string paramName) => throw new InvalidNameException(message, paramName);

    [DoesNotReturn]
    internal static void ThrowSlotNotLive(int metaIndex) =>
        throw new SlotNotLiveException($"slot {metaIndex} holds no live buffer (it is free or being recycled): its last reference was released. Keep a reference while the index is in flight: hold a guard, or add a reference (or set the count) for it.");

    [DoesNotReturn]
    internal static void ThrowGuardInvalid() =>
        throw new BufferGuardInvalidException("this buffer guard no longer owns a reference (it was forgotten, disposed or sent); get the slot again for a new one.");

    [DoesNotReturn]
    internal static void ThrowReadOnly() =>
        throw new BufferReadOnlyException("this guard is read-only (a read-only get); get the slot writable for write access.");

    [DoesNotReturn]
    internal static void ThrowInheritedThroughFork(string name) => throw new ObjectDisposedException($"xmem pool '{name}'", $"pool '{name}' was opened before this process was forked: in a child made by fork() it is inert (its references belong to the parent, which still uses them). Open the pool by name again in the child, or start child processes with multiprocessing's 'spawn' or 'forkserver' start method.");

    [DoesNotReturn]
    internal static void ThrowPoolDisposed(string name) => throw new ObjectDisposedException($"xmem pool '{name}'", "the pool was closed; open it again by name.");

    [DoesNotReturn]
    internal static void ThrowPoolClosedWhileWaiting(string name) => throw new ObjectDisposedException($"xmem pool '{name}'", "the pool was closed by another thread while this call waited; open it again by name.");

    [DoesNotReturn]
    internal static void ThrowCorrupt(string poolName, string what) => throw new CorruptSegmentException(CorruptMessage(poolName, what));

    /// <summary>The message of <see cref="ThrowCorrupt"/>, for those that report a damaged pool without throwing.</summary>
    internal static string CorruptMessage(string poolName, string what) =>
        $"pool '{poolName}': {what}. The control segment was written by something other than this version of xmem or was damaged; remove it with `xmem rm {poolName}` and create it again.";

    [DoesNotReturn]
    internal static void ThrowPoolFull(string poolName, int capacity) =>
        throw new PoolFullException($"pool '{poolName}' is full: all {capacity} slots hold live buffers. Release buffers, wait for a free slot with a timeout, or create the pool with a larger capacity.");

    [DoesNotReturn]
    internal static void ThrowArgumentOutOfRange(string param, object value, string message) =>
        throw new ArgumentOutOfRangeException(param, value, message);
}
