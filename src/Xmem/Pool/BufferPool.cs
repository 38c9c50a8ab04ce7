using System.Runtime.CompilerServices;
using Xmem.Channels;
using Xmem.Core;
using Xmem.Cuda;
using Xmem.Description;
using Xmem.Errors;
using Xmem.Layout;
using Xmem.Pool;
using Xmem.SharedMemory;

namespace Xmem;

/// <summary>
/// A named pool of buffer slots in shared memory, shared by every process that opens it. A producer acquires a
/// buffer, writes it, and hands its <c>MetaIndex</c> to other processes, which <see cref="Get"/> the same memory
/// without a copy. Each slot's reference count lives in shared memory; at zero the slot is recycled and its memory
/// kept for the next acquire that fits. Every member is safe to call from any thread of any process, except that
/// <see cref="Dispose"/> must not race with other non-blocking calls on the same instance (guards are safe at any
/// time). Blocking calls — a waiting acquire, a channel Send or Receive — are woken by Dispose and throw
/// <see cref="ObjectDisposedException"/>; Dispose returns once they have left.
/// </summary>
/// <remarks>The facade: argument checks, composition and dispose order. The protocols live in Core (docs/layout.md,
/// "Code map"): <see cref="PoolCore"/> composes them, <see cref="CudaStore"/> holds device memory,
/// <see cref="ChannelHandover"/> moves references through channels, <see cref="SlotDescriptions"/> the seqlock.</remarks>
public sealed partial class BufferPool : IDisposable
{
    private readonly string _name;  // as the caller spelled it: "/cam0" or "cam0" (both are the pool named by Bare)
    private readonly PoolCore _core;
    private readonly SlotTable _slots; // _core.Slots, one load nearer for the hot paths
    private readonly CudaStore _cuda;
    private readonly ChannelHandover _handover;
    private readonly SlotDescriptions _descriptions;
    private readonly DetachGate _detach = new();
    private int _liveCapacity; // the capacity while open, 0 once disposed: one compare checks index and state
    private volatile bool _disposed;
    private volatile bool _inheritedThroughFork;

    private BufferPool(string name, ControlSegment control)
    {
        _name = name;
        _core = new PoolCore(control);
        _slots = _core.Slots;
        _cuda = new CudaStore(_core);
        _handover = new ChannelHandover(_core);
        Guards = new GuardCache(this);
        _descriptions = new SlotDescriptions(_slots);
        _liveCapacity = control.Capacity;
    }

    /// <summary>The pool's name as given to <see cref="Create"/> or <see cref="Open"/>: "/cam0" stays "/cam0", "cam0"
    /// stays "cam0" (both spellings name the same pool).</summary>
    public string Name => _name;

    /// <summary>The number of slots.</summary>
    public int Capacity => _core.Control.Capacity;

    /// <summary>True when the pool outlives its processes until removed (<c>xmem rm</c>).</summary>
    public bool IsPersistent => _core.Control.IsPersistent;

    /// <summary>True in a child made by fork() for a pool its parent opened: the pool is inert here (its entry, its
    /// references and its liveness lock are the parent's), see <see cref="OpenPools.AbandonInherited"/>.</summary>
    internal bool IsInheritedThroughFork => _inheritedThroughFork;

    /// <summary>This process's entry in the pool's process table.</summary>
    internal int ProcessEntryIndex => _core.Registry.Me;

    internal PoolCore Core => _core;
    internal ChannelHandover Handover => _handover;
    internal BlockingCalls Blocking => _core.Blocking;
    private string Bare => _core.Bare;

