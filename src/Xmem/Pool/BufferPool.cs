using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Xmem.Errors;
using Xmem.Interop;
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
public sealed unsafe partial class BufferPool : IDisposable
{
    private readonly string _bare;
    private readonly string _name;  // as the caller spelled it: "/cam0" or "cam0" (both are the pool named by _bare)
    private readonly SafeFd _controlFd;
    private readonly MappedRegion _control;
    private readonly PoolLease _lease;
    private readonly PoolHeader* _header;
    private readonly ProcessEntry* _procs;
    private readonly ulong* _hints;
    private readonly SlotRecord* _slots;
    private readonly int _capacity;
    private readonly int _hintWords;
    private readonly ulong _instance;

    /// <summary>The group and mode of every segment this process makes for the pool: the control segment's, from
    /// the kernel at open (the header's Mode field is writable by every member and is never read for this).</summary>
    private readonly SegmentAccess _access;
    private readonly MappingCache _mappings;
    private readonly Lock _recoveryGate = new();
    private int _me = -1;
    private int _tag;
    private MappedRegion? _holdingsRegion;
    private ulong* _holdings;
    private volatile bool _disposed;
    private volatile bool _detaching;
    private volatile bool _inheritedThroughFork;
    private int _guardOpsInFlight;
    // Closing while others wait: Dispose sets _closing, wakes every sleeper (the token's callbacks wake the futex words
    // they registered) and waits until _blockingCalls is 0. A blocking call counts itself in (a full-fence increment)
    // before its first sleep and then reads _closing; Dispose stores _closing and then (after a full fence) reads the
    // count: so either the call sees _closing and leaves, or Dispose sees the call and waits for it.
    private volatile bool _closing;
    private int _blockingCalls;
    private readonly CancellationTokenSource _closingSource = new();
    private readonly Lock _waitGate = new();
    private int _localWaiters;
    private int _liveCapacity;

    private BufferPool(string name, string bare, SafeFd fd, MappedRegion control)
    {
        _bare = bare;
        _name = name;
        _controlFd = fd;
        _control = control;
        _lease = new PoolLease(control);
        _header = (PoolHeader*)control.Address;
        _capacity = _header->Capacity;
        _liveCapacity = _capacity;
        _instance = _header->InstanceId;
        _access = SegmentFile.AccessOf(fd, PoolName.ControlObject(bare));
        _hintWords = (_capacity + 63) / 64;
        _procs = (ProcessEntry*)(control.Address + (nint)LayoutConstants.ProcessTableOffset);
        _hints = (ulong*)(control.Address + (nint)LayoutConstants.FreeHintsOffset);
        _slots = (SlotRecord*)(control.Address + (nint)LayoutConstants.SlotTableOffset(_capacity));
        _mappings = new MappingCache(_capacity, MappingCache.BudgetFromEnvironment());
    }

    /// <summary>Registers a pool that finished attaching, so that it is detached at process exit.</summary>
    private BufferPool Track()
    {
        lock (s_open)
        {
            s_open.Add(new WeakReference<BufferPool>(this));
        }

        return this;
    }

    private static readonly List<WeakReference<BufferPool>> s_open = CreateOpenList();

