using System.Runtime.CompilerServices;

namespace Xmem.Native.Handles;

/// <summary>Lookups for the tables whose values are objects: null for a handle that is not live.</summary>
internal static class HandleTableLookups
{
    /// <summary>The object behind <paramref name="handle"/>, or null for a null, stale or wrong-kind handle.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static T? Get<T>(this HandleTable<T> table, ulong handle)
        where T : class => table.TryGet(handle, out T value) ? value : null;

    /// <summary>Removes the entry and returns its object; null when the handle was not live.</summary>
    internal static T? Remove<T>(this HandleTable<T> table, ulong handle)
        where T : class => table.TryRemove(handle, out T value) ? value : null;
}
