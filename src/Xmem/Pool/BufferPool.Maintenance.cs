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
}