    /// <summary>Pools still open when the process exits normally are detached then, so that a process that forgot
    /// Dispose still gives back its references and removes a pool it was the last user of.</summary>
    private static List<WeakReference<BufferPool>> CreateOpenList()
    {
        AppDomain.CurrentDomain.ProcessExit += static (_, _) =>
        {
            BufferPool[] pools;
            lock (s_open)
            {
                pools = [.. s_open.Select(w => w.TryGetTarget(out BufferPool? p) ? p : null).OfType<BufferPool>()];
                s_open.Clear();
            }

            foreach (BufferPool p in pools)
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

    /// <summary>The pool's name as given to <see cref="Create"/> or <see cref="Open"/>: "/cam0" stays "/cam0", "cam0"
    /// stays "cam0" (both spellings name the same pool).</summary>
    public string Name => _name;

    /// <summary>The number of slots.</summary>
    public int Capacity => _capacity;

    /// <summary>True when the pool outlives its processes until removed (<c>xmem rm</c>).</summary>
    public bool IsPersistent => (Volatile.Read(ref _header->Flags) & LayoutConstants.PoolFlagPersistent) != 0;

    /// <summary>True in a child made by fork() for a pool its parent opened: the pool is inert here (its entry, its
    /// references and its liveness lock are the parent's), see <see cref="AbandonInheritedPools"/>.</summary>
    internal bool IsInheritedThroughFork => _inheritedThroughFork;

    /// <summary>This process's entry in the pool's process table.</summary>
    internal int ProcessEntryIndex => _me;

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

        // The name is given to a finished, locked file or not at all (InitializeNew), so a creator that finds it
        // taken meets either a live pool or a stale one, never another creator's half-made file.
        long deadline = Environment.TickCount64 + 2000;
        while (true)
        {
            BufferPool? pool = InitializeNew(name, bare, capacity, (uint)mode, persistent);
            if (pool is not null)
            {
                return pool;
            }

            bool removed = TryRemoveStale(bare, out bool busy);
            if (removed && Environment.TickCount64 < deadline)
            {
                continue; // stale, and now gone: try again
            }

            if (busy && Environment.TickCount64 < deadline)
            {
                Thread.Sleep(1); // another remover (a Create, a sweep, `xmem gc`) is deciding: wait for its verdict
                continue;
            }

            throw new PoolExistsException($"a pool named '{bare}' already exists and is in use (or persistent). Open it with BufferPool.Open, pick another name, or remove it with `xmem rm {bare}`.");
        }
    }

    /// <summary>Creation (docs/layout.md, "Creation"): makes the control segment as an unnamed file, locks entry 0's
    /// liveness byte, sizes it and writes the header, and only then names it with linkat(2), which never replaces an
    /// existing name. Returns null when the name is taken (nothing is left behind then).</summary>
    private static BufferPool? InitializeNew(string name, string bare, int capacity, uint mode, bool persistent)
    {
        string obj = PoolName.ControlObject(bare);
        SafeFd fd = SegmentFile.CreateUnnamed(mode);
        MappedRegion? region = null;
        bool named = false;
        try
        {
            // Entry 0's liveness lock marks the creator alive from before the file has a name: nobody can ever find
            // this pool by name with its creator alive but unlocked.
            if (!Libc.TryLockByte(fd.Fd, LayoutConstants.LivenessLockByte(0)))
            {
                throw new XmemException(XmemStatus.Internal, "could not lock a freshly created segment");
            }

            long size = LayoutConstants.SegmentSize(capacity);
            SegmentFile.Size(fd, size, reserve: true, obj);
            region = MappedRegion.Map(fd.Fd, size, writable: true, PoolName.PathOf(obj));
            var h = (PoolHeader*)region.Address;
            h->Magic = LayoutConstants.Magic;
            h->LayoutVersion = LayoutConstants.LayoutVersion;
            h->Capacity = capacity;
            h->MaxProcesses = LayoutConstants.MaxProcesses;
            h->SegmentSize = size;
            h->InstanceId = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) | 1;
            h->HeaderSize = LayoutConstants.HeaderSize;
            h->SlotSize = LayoutConstants.SlotSize;
            h->ProcessTableOffset = LayoutConstants.ProcessTableOffset;
            h->FreeHintsOffset = LayoutConstants.FreeHintsOffset;
            h->SlotTableOffset = LayoutConstants.SlotTableOffset(capacity);
            h->Flags = persistent ? LayoutConstants.PoolFlagPersistent : 0;
            h->Mode = mode;
            h->CreatedUnixNs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000;
            h->CreatorPid = ProcessInfo.OwnPid;
            var hints = (ulong*)(region.Address + (nint)LayoutConstants.FreeHintsOffset);
            for (int i = 0; i < capacity; i++)
            {
                hints[i / 64] |= 1UL << (i % 64);
            }

            // The name is the publication of the header (an opener reads it through its own mapping of the same
            // pages, after its open(2) found the name); linkat never replaces an existing name.
            if (!SegmentFile.Publish(fd, obj))
            {
                region.Dispose();
                fd.Dispose(); // the unnamed file goes with its last descriptor
                return null;
            }

            named = true;
            var pool = new BufferPool(name, bare, fd, region);
            if (!pool.RegisterEntry(0))
            {
                throw new PoolPermissionException($"pool '{bare}': the holdings segment name of a brand-new instance is held by a file this pool did not make; try again.", Errno.EEXIST);
            }

            // Published last, with release ordering: a reader that sees Ready sees every field above.
            Volatile.Write(ref h->State, LayoutConstants.PoolStateReady);
            return pool.Track();
        }
        catch
        {
            if (named)
            {
                AbandonUnfinished(fd, region!, bare);
            }

            region?.Dispose();
            fd.Dispose();
            throw;
        }
    }

