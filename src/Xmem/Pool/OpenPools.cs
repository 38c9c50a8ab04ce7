using Xmem.Core;

namespace Xmem.Pool;

/// <summary>
/// The pools this process has open: detached at normal process exit (so a process that forgot Dispose still gives
/// back its references, and removes a pool it was the last user of), and made inert in a child made by fork().
/// Weak references: a pool collected without Dispose is not kept alive by this list.
/// </summary>
internal static class OpenPools
{
    private static readonly List<WeakReference<BufferPool>> s_open = Create();

    private static List<WeakReference<BufferPool>> Create()
    {
        ForkGate.SetChildHook(AbandonInherited);
        AppDomain.CurrentDomain.ProcessExit += static (_, _) =>
        {
            foreach (BufferPool p in TakeAll())
            {
                try
                {
                    p.Dispose();
                }
                catch (Exception)
                {
                    // Exiting anyway; the next process to attach recovers what is left.
                }
            }
        };
        return [];
    }

    /// <summary>Lists a pool that finished attaching.</summary>
    internal static BufferPool Track(BufferPool pool)
    {
        XmemMetrics.EnsureCreated();
        lock (s_open)
        {
            s_open.Add(new WeakReference<BufferPool>(pool));
        }

        return pool;
    }

    /// <summary>Takes a pool (and every collected one) off the list.</summary>
    internal static void Untrack(BufferPool pool)
    {
        lock (s_open)
        {
            s_open.RemoveAll(w => !w.TryGetTarget(out BufferPool? p) || ReferenceEquals(p, pool));
        }
    }

    /// <summary>The pools open now (for reading their counters: each may be disposed at any moment after).</summary>
    internal static BufferPool[] Snapshot()
    {
        lock (s_open)
        {
            return [.. s_open.Select(w => w.TryGetTarget(out BufferPool? p) ? p : null).OfType<BufferPool>()];
        }
    }

    private static BufferPool[] TakeAll()
    {
        lock (s_open)
        {
            BufferPool[] pools = [.. s_open.Select(w => w.TryGetTarget(out BufferPool? p) ? p : null).OfType<BufferPool>()];
            s_open.Clear();
            return pools;
        }
    }

    /// <summary>
    /// In a child made by fork(), from its atfork handler (only the forking thread exists, and no thread was inside
    /// xmem at the fork: <see cref="ForkGate"/>): makes every pool opened before the fork inert. Such a pool's
    /// process entry, references and liveness lock are the parent's, so the child must neither use nor release them:
    /// every call then fails naming fork, Dispose and guard releases do nothing, and nothing touches shared memory.
    /// An OFD lock belongs to the open file description, which the child's copies share with the parent, and the
    /// kernel keeps it while any descriptor or shared mapping of that description exists. So the child drops both of
    /// its references — the control descriptor (closed, never unlocked: an unlock through the shared description
    /// would free the parent's entry at once) and the control segment's mapping (replaced by zero pages) — and the
    /// kernel then drops the parent's locks as soon as the parent dies, however long the child lives. Data mappings
    /// stay (they hold no lock), so views the child inherited stay readable. The pools are not detached at this
    /// child's exit either.
    /// </summary>
    internal static void AbandonInherited()
    {
        Cuda.CudaFdServer.CloseInheritedListener(); // the parent's VMM fd socket must die with the parent
        foreach (BufferPool p in TakeAll())
        {
            p.AbandonInherited();
        }
    }
}
