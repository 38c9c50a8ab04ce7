using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Inspection;

/// <summary>
/// Looks at pools from outside (<c>xmem ls</c>, <c>xmem stat</c>, <c>xmem gc</c>): reads their segments read-only,
/// without attaching, registering in the process table, or changing anything. Every value read from shared memory is
/// checked before use, so a damaged or hostile segment shows as <see cref="PoolStatus.Corrupt"/> rather than throwing
/// or crashing. Results are snapshots of pools that other processes may be changing.
/// </summary>
public static class PoolInspector
{
    private const int SlotBatch = 2048; // slot records read per pread (1 MiB)

    /// <summary>Every pool in <see cref="SharedMemoryDirectory.Path"/>, ordered by name.</summary>
    public static IReadOnlyList<PoolSummary> ListPools()
    {
        var pools = new List<PoolSummary>();
        foreach (string bare in PoolDirectory.PoolNames(null))
        {
            PoolSummary? s = Read(bare, collect: false, allSlots: false)?.Summary;
            if (s is not null)
            {
                pools.Add(s);
            }
        }

        pools.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return pools;
    }


    /// <summary>The figures of one pool. Throws <see cref="PoolNotFoundException"/> when there is none and
    /// <see cref="ArgumentException"/> for a malformed name; a pool that cannot be read is returned with its status.</summary>
    public static PoolSummary Summarize(string name) => ReadOrThrow(name, collect: false, allSlots: false).Summary;

    /// <summary>One pool with its slots and process table. By default only the slots that are not free or that keep
    /// memory are listed; <paramref name="allSlots"/> lists every slot.</summary>
    public static PoolDetails Inspect(string name, bool allSlots = false) => ReadOrThrow(name, collect: true, allSlots);

    /// <summary>Segment files that belong to no existing pool instance (their pool was removed or replaced):
    /// safe to delete. Segments of pools still being created or removed are never reported.</summary>
    public static IReadOnlyList<OrphanSegment> FindOrphanSegments()
    {
        var segments = new List<(string File, SegmentName Name)>();
        _ = PoolDirectory.PoolNames(segments);
        var orphans = new List<OrphanSegment>();
        var instances = new Dictionary<string, ulong?>(StringComparer.Ordinal);
        foreach ((string file, SegmentName name) in segments)
        {
            string pool = name.Pool;
            ulong instance = name.Instance;
            if (!instances.TryGetValue(pool, out ulong? current))
            {
                current = CurrentInstance(pool);
                instances[pool] = current;
            }

            // null: a pool that exists but cannot be told (initializing, corrupt, unreadable); leave its files alone.
            if (current is null || current.Value == instance)
            {
                continue;
            }

            string path = System.IO.Path.Combine(SharedMemoryDirectory.Path, file);
            long bytes = 0;
            try
            {
                bytes = new FileInfo(path).Length;
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }

            orphans.Add(new OrphanSegment { Name = file, Path = path, PoolName = pool, Bytes = bytes });
        }

        return orphans;
    }

    /// <summary>The instance of the pool named <paramref name="bare"/>: 0 when it does not exist (every segment of
    /// that name is an orphan), null when it exists but is not a ready, valid pool.</summary>
    private static ulong? CurrentInstance(string bare)
    {
        try
        {
            using SegmentReader? r = SegmentReader.TryOpen(SegmentNames.Control(bare));
            if (r is null)
            {
                return 0;
            }

            PoolHeader h = default;
            if (r.Read(new Span<PoolHeader>(ref h), 0) != 1 || HeaderCheck.Check(in h, r.FileSize, bare, out _) != HeaderFault.None
                || h.State != LayoutConstants.PoolStateReady)
            {
                return null;
            }

            return h.InstanceId;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or XmemException)
        {
            return null;
        }
    }

    private static PoolDetails ReadOrThrow(string name, bool collect, bool allSlots)
    {
        string bare = PoolName.Normalize(name);
        return Read(bare, collect, allSlots)
            ?? throw new PoolNotFoundException($"no xmem pool named '{bare}' (looked for {PoolName.PathOf(SegmentNames.Control(bare))}). List the pools with `xmem ls`, or check XMEM_SHM_DIR.", PoolName.PathOf(SegmentNames.Control(bare)));
    }

