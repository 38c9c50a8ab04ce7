using System.Text.RegularExpressions;
using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Inspection;

/// <summary>
/// Looks at pools from outside (<c>xmem ls</c>, <c>xmem stat</c>, <c>xmem gc</c>): reads their segments read-only,
/// without attaching, registering in the process table, or changing anything. Every value read from shared memory is
/// checked before use, so a damaged or hostile segment shows as <see cref="PoolStatus.Corrupt"/> rather than throwing
/// or crashing. Results are snapshots of pools that other processes may be changing.
/// </summary>
public static partial class PoolInspector
{
    private const int SlotBatch = 2048; // slot records read per pread (1 MiB)

    /// <summary>Every pool in <see cref="SharedMemoryDirectory.Path"/>, ordered by name.</summary>
    public static IReadOnlyList<PoolSummary> ListPools()
    {
        var pools = new List<PoolSummary>();
        foreach (string bare in PoolNames(out _))
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

    /// <summary>The names of the pools in the directory (their control segments), unordered; nothing is read but the
    /// directory.</summary>
    internal static List<string> ListPoolNames() => PoolNames(out _);

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
        PoolNames(out List<(string File, string Pool, ulong Instance)> segments);
        var orphans = new List<OrphanSegment>();
        var instances = new Dictionary<string, ulong?>(StringComparer.Ordinal);
        foreach ((string file, string pool, ulong instance) in segments)
        {
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
            using SegmentReader? r = SegmentReader.TryOpen(PoolName.ControlObject(bare));
            if (r is null)
            {
                return 0;
            }

            PoolHeader h = default;
            if (r.Read(new Span<PoolHeader>(ref h), 0) != 1 || !IsValidHeader(h, r.FileSize, bare, out _)
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

    // xmem.v1.<pool>.<instance: 16 hex>.<kind>: s<slot>.g<memgen> (data), p<entry> (holdings), and whatever other
    // per-instance segments the pool has (channels, descriptions): every one carries the instance it belongs to.
    [GeneratedRegex(@"^xmem\.v1\.(?<pool>.+)\.(?<inst>[0-9a-f]{16})\.[A-Za-z0-9_-][A-Za-z0-9._-]*$", RegexOptions.CultureInvariant)]
    private static partial Regex InstanceSegmentName();

    /// <summary>Pool names of the control segments in the directory; <paramref name="segments"/> gets the files
    /// that look like instance segments (data or holdings).</summary>
    private static List<string> PoolNames(out List<(string File, string Pool, ulong Instance)> segments)
    {
        segments = [];
        var files = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            foreach (string path in Directory.EnumerateFiles(SharedMemoryDirectory.Path, LayoutConstants.ObjectPrefix + "*"))
            {
                files.Add(System.IO.Path.GetFileName(path));
            }
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }

        var names = new List<string>();
        foreach (string file in files)
        {
            Match m = InstanceSegmentName().Match(file);
            if (m.Success && ValidName(m.Groups["pool"].Value))
            {
                string pool = m.Groups["pool"].Value;
                // A pool whose name merely looks like a segment's is told apart by its header.
                if (files.Contains(LayoutConstants.ObjectPrefix + pool) || !LooksLikeControlSegment(file))
                {
                    segments.Add((file, pool, ulong.Parse(m.Groups["inst"].ValueSpan, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture)));
                    continue;
                }
            }

            string bare = file[LayoutConstants.ObjectPrefix.Length..];
            if (ValidName(bare))
            {
                names.Add(bare);
            }
        }

        return names;
    }

    private static bool ValidName(string bare)
    {
        try
        {
            return PoolName.Normalize(bare) == bare;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static bool LooksLikeControlSegment(string file)
    {
        try
        {
            using SegmentReader? r = SegmentReader.TryOpen(file);
            PoolHeader h = default;
            return r is not null && r.Read(new Span<PoolHeader>(ref h), 0) == 1 && h.Magic == LayoutConstants.Magic;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or XmemException)
        {
            return false;
        }
    }

    private static PoolDetails ReadOrThrow(string name, bool collect, bool allSlots)
    {
        string bare = PoolName.Normalize(name);
        return Read(bare, collect, allSlots)
            ?? throw new PoolNotFoundException($"no xmem pool named '{bare}' (looked for {PoolName.PathOf(PoolName.ControlObject(bare))}). List the pools with `xmem ls`, or check XMEM_SHM_DIR.", PoolName.PathOf(PoolName.ControlObject(bare)));
    }

    /// <summary>Reads one pool; null when its control segment does not exist.</summary>
    private static PoolDetails? Read(string bare, bool collect, bool allSlots)
    {
        string obj = PoolName.ControlObject(bare);
        string path = PoolName.PathOf(obj);
        SegmentReader? reader;
        try
        {
            reader = SegmentReader.TryOpen(obj);
        }
        catch (PoolPermissionException e)
        {
            return Unreadable(bare, path, PoolStatus.Inaccessible, e.Message);
        }
        catch (Exception e) when (e is XmemException or IOException or UnauthorizedAccessException)
        {
            return Unreadable(bare, path, PoolStatus.Corrupt, e.Message);
        }

        if (reader is null)
        {
            return null;
        }

        using (reader)
        {
            try
            {
                return ReadOpen(reader, bare, path, collect, allSlots);
            }
            catch (Exception e) when (e is XmemException or IOException or UnauthorizedAccessException)
            {
                return Unreadable(bare, path, PoolStatus.Corrupt, e.Message);
            }
        }
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

        if (!IsValidHeader(h, fileSize, bare, out PoolStatus bad, out string? problem))
        {
            return Unreadable(bare, path, bad, problem!);
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
                SlotInfo si = DescribeSlot(first + k, in batch[k]);
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
                    Command = CommandOf(in procs[i]),
                    State = st switch { LayoutConstants.ProcessActive => "active", LayoutConstants.ProcessFree => "free", _ => "invalid" },
                    Alive = alive[i],
                    Waiters = Math.Max(0, procs[i].Waiters),
                });
            }
        }

        if (collect && words!.Count > 0)
        {
            AttributeHoldings(bare, h.InstanceId, cap, slots, words, entries);
        }

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
        };
        return new PoolDetails { Summary = summary, Slots = slots, Processes = entries };
    }