    /// <summary>A creator that fails after naming its pool removes it as a remover would (under the removal lock,
    /// Removed before anything is unlinked), and unlinks the name only while it still names this instance.</summary>
    private static void AbandonUnfinished(SafeFd fd, MappedRegion region, string bare)
    {
        if (!Libc.TryLockByte(fd.Fd, LayoutConstants.RemovalLockByte))
        {
            return; // another remover has it: the pool is unfinished and nobody is in it, so that remover removes it
        }

        try
        {
            var h = (PoolHeader*)region.Address;
            ulong instance = h->InstanceId;
            string obj = PoolName.ControlObject(bare);
            bool ours;
            using (SafeFd? named = SegmentFile.TryOpen(obj, writable: false))
            {
                ours = named is not null && ReadInstance(named, obj) == instance;
            }

            Volatile.Write(ref h->State, LayoutConstants.PoolStateRemoved);
            try
            {
                _ = RemoveInstanceSegments(bare, instance, SegmentFile.AccessOf(fd, obj));
            }
            catch (XmemException)
            {
                // fstat failed: the segments are left as orphans for `xmem gc`; the original error matters more.
            }

            if (ours)
            {
                _ = SegmentFile.Unlink(obj);
            }
        }
        finally
        {
            Libc.UnlockByte(fd.Fd, LayoutConstants.RemovalLockByte);
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
        string obj = PoolName.ControlObject(bare);
        SafeFd fd = SegmentFile.TryOpen(obj, writable: true)
            ?? throw new PoolNotFoundException($"no xmem pool named '{bare}' (looked for {PoolName.PathOf(obj)}). Create it first with BufferPool.Create, or check XMEM_SHM_DIR.", PoolName.PathOf(obj), Errno.ENOENT);
        MappedRegion? region = null;
        try
        {
            long size = WaitForSize(fd, obj, bare);
            region = MappedRegion.Map(fd.Fd, size, writable: true, PoolName.PathOf(obj));
            WaitForReady(fd, (PoolHeader*)region.Address, bare);
            Validate((PoolHeader*)region.Address, size, bare);
            var pool = new BufferPool(name, bare, fd, region);
            pool.Attach();
            try
            {
                pool.WaitWhileRemoving();
            }
            catch
            {
                pool.Dispose();
                throw;
            }

            return pool.Track();
        }
        catch
        {
            region?.Dispose();
            fd.Dispose();
            throw;
        }
    }

    /// <summary>After attaching: if a remover marked the pool Removing, wait for it to give up (it saw us alive) or
    /// finish (then the pool is gone and opening fails cleanly).</summary>
    private void WaitWhileRemoving()
    {
        long deadline = Environment.TickCount64 + 5000;
        uint state;
        while ((state = Volatile.Read(ref _header->State)) is LayoutConstants.PoolStateRemoving or LayoutConstants.PoolStateRemoved)
        {
            if (state == LayoutConstants.PoolStateRemoved)
            {
                throw new PoolNotFoundException($"pool '{_bare}' was removed while this process opened it. Create it again with BufferPool.Create.", PoolName.PathOf(PoolName.ControlObject(_bare)));
            }

            if (Libc.IsByteLockedByOther(_controlFd.Fd, LayoutConstants.RemovalLockByte))
            {
                if (Environment.TickCount64 > deadline)
                {
                    throw new XmemTimeoutException($"pool '{_bare}' has been marked as being removed for over 5 s by a live process; try again, or see `xmem ls`.");
                }

                Thread.Sleep(1);
                continue;
            }

            // No remover at work: it either finished (the name is gone or names another instance) or died half-way.
            if (!NameStillNamesThisInstance())
            {
                throw new PoolNotFoundException($"pool '{_bare}' was removed while this process opened it. Create it again with BufferPool.Create.", PoolName.PathOf(PoolName.ControlObject(_bare)));
            }

            // A remover died between marking Removing and putting Ready back: repair it under the removal lock.
            if (Libc.TryLockByte(_controlFd.Fd, LayoutConstants.RemovalLockByte))
            {
                _ = Interlocked.CompareExchange(ref _header->State, LayoutConstants.PoolStateReady, LayoutConstants.PoolStateRemoving);
                Libc.UnlockByte(_controlFd.Fd, LayoutConstants.RemovalLockByte);
            }
        }
    }

    /// <summary>True when the pool's name still names the control segment of this instance.</summary>
    private bool NameStillNamesThisInstance()
    {
        string obj = PoolName.ControlObject(_bare);
        using SafeFd? fd = SegmentFile.TryOpen(obj, writable: false);
        return fd is not null && ReadInstance(fd, obj) == _instance;
    }

    /// <summary>Tells whether a pool of this name exists (a control segment is present).</summary>
    public static bool Exists(string name) => File.Exists(PoolName.PathOf(PoolName.ControlObject(PoolName.Normalize(name))));

    private static long WaitForSize(SafeFd fd, string obj, string bare)
    {
        // A creator sizes the file right after creating it; wait for it while it is alive, at most 2 s.
        long deadline = Environment.TickCount64 + 2000;
        while (true)
        {
            long size = SegmentFile.SizeOf(fd, obj);
            if (size >= LayoutConstants.HeaderSize)
            {
                return size;
            }

            if (!Libc.IsByteLockedByOther(fd.Fd, LayoutConstants.LivenessLockByte(0)) || Environment.TickCount64 > deadline)
            {
                ThrowHelper.ThrowCorrupt(bare, $"the control segment is {size} bytes, smaller than its header (its creator died while creating it)");
            }

            Thread.Sleep(1);
        }
    }

    private static void WaitForReady(SafeFd fd, PoolHeader* h, string bare)
    {
        long deadline = Environment.TickCount64 + 2000;
        while (true)
        {
            uint state = Volatile.Read(ref h->State);
            if (state == LayoutConstants.PoolStateReady)
            {
                return;
            }

            if (state == LayoutConstants.PoolStateRemoving)
            {
                return; // attach first, then decide (WaitWhileRemoving): see docs/layout.md, "Removal"
            }

            if (state == LayoutConstants.PoolStateRemoved)
            {
                _ = TryRemoveStale(bare); // finish the unlinking of a remover that died after its commit point
                throw new PoolNotFoundException($"pool '{bare}' has been removed. Create it again with BufferPool.Create.", PoolName.PathOf(PoolName.ControlObject(bare)));
            }

            if (state != LayoutConstants.PoolStateInitializing)
            {
                ThrowHelper.ThrowCorrupt(bare, $"pool state {state} is not a known state");
            }

            if (!Libc.IsByteLockedByOther(fd.Fd, LayoutConstants.LivenessLockByte(0)) || Environment.TickCount64 > deadline)
            {
                ThrowHelper.ThrowCorrupt(bare, "the pool was never finished: its creator died while creating it");
            }

            Thread.Sleep(1);
        }
    }

    /// <summary>Checks every header field against the layout before any of it is used (never trust shared memory).</summary>
    internal static void Validate(PoolHeader* h, long fileSize, string bare)
    {
        if (h->Magic != LayoutConstants.Magic)
        {
            ThrowHelper.ThrowCorrupt(bare, "the control segment does not start with xmem's magic number");
        }

        if (h->LayoutVersion != LayoutConstants.LayoutVersion)
        {
            throw new IncompatibleLayoutException($"pool '{bare}' uses layout version {h->LayoutVersion}, this xmem reads version {LayoutConstants.LayoutVersion}. Use the same xmem version in every process, or remove the pool (`xmem rm {bare}`).");
        }

        int cap = h->Capacity;
        if (cap < 1 || cap > LayoutConstants.MaxCapacity)
        {
            ThrowHelper.ThrowCorrupt(bare, $"capacity {cap} is outside 1..{LayoutConstants.MaxCapacity}");
        }

        if (h->HeaderSize != LayoutConstants.HeaderSize || h->SlotSize != LayoutConstants.SlotSize || h->MaxProcesses != LayoutConstants.MaxProcesses
            || h->ProcessTableOffset != LayoutConstants.ProcessTableOffset || h->FreeHintsOffset != LayoutConstants.FreeHintsOffset
            || h->SlotTableOffset != LayoutConstants.SlotTableOffset(cap))
        {
            ThrowHelper.ThrowCorrupt(bare, "header sizes or offsets do not match the layout");
        }

        long need = LayoutConstants.SegmentSize(cap);
        if (h->SegmentSize != need || fileSize < need)
        {
            ThrowHelper.ThrowCorrupt(bare, $"the segment is {fileSize} bytes (header says {h->SegmentSize}) but capacity {cap} needs {need}");
        }
    }

    /// <summary>Removes a pool and all its segments. Processes still attached keep their mappings until they
    /// detach, as with an unlinked file. Returns false when there was no such pool.</summary>
    public static bool Remove(string name)
    {
        string bare = PoolName.Normalize(name);
        string obj = PoolName.ControlObject(bare);
        using SafeFd? fd = SegmentFile.TryOpen(obj, writable: true);
        if (fd is null)
        {
            return false;
        }

        // Removers exclude each other through the removal lock; one that holds it for long is waited on at most 2 s.
        long deadline = Environment.TickCount64 + 2000;
        bool locked;
        while (!(locked = Libc.TryLockByte(fd.Fd, LayoutConstants.RemovalLockByte)) && Environment.TickCount64 < deadline)
        {
            Thread.Sleep(1);
        }

        List<string> denied;
        bool unlinked;
        try
        {
            ulong instance = MarkRemoved(fd, obj);
            denied = RemoveInstanceSegments(bare, instance, SegmentFile.AccessOf(fd, obj));
            unlinked = SegmentFile.Unlink(obj);
        }
        finally
        {
            if (locked)
            {
                Libc.UnlockByte(fd.Fd, LayoutConstants.RemovalLockByte);
            }
        }

        if (denied.Count > 0)
        {
            throw new PoolPermissionException(DescribeDenied(bare, denied), Errno.EPERM);
        }

        return unlinked;
    }

    /// <summary>The report of a removal that left segments the kernel would not let this process unlink.</summary>
    private static string DescribeDenied(string bare, List<string> denied)
    {
        string first = string.Join(", ", denied.Take(4));
        string more = denied.Count > 4 ? $" and {denied.Count - 4} more" : "";
        return $"pool '{bare}' was removed, but {denied.Count} of its segments could not be unlinked ({first}{more}): they were made by other users, and in {SharedMemoryDirectory.Path} (a sticky directory) only a file's owner or root may remove it. Run `xmem gc` as their owner or as root.";
    }

    /// <summary>Publishes State = Removed (the commit point of a removal: from here on openers fail and any remover
    /// finishes the job) and returns the instance id; 0 when the segment is no pool of ours.</summary>
    private static ulong MarkRemoved(SafeFd fd, string obj)
    {
        if (SegmentFile.SizeOf(fd, obj) < LayoutConstants.HeaderSize)
        {
            return 0;
        }

        using MappedRegion r = MappedRegion.Map(fd.Fd, LayoutConstants.HeaderSize, writable: true, PoolName.PathOf(obj));
        var h = (PoolHeader*)r.Address;
        if (h->Magic != LayoutConstants.Magic)
        {
            return 0;
        }

        Interlocked.Exchange(ref h->State, LayoutConstants.PoolStateRemoved);
        return h->InstanceId;
    }

    private static ulong ReadInstance(SafeFd fd, string obj)
    {
        long size = SegmentFile.SizeOf(fd, obj);
        if (size < LayoutConstants.HeaderSize)
        {
            return 0;
        }

        using MappedRegion r = MappedRegion.Map(fd.Fd, LayoutConstants.HeaderSize, writable: false, PoolName.PathOf(obj));
        return ((PoolHeader*)r.Address)->InstanceId;
    }

    /// <summary>Unlinks the data and holdings segments of one pool instance (instance 0: of every instance). Only
    /// the pool's own files (its group and mode, <paramref name="access"/>) are unlinked, never a stranger's; returns
    /// the pool's files that the kernel would not let this process unlink (made by another member).</summary>
    private static List<string> RemoveInstanceSegments(string bare, ulong instance, SegmentAccess access)
    {
        var denied = new List<string>();
        string dir = SharedMemoryDirectory.Path;
        string prefix = instance == 0 ? LayoutConstants.ObjectPrefix + bare + "." : PoolName.InstancePrefix(bare, instance);
        try
        {
            foreach (string path in Directory.EnumerateFiles(dir))
            {
                // Filtered here rather than by a search pattern, whose "name.*" would match "name" itself.
                string file = Path.GetFileName(path);
                if (!file.StartsWith(prefix, StringComparison.Ordinal) || (instance == 0 && !LooksLikeInstanceSegment(file, bare)))
                {
                    continue; // not ours, or another pool whose name merely starts with this one's
                }

                if (SegmentFile.OwnershipOf(file, access, out _) == SegmentOwnership.Pool && SegmentFile.TryUnlink(file) == UnlinkOutcome.Denied)
                {
                    denied.Add(file);
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return denied;
    }

    private static bool LooksLikeInstanceSegment(string file, string bare)
    {
        // xmem.v1.<bare>.<16 hex>.(s|p)...
        int start = LayoutConstants.ObjectPrefix.Length + bare.Length + 1;
        if (file.Length <= start)
        {
            return false;
        }

        string rest = file[start..];
        return rest.Length > 18 && rest[16] == '.' && rest.AsSpan(0, 16).IndexOfAnyExcept(HexDigits) < 0;
    }

    private static readonly System.Buffers.SearchValues<char> HexDigits = System.Buffers.SearchValues.Create("0123456789abcdef");


    /// <summary>Removes the pool at <paramref name="bare"/> when no live process is attached and it is not
    /// persistent. Returns true when removed (or gone already).</summary>
    internal static bool TryRemoveStale(string bare) => TryRemoveStale(bare, out _);

    /// <summary>As <see cref="TryRemoveStale(string)"/>; <paramref name="busy"/> tells that another remover held the
    /// removal lock, so the verdict is still open (theirs will follow).</summary>
    internal static bool TryRemoveStale(string bare, out bool busy)
    {
        busy = false;
        string obj = PoolName.ControlObject(bare);
        using SafeFd? fd = SegmentFile.TryOpen(obj, writable: true);
        if (fd is null)
        {
            return true;
        }

        if (!Libc.TryLockByte(fd.Fd, LayoutConstants.RemovalLockByte))
        {
            busy = true;
            return false; // someone else is removing or replacing it
        }

        try
        {
            long size = SegmentFile.SizeOf(fd, obj);
            if (size < LayoutConstants.HeaderSize)
            {
                if (HasLiveProcess(fd))
                {
                    return false; // no file of this version (its name is given to a sized file): leave it to its owner
                }

                _ = SegmentFile.Unlink(obj);
                return true;
            }

            using MappedRegion r = MappedRegion.Map(fd.Fd, LayoutConstants.HeaderSize, writable: true, PoolName.PathOf(obj));
            var h = (PoolHeader*)r.Address;
            bool ours = h->Magic == LayoutConstants.Magic;
            if (ours && Volatile.Read(ref h->State) == LayoutConstants.PoolStateRemoved)
            {
                // A remover died after the commit point: finish its job, whoever is still attached.
                _ = RemoveInstanceSegments(bare, h->InstanceId, SegmentFile.AccessOf(fd, obj));
                _ = SegmentFile.Unlink(obj);
                return true;
            }

            if (ours && Volatile.Read(ref h->State) == LayoutConstants.PoolStateInitializing)
            {
                // Its creator locked entry 0 before naming it and publishes Ready while holding that lock: alive, it
                // is still writing it (and its State must not be touched); dead, nobody ever attached (Open refuses
                // an unfinished pool without a live creator), so it is removed at once.
                if (HasLiveProcess(fd))
                {
                    return false;
                }

                Volatile.Write(ref h->State, LayoutConstants.PoolStateRemoved);
                _ = RemoveInstanceSegments(bare, h->InstanceId, SegmentFile.AccessOf(fd, obj));
                _ = SegmentFile.Unlink(obj);
                return true;
            }

            if (ours && (h->Flags & LayoutConstants.PoolFlagPersistent) != 0 && Volatile.Read(ref h->State) == LayoutConstants.PoolStateReady)
            {
                return false;
            }

            // Removing is published before the liveness checks, and an opener locks its entry before it reads the
            // state: either we see the opener alive, or the opener sees Removing (docs/layout.md, "Removal").
            if (ours)
            {
                _ = Interlocked.Exchange(ref h->State, LayoutConstants.PoolStateRemoving);
            }

            if (HasLiveProcess(fd))
            {
                if (ours)
                {
                    // A Removing found here was left by a remover that died (we hold the removal lock): put Ready.
                    Volatile.Write(ref h->State, LayoutConstants.PoolStateReady);
                }

                return false;
            }

            // The commit point: from here on an opener fails cleanly and a remover that finds the pool finishes the
            // job, so a remover killed while unlinking never leaves a half-removed pool that looks usable.
            if (ours)
            {
                Volatile.Write(ref h->State, LayoutConstants.PoolStateRemoved);
            }

            // Segments it cannot unlink (other members' files) are left for `xmem gc` run by their owner or root,
            // which reports any it cannot remove either.
            _ = RemoveInstanceSegments(bare, ours ? h->InstanceId : 0, SegmentFile.AccessOf(fd, obj));

            // While we hold the removal lock nobody else unlinks this name, so it still names this file.
            _ = SegmentFile.Unlink(obj);
            return true;
        }
        finally
        {
            Libc.UnlockByte(fd.Fd, LayoutConstants.RemovalLockByte);
        }
    }

    /// <summary>A look without any lock or write: the pool at <paramref name="bare"/> has this layout's header, is not
    /// persistent, and no process-table entry is alive. <see cref="TryRemoveStale(string, out bool)"/> decides.</summary>
    internal static bool LooksStale(string bare)
    {
        string obj = PoolName.ControlObject(bare);
        using SafeFd? fd = SegmentFile.TryOpen(obj, writable: false);
        if (fd is null || SegmentFile.SizeOf(fd, obj) < LayoutConstants.HeaderSize)
        {
            return false;
        }

        using (MappedRegion r = MappedRegion.Map(fd.Fd, LayoutConstants.HeaderSize, writable: false, PoolName.PathOf(obj)))
        {
            var h = (PoolHeader*)r.Address;
            if (h->Magic != LayoutConstants.Magic || h->LayoutVersion != LayoutConstants.LayoutVersion
                || (Volatile.Read(ref h->Flags) & LayoutConstants.PoolFlagPersistent) != 0)
            {
                return false;
            }
        }

        return !HasLiveProcess(fd);
    }

    /// <summary>True when any process-table entry's liveness byte is locked by another open file description: one
    /// F_OFD_GETLK over the whole table answers it.</summary>
    internal static bool HasLiveProcess(SafeFd fd) =>
        Libc.IsRangeLockedByOther(fd.Fd, LayoutConstants.ProcessTableOffset, (long)LayoutConstants.MaxProcesses * LayoutConstants.ProcessEntrySize);

    /// <summary>Detaches this process: releases the references its guards still hold (as if it had died), and
    /// unmaps the pool once no guard of this process points into it any more.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        BeginClose();
        WaitForBlockingCalls();
        Volatile.Write(ref _liveCapacity, 0);
        lock (s_open)
        {
            s_open.RemoveAll(w => !w.TryGetTarget(out BufferPool? p) || ReferenceEquals(p, this));
        }

        _detaching = true;
        Interlocked.MemoryBarrier();
        var spin = new SpinWait();
        while (Volatile.Read(ref _guardOpsInFlight) != 0)
        {
            spin.SpinOnce(); // a guard release on another thread: a few hundred nanoseconds
        }

        lock (_recoveryGate)
        {
            if (_me >= 0)
            {
                ReleaseAllHoldings(_me, _holdings);
                DetachCuda();
                ProcessEntry* e = &_procs[_me];
                Volatile.Write(ref e->State, LayoutConstants.ProcessFree);
                _ = SegmentFile.Unlink(PoolName.HoldingsObject(_bare, _instance, _me));
                Libc.UnlockByte(_controlFd.Fd, LayoutConstants.LivenessLockByte(_me));
                _me = -1;
            }
        }

        lock (_mappings.Gate)
        {
            _mappings.ClearLocked();
        }

        // One lock query without the removal lock first, so that detaching from a pool others still use does not
        // mark it Removing even for a moment; TryRemoveStale checks again under the lock.
        bool removeNow = !IsPersistent && !HasLiveProcess(_controlFd) && NameStillNamesThisInstance();
        _lease.Dispose(); // the mappings go once no guard of this process holds a lease
        if (removeNow)
        {
            _ = TryRemoveStale(_bare);
        }

        _controlFd.Dispose();
        _closingSource.Dispose();
    }

    /// <summary>The first step of closing: from here on every blocking call on this pool (a wait for a slot, a channel
    /// receive or send) wakes and throws ObjectDisposedException; nothing is detached yet. Dispose begins with it; the
    /// C ABI calls it when a pool handle is closed while calls are still in flight. Idempotent.</summary>
    internal void BeginClose()
    {
        _closing = true;
        Interlocked.MemoryBarrier(); // the store above before the count read in WaitForBlockingCalls (see the fields)
        try
        {
            _closingSource.Cancel(); // runs the wake callbacks of every sleeper registered so far
        }
        catch (ObjectDisposedException)
        {
            // Disposed already: nothing waits any more.
        }
    }

    /// <summary>Waits until every blocking call has left. A sleeper that registered its wake after the cancel
    /// above, or read its futex word just before it, sleeps at most one slice (100 ms) more; the free-slot word is
    /// woken again meanwhile, which costs other processes' waiters one extra scan at most.</summary>
    private void WaitForBlockingCalls()
    {
        int rounds = 0;
        while (Volatile.Read(ref _blockingCalls) != 0)
        {
            if (rounds++ % 10 == 0)
            {
                _ = Libc.FutexWakeAll((nint)(&_header->FreeEpoch));
            }

            Thread.Sleep(1);
        }
    }

    /// <summary>Counts a blocking call in, before its first sleep; throws ObjectDisposedException when the pool is
    /// closing. Every call of it that returns is matched by one <see cref="ExitBlocking"/>.</summary>
    internal void EnterBlocking()
    {
        Interlocked.Increment(ref _blockingCalls); // full fence: before the read of _closing (see the fields)
        if (_closing)
        {
            Interlocked.Decrement(ref _blockingCalls);
            ThrowHelper.ThrowPoolClosedWhileWaiting(_bare);
        }
    }

    /// <summary>Counts a blocking call out.</summary>
    internal void ExitBlocking() => Interlocked.Decrement(ref _blockingCalls);

    /// <summary>Throws ObjectDisposedException once the pool is closing: a counted blocking call checks it after
    /// every wake.</summary>
    internal void ThrowIfClosing()
    {
        if (_closing)
        {
            ThrowHelper.ThrowPoolClosedWhileWaiting(_bare);
        }
    }

    /// <summary>Makes a close wake a sleeper on <paramref name="word"/> (a futex word in shared memory).</summary>
    internal CancellationTokenRegistration WakeOnClose(uint* word) =>
        _closingSource.Token.Register(static p => Libc.FutexWakeAll((nint)p!), (nint)word);

    /// <summary>Drops the lease a guard held on the control segment's mapping.</summary>
    internal void ReleaseControlLease() => _lease.DangerousRelease();

    private void ThrowIfDisposed()
    {
        if (_disposed)
        {
            ThrowDisposed();
        }
    }

    private void ThrowDisposed()
    {
        if (_inheritedThroughFork)
        {
            ThrowHelper.ThrowInheritedThroughFork(_bare);
        }

        ThrowHelper.ThrowPoolDisposed(_bare);
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
    /// stay (they hold no lock), so views the child inherited stay readable.
    /// </summary>
    internal static void AbandonInheritedPools()
    {
        BufferPool[] pools;
        lock (s_open)
        {
            pools = [.. s_open.Select(w => w.TryGetTarget(out BufferPool? p) ? p : null).OfType<BufferPool>()];
            s_open.Clear(); // nor detached at this child's exit
        }

        foreach (BufferPool p in pools)
        {
            p._inheritedThroughFork = true;
            p._detaching = true; // guard releases return at once (ReleaseGuardReference)
            Volatile.Write(ref p._liveCapacity, 0); // every index is refused, then reported as inherited
            p._disposed = true; // Dispose returns at once
            p._controlFd.CloseInheritedCopy();
            p._control.ReplaceInheritedWithZeros(writable: true);
            p.DropInheritedCudaMapping();
        }
    }

    // ---------------------------------------------------------------- process registry

    /// <summary>Takes a free process-table entry: its liveness byte is locked first (so a process that dies at any
    /// later point is seen as dead), then its holdings segment is made, then the entry is published Active.</summary>
    private void Attach()
    {
        int skipped = 0;
        for (int i = 0; i < LayoutConstants.MaxProcesses; i++)
        {
            if (!Libc.TryLockByte(_controlFd.Fd, LayoutConstants.LivenessLockByte(i)))
            {
                continue; // a live process has it
            }

            if (RegisterEntry(i))
            {
                return;
            }

            skipped++; // its holdings name is held by a file the pool did not make: another entry will do
        }

        if (skipped > 0)
        {
            throw new PoolPermissionException($"pool '{_bare}': no process entry could be taken; {skipped} free entries have their holdings segment name ({PoolName.InstancePrefix(_bare, _instance)}p<i>) held by files this pool did not make (another group or mode). Remove those files as root or as their owner.", Errno.EEXIST);
        }

        throw new TooManyProcessesException($"pool '{_bare}' already has {LayoutConstants.MaxProcesses} attached processes; detach some (Dispose) before attaching more.");
    }

    /// <summary>Registers this process in entry <paramref name="i"/>, whose liveness byte this descriptor holds.
    /// Returns false (entry freed and unlocked again) when the entry's holdings name is held by a file the pool did
    /// not make: a stranger must not lock the pool's users out by pre-creating names it can see in /dev/shm.</summary>
    private bool RegisterEntry(int i)
    {
        bool madeHoldings = false;
        try
        {
            lock (_recoveryGate)
            {
                // We hold entry i's lock, so we act as entry i from here on: recovering its dead previous owner
                // (same tag), and any other dead entry whose locked slot the recovery meets.
                _me = i;
                _tag = i + 1;
                ProcessEntry* e = &_procs[i];
                if (Volatile.Read(ref e->State) != LayoutConstants.ProcessFree)
                {
                    RecoverEntryLocked(i); // its previous owner died without detaching
                }

                // Registering before the holdings segment exists: a death from here on leaves a non-free entry,
                // which recovery frees together with the segment.
                Volatile.Write(ref e->State, LayoutConstants.ProcessRegistering);

                string holdingsObj = PoolName.HoldingsObject(_bare, _instance, i);
                SafeFd? hfd = MakeHoldingsSegment(holdingsObj, out madeHoldings);
                if (hfd is null)
                {
                    Volatile.Write(ref e->State, LayoutConstants.ProcessFree);
                    _me = -1;
                    _tag = 0;
                    Libc.UnlockByte(_controlFd.Fd, LayoutConstants.LivenessLockByte(i));
                    return false;
                }

                using (hfd)
                {
                    long bytes = Math.Max(8L * _capacity, LayoutConstants.PageSize);
                    if (!madeHoldings)
                    {
                        SegmentFile.Size(hfd, 0, reserve: false, holdingsObj); // a reused file starts from zeros
                    }

                    SegmentFile.Size(hfd, bytes, reserve: true, holdingsObj);
                    _holdingsRegion = MappedRegion.Map(hfd.Fd, bytes, writable: true, PoolName.PathOf(holdingsObj));
                    _holdings = (ulong*)_holdingsRegion.Address;
                    _lease.AdoptHoldings(_holdingsRegion);
                }

                int pid = ProcessInfo.OwnPid;
                e->Pid = pid;
                e->StartTime = ProcessInfo.OwnStartTime;
                e->Waiters = 0;
                Interlocked.And(ref _header->WaitMask[i >> 6], ~(1UL << (i & 63)));
                e->Incarnation++;
                string comm = ProcessInfo.OwnComm;
                Span<byte> commBytes = new(e->Comm, 16);
                commBytes.Clear();
                System.Text.Encoding.UTF8.GetBytes(comm.AsSpan(0, Math.Min(comm.Length, 15)), commBytes);
                Volatile.Write(ref e->State, LayoutConstants.ProcessActive);
            }

            return true;
        }
        catch
        {
            if (_me == i)
            {
                Volatile.Write(ref _procs[i].State, LayoutConstants.ProcessFree);
                if (madeHoldings)
                {
                    _ = SegmentFile.Unlink(PoolName.HoldingsObject(_bare, _instance, i));
                }

                _me = -1;
                _tag = 0;
            }

            Libc.UnlockByte(_controlFd.Fd, LayoutConstants.LivenessLockByte(i));
            throw;
        }
    }

    /// <summary>Makes the holdings segment of the entry this process holds. An existing file of that name is a
    /// leftover of a member that died before publishing its entry (it holds nothing): unlinked and made again, or,
    /// when the kernel will not let this process unlink it (a sticky /dev/shm: only its owner may), reused — it has
    /// the pool's group and mode, so this process can write it. A file of another group or mode is a stranger's: the
    /// entry is skipped (null), the file left alone.</summary>
    private SafeFd? MakeHoldingsSegment(string obj, out bool made)
    {
        made = false;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            SafeFd? fd = SegmentFile.TryCreateExclusive(obj, _access);
            if (fd is not null)
            {
                made = true;
                return fd;
            }

            if (SegmentFile.OwnershipOf(obj, _access, out _) == SegmentOwnership.Foreign)
            {
                return null;
            }

            if (SegmentFile.TryUnlink(obj) is UnlinkOutcome.Removed or UnlinkOutcome.Missing)
            {
                continue;
            }

            try
            {
                fd = SegmentFile.TryOpen(obj, writable: true);
            }
            catch (PoolPermissionException)
            {
                return null;
            }

            if (fd is not null && SegmentFile.IsPoolFile(fd, _access, obj))
            {
                return fd;
            }

            fd?.Dispose();
        }

        return null;
    }
}