    /// <summary>Reads one pool; null when its control segment does not exist.</summary>
    private static PoolDetails? Read(string bare, bool collect, bool allSlots)
    {
        string obj = SegmentNames.Control(bare);
        string path = PoolName.PathOf(obj);
        using SegmentReader? reader = OpenControl(bare, obj, path, out PoolDetails? unreadable);
        if (reader is null)
        {
            return unreadable;
        }

        try
        {
            return ReadOpen(reader, bare, path, collect, allSlots);
        }
        catch (Exception e) when (e is XmemException or IOException or UnauthorizedAccessException)
        {
            return Unreadable(bare, path, PoolStatus.Corrupt, e.Message);
        }
    }

    /// <summary>Opens the control segment; null when it does not exist (<paramref name="unreadable"/> null) or cannot
    /// be opened (<paramref name="unreadable"/> says why).</summary>
    private static SegmentReader? OpenControl(string bare, string obj, string path, out PoolDetails? unreadable)
    {
        unreadable = null;
        try
        {
            return SegmentReader.TryOpen(obj);
        }
        catch (PoolPermissionException e)
        {
            unreadable = Unreadable(bare, path, PoolStatus.Inaccessible, e.Message);
        }
        catch (Exception e) when (e is XmemException or IOException or UnauthorizedAccessException)
        {
            unreadable = Unreadable(bare, path, PoolStatus.Corrupt, e.Message);
        }

        return null;
    }

    private static PoolDetails Unreadable(string bare, string path, PoolStatus status, string? problem) => new()
    {
        Summary = new PoolSummary { Name = bare, Path = path, Status = status, Problem = problem },
        Slots = [],
        Processes = [],
    };