    private static bool IsValidHeader(in PoolHeader h, long fileSize, string bare, out string? problem) =>
        IsValidHeader(h, fileSize, bare, out _, out problem);

    /// <summary>The header checks of <see cref="HeaderCheck.Validate"/>, on a private copy, without throwing.</summary>
    private static unsafe bool IsValidHeader(PoolHeader h, long fileSize, string bare, out PoolStatus status, out string? problem)
    {
        try
        {
            HeaderCheck.Validate(&h, fileSize, bare);
            status = PoolStatus.Live;
            problem = null;
            return true;
        }
        catch (IncompatibleLayoutException e)
        {
            status = PoolStatus.Incompatible;
            problem = e.Message;
            return false;
        }
        catch (CorruptSegmentException e)
        {
            status = PoolStatus.Corrupt;
            problem = e.Message;
            return false;
        }
    }

    private static SlotInfo DescribeSlot(int index, in SlotRecord r)
    {
        ulong w = r.Word;
        uint state = SlotWord.State(w);
        int count = SlotWord.Count(w);
        int owner = SlotWord.Owner(w);
        long cap = r.DataCapacity;
        long size = r.Size;
        string kind = r.Kind switch { LayoutConstants.KindCpu => "cpu", LayoutConstants.KindCuda => "cuda", LayoutConstants.KindNone => "none", _ => $"invalid ({r.Kind})" };
        string? problem = null;
        if (state > SlotWord.Live)
        {
            problem = $"slot state {state} is not a known state";
        }
        else if (owner > LayoutConstants.MaxProcesses)
        {
            problem = $"lock owner {owner} is not a process entry";
        }
        else if (cap < 0 || cap > (1L << 46) || (cap % LayoutConstants.PageSize) != 0 && r.Kind == LayoutConstants.KindCpu)
        {
            problem = $"memory size {cap} is not a page multiple within 0..64 TiB";
        }
        else if (r.Kind > LayoutConstants.KindCuda)
        {
            problem = $"memory kind {r.Kind} is not a known kind";
        }
        else if (state == SlotWord.Live && (count == 0 || size < 1 || (r.Kind == LayoutConstants.KindCpu && size > cap)))
        {
            problem = count == 0 ? "live with a count of 0" : $"holds {size} bytes in {cap} bytes of memory";
        }
        else if (state == SlotWord.Free && count != 0)
        {
            problem = $"free with a count of {count}";
        }

        bool ok = problem is null;
        return new SlotInfo
        {
            Index = index,
            State = !ok ? SlotState.Invalid : state switch { SlotWord.Free => SlotState.Free, SlotWord.Acquiring => SlotState.Acquiring, _ => SlotState.Live },
            Size = ok && state == SlotWord.Live ? size : 0,
            MemoryBytes = ok && r.Kind == LayoutConstants.KindCpu ? cap : 0,
            Count = count,
            Generation = SlotWord.Gen(w),
            MemoryGeneration = r.MemGen,
            LockedByEntry = owner is > 0 and <= LayoutConstants.MaxProcesses ? owner - 1 : null,
            Kind = kind,
            Holders = [],
            InFlight = ok ? count : 0,
            Problem = problem,
        };
    }

