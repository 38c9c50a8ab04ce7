using Xmem.Errors;
using Xmem.Interop;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// This process's holdings in one pool (docs/layout.md, "Holdings"), made on first use rather than at attach: a
/// process that opens a pool only to look, or to hand on indices, never makes the segment, and Create and Open stay
/// free of its seven system calls.
/// Invariants: the segment is made (and mapped) before this process attributes its first reference — every path that
/// adds to a holding reads <see cref="Words"/> before it claims or locks anything — so a process that dies with no
/// segment held nothing, and its recovery (which finds no file, or an empty one) releases nothing. The pointer is
/// published once, with a release store after the mapping exists, and never changes until the pool lease goes.
/// Made under the registry's recovery gate, which Dispose also holds while it leaves the entry, so a segment is never
/// made for an entry being left.
/// </summary>
internal sealed unsafe class OwnHoldings(ControlSegment control, ProcessRegistry registry, PoolLease lease)
{
    private nint _words;

    /// <summary>Whether the segment was made (its name is then unlinked when this process leaves its entry).</summary>
    internal bool Made => Volatile.Read(ref _words) != 0;

    /// <summary>This process's holdings (<c>Words[s]</c> is its holding of slot s), made now if they were not yet.</summary>
    internal ulong* Words
    {
        get
        {
            nint w = Volatile.Read(ref _words); // acquire: the mapping behind it exists
            return w != 0 ? (ulong*)w : Make();
        }
    }

    /// <summary>The holdings if made, else null (a process that never held a reference has nothing to release).</summary>
    internal ulong* WordsIfMade => (ulong*)Volatile.Read(ref _words);

    /// <summary>Checks at attach, with the entry's liveness lock held, that entry <paramref name="entry"/>'s holdings
    /// name is not held by a file the pool did not make (a stranger must not lock the pool's users out by pre-creating
    /// names it can see in /dev/shm: such an entry is skipped). One look; the segment itself is made on first use.</summary>
    internal static bool NameIsUsable(ControlSegment c, int entry) =>
        SegmentFile.OwnershipOf(Holdings.ObjectName(c, entry), c.Access, out _) != SegmentOwnership.Foreign;

    private ulong* Make()
    {
        lock (registry.RecoveryGate)
        {
            nint w = Volatile.Read(ref _words);
            if (w != 0)
            {
                return (ulong*)w;
            }

            int me = registry.Me;
            if (me < 0)
            {
                ThrowHelper.ThrowPoolDisposed(control.Bare);
            }

            Holdings? own;
            bool made = false;
            try
            {
                own = Holdings.CreateOwn(control, me, out made);
            }
            catch
            {
                if (made)
                {
                    _ = SegmentFile.Unlink(Holdings.ObjectName(control, me)); // made but not sized or mapped (a full /dev/shm)
                }

                throw;
            }

            if (own is null)
            {
                throw new PoolPermissionException($"pool '{control.Bare}': this process's holdings segment name ({Holdings.ObjectName(control, me)}) was taken by a file this pool did not make (another group or mode) after this process attached. Remove that file as root or as its owner, and open the pool again.", Errno.EEXIST);
            }

            lease.AdoptHoldings(own.Region);
            Volatile.Write(ref _words, (nint)own.Words); // release: published after the mapping exists
            return own.Words;
        }
    }
}
