namespace Xmem;

// Maintenance entry points for tools (`xmem gc`) and long-running services.
public sealed partial class BufferPool
{
    /// <summary>Recovers every process-table entry whose process died without detaching: repairs the slots it left
    /// locked and releases the references its guards held, so their slots can be recycled. An acquire that finds the
    /// pool full does the same by itself; call this to free the memory sooner. Returns how many entries were
    /// recovered.</summary>
    public int RecoverDeadProcesses()
    {
        ThrowIfDisposed();
        return ReclaimDeadProcesses();
    }

    /// <summary>Removes the pool named <paramref name="name"/> if it is stale: no live process is attached and it is
    /// not persistent (or its control segment is damaged and no live process holds it). Decided under the pool's
    /// removal lock, so a pool that a process attaches to meanwhile is kept. Returns true when it was removed or
    /// was gone already.</summary>
    public static bool RemoveIfStale(string name) => TryRemoveStale(SharedMemory.PoolName.Normalize(name));
}