    /// <summary>Creates a pool. Throws <see cref="ArgumentException"/> for a bad name, capacity or mode,
    /// <see cref="PoolExistsException"/> when a live pool has the name.</summary>
    /// <param name="name">An optional '/' and 1–200 of [A-Za-z0-9._-]; "/cam0" and "cam0" are the same pool.</param>
    /// <param name="capacity">Number of slots, 1..1,048,576.</param>
    /// <param name="mode">Permission bits of the pool's segments: 0600 (owner only) by default, 0660 to share with the group.</param>
    /// <param name="persistent">Keep the pool when its last process detaches, until <see cref="Remove"/>.</param>
    public static BufferPool Create(string name, int capacity = 1024, int mode = 0x180 /* 0600 */, bool persistent = false)
    {
        string bare = PoolName.Normalize(name);
        if (capacity < 1 || capacity > LayoutConstants.MaxCapacity)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(capacity), capacity, $"capacity must be 1..{LayoutConstants.MaxCapacity}.");
        }

        if ((mode & ~0x1FF) != 0 || (mode & 0x180) != 0x180)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(mode), Convert.ToString(mode, 8), "mode must be permission bits within 0777 that include owner read and write (0600), e.g. 0600 or 0660.");
        }

        StalePoolSweep.MaybeRun(bare);

        // The name is given to a finished, locked file or not at all (ControlSegment.TryCreate), so a creator that
        // finds it taken meets either a live pool or a stale one, never another creator's half-made file.
        long deadline = Environment.TickCount64 + 2000;
        while (true)
        {
            ControlSegment? control = ControlSegment.TryCreate(bare, capacity, (uint)mode, persistent);
            if (control is not null)
            {
                return FinishCreate(name, control);
            }

            bool removed = PoolRemoval.TryRemoveStale(bare, out bool busy);
            if (removed && Environment.TickCount64 < deadline)
            {
                continue; // stale, and now gone: try again
            }

            if (busy && Environment.TickCount64 < deadline)
            {
                Thread.Sleep(1); // another remover (a Create, a sweep, `xmem gc`) is deciding: wait for its verdict
                continue;
            }

            throw new PoolExistsException($"a pool named '{bare}' already exists and is in use (or persistent). Open it by name instead, pick another name, or remove it with `xmem rm {bare}`.");
        }
    }

    /// <summary>With a named, unfinished control segment whose entry 0 this process holds: registers in entry 0 and
    /// publishes the pool Ready. A failure removes the unfinished pool as a remover would.</summary>
    private static BufferPool FinishCreate(string name, ControlSegment control)
    {
        try
        {
            var pool = new BufferPool(name, control);
            if (!pool._core.RegisterEntry(0))
            {
                throw new PoolPermissionException($"pool '{control.Bare}': the holdings segment name of a brand-new instance is held by a file this pool did not make; try again.", Interop.Errno.EEXIST);
            }

            control.PublishReady();
            return OpenPools.Track(pool);
        }
        catch
        {
            PoolRemoval.AbandonUnfinished(control);
            control.DisposeUnused();
            throw;
        }
    }

    /// <summary>Attaches to an existing pool. Throws <see cref="PoolNotFoundException"/> when there is none,
    /// <see cref="PoolPermissionException"/> when its mode does not admit this user, and
    /// <see cref="CorruptSegmentException"/> or <see cref="IncompatibleLayoutException"/> for a segment that is not a
    /// valid pool of this layout version.</summary>
    public static BufferPool Open(string name)
    {
        string bare = PoolName.Normalize(name);
        StalePoolSweep.MaybeRun(bare);
        ControlSegment control = ControlSegment.Open(bare);
        BufferPool pool;
        try
        {
            pool = new BufferPool(name, control);
            pool._core.Attach();
        }
        catch
        {
            control.DisposeUnused();
            throw;
        }

        try
        {
            control.WaitWhileRemoving();
        }
        catch
        {
            pool.Dispose();
            throw;
        }

        return OpenPools.Track(pool);
    }

    /// <summary>Tells whether a pool of this name exists (a control segment is present).</summary>
    public static bool Exists(string name) => File.Exists(PoolName.PathOf(PoolName.ControlObject(PoolName.Normalize(name))));

    /// <summary>Removes a pool and all its segments. Processes still attached keep their mappings until they
    /// detach, as with an unlinked file. Returns false when there was no such pool.</summary>
    public static bool Remove(string name) => PoolRemoval.Remove(PoolName.Normalize(name));

    /// <summary>Removes the pool named <paramref name="name"/> if it is stale: no live process is attached and it is
    /// not persistent (or its control segment is damaged and no live process holds it). Decided under the pool's
    /// removal lock, so a pool that a process attaches to meanwhile is kept. Returns true when it was removed or
    /// was gone already.</summary>
    public static bool RemoveIfStale(string name) => PoolRemoval.TryRemoveStale(PoolName.Normalize(name));

    /// <summary>Recovers every process-table entry whose process died without detaching: repairs the slots it left
    /// locked and releases the references its guards held, so their slots can be recycled. An acquire that finds the
    /// pool full does the same by itself; call this to free the memory sooner. Returns how many entries were
    /// recovered.</summary>
    public int RecoverDeadProcesses()
    {
        ThrowIfDisposed();
        return _core.Recovery.ReclaimDeadProcesses();
    }

    /// <summary>Reclaims every entry whose process is dead (tests).</summary>
    internal int ReclaimDeadProcesses() => _core.Recovery.ReclaimDeadProcesses();

    /// <summary>Detaches this process: releases the references its guards still hold (as if it had died), and
    /// unmaps the pool once no guard of this process points into it any more.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _core.Blocking.BeginClose();
        _core.Blocking.WaitForAll();
        Volatile.Write(ref _liveCapacity, 0);
        OpenPools.Untrack(this);
        _detach.CloseAndDrain();
        lock (_core.Registry.RecoveryGate)
        {
            if (_core.Registry.Me >= 0)
            {
                _cuda.PinLeasedImports();
                _core.ReleaseOwnHoldingsLocked();
                _cuda.Detach();
                _core.LeaveEntryLocked();
            }
        }

        _core.Data.Clear();

        // One lock query without the removal lock first, so that detaching from a pool others still use does not
        // mark it Removing even for a moment; TryRemoveOwn checks again under the lock, through this process's own
        // descriptor and mapping (still held: the lease goes after).
        ControlSegment control = _core.Control;
        if (!control.IsPersistent && !ProcessRegistry.HasLiveProcess(control.Fd))
        {
            _ = PoolRemoval.TryRemoveOwn(control);
        }

        _core.Lease.Dispose(); // the mappings go once no guard of this process holds a lease
        control.Fd.Dispose();
        _core.Blocking.Dispose();
    }

    /// <summary>The first step of closing (see <see cref="Core.BlockingCalls.BeginClose"/>); the C ABI calls it when a
    /// pool handle is closed while calls are still in flight. Idempotent.</summary>
    internal void BeginClose() => _core.Blocking.BeginClose();

    /// <summary>In a forked child (see <see cref="OpenPools.AbandonInherited"/>): inert from now on.</summary>
    internal void AbandonInherited()
    {
        _inheritedThroughFork = true;
        _detach.CloseInChild(); // guard releases return at once
        Volatile.Write(ref _liveCapacity, 0); // every index is refused, then reported as inherited
        _disposed = true; // Dispose returns at once
        _core.Control.AbandonInherited();
    }

    /// <summary>Drops the lease a guard held on the control segment's mapping.</summary>
    internal void ReleaseControlLease() => _core.Lease.DangerousRelease();

    internal void ThrowIfDisposed()
    {
        if (_disposed)
        {
            ThrowDisposed();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowDisposed()
    {
        if (_inheritedThroughFork)
        {
            ThrowHelper.ThrowInheritedThroughFork(Bare);
        }

        ThrowHelper.ThrowPoolDisposed(Bare);
    }

    /// <summary>One compare for both checks: <see cref="_liveCapacity"/> is the capacity while the pool is open
    /// and 0 once it is disposed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckIndex(int metaIndex)
    {
        if ((uint)metaIndex >= (uint)_liveCapacity)
        {
            ThrowBadIndex(metaIndex);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBadIndex(int metaIndex)
    {
        ThrowIfDisposed();
        ThrowHelper.ThrowIndexOutOfRange(metaIndex, Capacity);
    }
}