    private static PoolDetails ReadOpen(SegmentReader reader, string bare, string path, bool collect, bool allSlots)
    {
        long fileSize = reader.FileSize;
        var alive = new bool[LayoutConstants.MaxProcesses];
        int aliveCount = 0;
        for (int i = 0; i < alive.Length; i++)
        {
            alive[i] = reader.IsLockedByOther(LayoutConstants.LivenessLockByte(i));
            aliveCount += alive[i] ? 1 : 0;
        }

        PoolHeader h = default;
        if (fileSize < LayoutConstants.HeaderSize || reader.Read(new Span<PoolHeader>(ref h), 0) != 1)
        {
            return alive[0]
                ? Unreadable(bare, path, PoolStatus.Initializing, null)
                : Unreadable(bare, path, PoolStatus.Corrupt, $"the control segment is {fileSize} bytes, smaller than its {LayoutConstants.HeaderSize}-byte header (its creator died while creating it)");
        }

        if (h.State == LayoutConstants.PoolStateInitializing)
        {
            return alive[0]
                ? Unreadable(bare, path, PoolStatus.Initializing, null)
                : Unreadable(bare, path, PoolStatus.Corrupt, "the pool was never finished: its creator died while creating it");
        }

        switch (HeaderCheck.Check(in h, fileSize, bare, out string? problem))
        {
            case HeaderFault.Incompatible:
                return Unreadable(bare, path, PoolStatus.Incompatible, problem);
            case HeaderFault.Corrupt:
                return Unreadable(bare, path, PoolStatus.Corrupt, problem);
        }

        if (h.State is LayoutConstants.PoolStateRemoving or LayoutConstants.PoolStateRemoved)
        {
            return Unreadable(bare, path, PoolStatus.Removing, null);
        }

        if (h.State != LayoutConstants.PoolStateReady)
        {
            return Unreadable(bare, path, PoolStatus.Corrupt, $"pool state {h.State} is not a known state");
        }

        int cap = h.Capacity; // validated: 1..MaxCapacity, and the file is large enough for it
        var procs = new ProcessEntry[LayoutConstants.MaxProcesses];
        _ = reader.Read<ProcessEntry>(procs, LayoutConstants.ProcessTableOffset);

        // Pass 1: the slot words and records (batched), keeping only what later passes need.
        var slots = new List<SlotInfo>();
        var words = collect ? new List<(int Slot, uint Gen, int Count)>() : null;
        int inUse = 0, dead = 0;
        long liveBytes = 0, memoryBytes = fileSize;
        var batch = new SlotRecord[Math.Min(SlotBatch, cap)];
        for (int first = 0; first < cap; first += batch.Length)
        {
            int n = Math.Min(batch.Length, cap - first);
            int got = reader.Read<SlotRecord>(batch.AsSpan(0, n), LayoutConstants.SlotTableOffset(cap) + ((long)first * LayoutConstants.SlotSize));
            for (int k = 0; k < got; k++)
            {
                SlotInfo si = TableSnapshot.DescribeSlot(first + k, in batch[k]);
                if (si.State is SlotState.Live or SlotState.Acquiring)
                {
                    inUse++;
                }

                if (si.State == SlotState.Live)
                {
                    liveBytes += si.Size;
                }

                memoryBytes += si.MemoryBytes;
                if (collect && (allSlots || si.State != SlotState.Free || si.MemoryBytes > 0))
                {
                    slots.Add(si);
                    if (si.Count > 0 && si.State != SlotState.Invalid)
                    {
                        words!.Add((slots.Count - 1, si.Generation, si.Count));
                    }
                }
            }
        }

        var entries = new List<ProcessEntryInfo>();
        for (int i = 0; i < procs.Length; i++)
        {
            uint st = procs[i].State;
            if (st == LayoutConstants.ProcessActive && !alive[i])
            {
                dead++;
            }

            if (collect && (st != LayoutConstants.ProcessFree || alive[i]))
            {
                entries.Add(new ProcessEntryInfo
                {
                    Entry = i,
                    Pid = procs[i].Pid,
                    Command = TableSnapshot.CommandOf(in procs[i]),
                    State = st switch { LayoutConstants.ProcessActive => "active", LayoutConstants.ProcessFree => "free", _ => "invalid" },
                    Alive = alive[i],
                    Waiters = Math.Max(0, procs[i].Waiters),
                });
            }
        }

        if (collect && words!.Count > 0)
        {
            TableSnapshot.AttributeHoldings(bare, h.InstanceId, cap, slots, words, entries);
        }

        // A channel's blocked bit counts only for an entry that is alive and shows threads waiting in channels.
        List<ChannelInfo> channels = collect
            ? ChannelSnapshot.Read(bare, h.InstanceId, i => (uint)i < (uint)alive.Length && alive[i] && procs[i].ChannelWaiters > 0)
            : [];
        long created = h.CreatedUnixNs;
        var summary = new PoolSummary
        {
            Name = bare,
            Path = path,
            Status = aliveCount > 0 ? PoolStatus.Live : PoolStatus.Stale,
            Capacity = cap,
            SlotsInUse = inUse,
            LiveBytes = liveBytes,
            MemoryBytes = memoryBytes,
            AttachedProcesses = aliveCount,
            DeadProcesses = dead,
            Persistent = (h.Flags & LayoutConstants.PoolFlagPersistent) != 0,
            Mode = (int)(reader.Access.Mode & 0x1FF),
            InstanceId = h.InstanceId,
            CreatorPid = h.CreatorPid,
            Created = created > 0 && created < 4_102_444_800_000_000_000L /* 2100 */ ? DateTimeOffset.FromUnixTimeMilliseconds(created / 1_000_000) : null,
            Acquires = ChannelSnapshot.Shown(h.Acquires),
            AcquireWaits = ChannelSnapshot.Shown(h.AcquireWaits),
            Recoveries = ChannelSnapshot.Shown(h.Recoveries),
            OrphansRemoved = ChannelSnapshot.Shown(h.OrphansRemoved),
        };
        return new PoolDetails { Summary = summary, Slots = slots, Processes = entries, Channels = channels };
    }
}