    /// <summary>Reads the holdings segment of each listed entry and attributes its references to the slots.</summary>
    private static void AttributeHoldings(string bare, ulong instance, int cap, List<SlotInfo> slots, List<(int Slot, uint Gen, int Count)> words, List<ProcessEntryInfo> entries)
    {
        var holders = new List<SlotHolder>?[slots.Count];
        var holdings = new ulong[cap];
        for (int e = 0; e < entries.Count; e++)
        {
            ProcessEntryInfo entry = entries[e];
            int got;
            try
            {
                using SegmentReader? r = SegmentReader.TryOpen(PoolName.HoldingsObject(bare, instance, entry.Entry));
                if (r is null)
                {
                    continue;
                }

                got = r.Read<ulong>(holdings, 0);
            }
            catch (Exception ex) when (ex is XmemException or IOException or UnauthorizedAccessException)
            {
                continue; // unreadable: its references stay counted as in flight
            }

            long total = 0;
            foreach ((int listed, uint gen, int count) in words)
            {
                int s = slots[listed].Index;
                if (s >= got)
                {
                    continue;
                }

                int held = Holding.CountFor(holdings[s], gen & SlotWord.GenMask);
                if (held <= 0 || held > SlotWord.MaxCount)
                {
                    continue;
                }

                (holders[listed] ??= []).Add(new SlotHolder { Entry = entry.Entry, Pid = entry.Pid, Count = held, Alive = entry.Alive });
                total += held;
            }

            entries[e] = entry with { References = (int)Math.Min(total, int.MaxValue) };
        }

        for (int i = 0; i < slots.Count; i++)
        {
            if (holders[i] is not { } list)
            {
                continue;
            }

            SlotInfo si = slots[i];
            long attributed = 0;
            foreach (SlotHolder holder in list)
            {
                attributed += holder.Count;
            }

            slots[i] = si with
            {
                Holders = list,
                InFlight = (int)Math.Max(0, si.Count - attributed),
                Problem = attributed > si.Count ? $"holders account for {attributed} references but the count is {si.Count} (changing while read?)" : si.Problem,
            };
        }
    }

    private static unsafe string CommandOf(in ProcessEntry e)
    {
        fixed (byte* p = e.Comm)
        {
            var bytes = new ReadOnlySpan<byte>(p, 16);
            int end = bytes.IndexOf((byte)0);
            string s = System.Text.Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
            return string.Create(s.Length, s, static (dst, src) =>
            {
                for (int i = 0; i < src.Length; i++)
                {
                    dst[i] = char.IsControl(src[i]) ? '?' : src[i];
                }
            });
        }
    }
}
