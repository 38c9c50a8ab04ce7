using Xmem.Core;
using System.Security.Cryptography;
using System.Text;
using Xmem.Errors;
using Xmem.Interop;
using Xmem.SharedMemory;
using Xmem.Layout;

namespace Xmem.Channels;

/// <summary>
/// This process's mapping of one channel segment, <c>xmem.v1.&lt;pool&gt;.&lt;instance&gt;.c&lt;name&gt;</c>
/// (docs/layout.md, "Channels"). Everything read from the header is validated once at open; ring positions and cell
/// words are used only modulo the depth, so a corrupt value can mislead a ring but never reach outside the mapping.
/// </summary>
internal sealed unsafe class ChannelSegment : IDisposable
{
    private readonly MappedRegion _region;
    private readonly byte* _base;

    private ChannelSegment(MappedRegion region, string name, int depth, int rings, uint mode, ulong instance)
    {
        _region = region;
        _base = (byte*)region.Address;
        Name = name;
        NameAscii = System.Text.Encoding.ASCII.GetBytes(name); // validated: at most 48 ASCII characters
        Depth = depth;
        Mask = depth - 1;
        RingCount = rings;
        Mode = mode;
        InstanceId = instance;
        Stride = ChannelLayout.RingStride(depth);
        Counters = new ChannelCounters((ChannelHeader*)_base);
    }

    /// <summary>The channel's counters (header bytes 128..255).</summary>
    internal ChannelCounters Counters { get; }

    /// <summary>The mapping: a watcher sleeping on one of its words holds a lease on it (see RingDataWord).</summary>
    internal MappedRegion Region => _region;

    internal string Name { get; }

    /// <summary>The name's bytes, encoded once (every handover record names its channel).</summary>
    internal byte[] NameAscii { get; }

    internal int Depth { get; }
    internal int Mask { get; }
    internal int RingCount { get; }
    internal uint Mode { get; }
    internal ulong InstanceId { get; }
    private long Stride { get; }

    internal RingHeader* Ring(int k) => (RingHeader*)(_base + ChannelLayout.HeaderSize + (k * Stride));

    internal RingCell* Cell(int k, ulong pos) =>
        (RingCell*)(_base + ChannelLayout.HeaderSize + (k * Stride) + ChannelLayout.RingHeaderSize + ((long)(pos & (ulong)Mask) * ChannelLayout.CellSize));

    internal static string ObjectName(string bare, ulong poolInstance, string channel) => SegmentNames.Channel(bare, poolInstance, channel);

    /// <summary>Checks a channel name: 1–48 of [A-Za-z0-9._-], not starting with '.'.</summary>
    internal static void ValidateName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Length is 0 or > ChannelLayout.MaxNameLength || name[0] == '.'
            || name.AsSpan().ContainsAnyExcept(NameChars))
        {
            ThrowHelper.ThrowInvalidName($"channel name '{name}' must be 1 to {ChannelLayout.MaxNameLength} characters of [A-Za-z0-9._-], not starting with '.'.", nameof(name));
        }
    }

    private static readonly System.Buffers.SearchValues<char> NameChars =
        System.Buffers.SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");

    /// <summary>How long an opener waits for a channel segment that is not Ready to become Ready (one made by an older
    /// xmem that initialized it in place) before it reports the channel damaged.</summary>
    private const int ReadyWaitMs = 2000;

    /// <summary>Opens the channel, creating it when it does not exist. A segment is built whole under a private name
    /// and published under the channel's name by link(2), Ready from its first instant; so a segment found under the
    /// name that is not Ready is damage, never work in progress — an error, and never re-initialized or truncated: other
    /// processes may have it mapped, and shrinking it would kill them with SIGBUS (docs/layout.md, "Channels").
    /// The segment gets the pool's group and mode (<paramref name="access"/>) before it is linked; a file under the
    /// name without them is not the pool's (a stranger took the name, which it can see in /dev/shm) and is never
    /// used: a channel's name is the application's, so there is no other name to fall back on, and opening it fails
    /// with what to do.</summary>
    internal static ChannelSegment OpenOrCreate(string bare, ulong poolInstance, string name, int depth, uint mode, SegmentAccess access)
    {
        string obj = ObjectName(bare, poolInstance, name);
        for (int attempt = 0; ; attempt++)
        {
            using (SafeFd? fd = OpenOwn(obj, bare, name))
            {
                if (fd is not null)
                {
                    return OpenPublished(fd, obj, bare, poolInstance, name, depth, mode, access);
                }
            }

#pragma warning disable CA2000 // returned when made; null on the paths that loop or throw (the analyzer loses that across the loop)
            ChannelSegment? made = TryCreate(bare, poolInstance, obj, name, depth, mode, access);
#pragma warning restore CA2000
            if (made is not null)
            {
                return made;
            }

            // Another process published the channel first: open theirs. The name vanishing again right after
            // means the pool is being removed.
            if (attempt >= 3)
            {
                throw new XmemException(XmemStatus.NotFound, $"channel '{name}' of pool '{bare}' vanished while it was being opened (the pool is being removed).");
            }
        }
    }

    /// <summary>The channel published under the name, opened as <paramref name="fd"/>: checked to be the pool's,
    /// Ready, and of this depth and mode.</summary>
    private static ChannelSegment OpenPublished(SafeFd fd, string obj, string bare, ulong poolInstance, string name, int depth, uint mode, SegmentAccess access)
    {
        // A pool's channel gets its group and mode before it is linked under the name, so a file there without them
        // was made by someone else.
        if (!SegmentFile.IsPoolFile(fd, access, obj))
        {
            throw new PoolPermissionException($"channel '{name}' of pool '{bare}': {PoolName.PathOf(obj)} was not made by this pool (it does not have the pool's {access}); a user outside the pool's group holds the name. Remove that file as root or as its owner, or use another channel name.", Errno.EEXIST);
        }

        ChannelSegment ready = WaitForReady(fd, obj, bare, poolInstance, name);
        try
        {
            ready.Check(depth, mode);
        }
        catch
        {
            ready.Dispose();
            throw;
        }

        return ready;
    }

    /// <summary>Builds the channel under a private name (<c>…n&lt;channel&gt;.&lt;random&gt;</c>, which no opener
    /// looks at), publishes it Ready, then links it to the channel's name. Null when the name was taken meanwhile. A
    /// creator killed before the link leaves only the private object, which goes with the pool's other objects.</summary>
    private static ChannelSegment? TryCreate(string bare, ulong poolInstance, string obj, string name, int depth, uint mode, SegmentAccess access)
    {
        string tmp = SegmentNames.ChannelDraft(bare, poolInstance, name, BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)));
        ChannelSegment? seg = null;
        try
        {
            using (SafeFd fd = SegmentFile.TryCreateExclusive(tmp, access)
                ?? throw new PoolPermissionException($"channel '{name}' of pool '{bare}': the private name {PoolName.PathOf(tmp)} (64 random bits) is taken by a file this process did not make; remove it as root or as its owner.", Errno.EEXIST))
            {
                seg = Initialize(fd, tmp, poolInstance, name, depth, mode);
            }

            bool linked = SegmentFile.TryLink(tmp, obj);
            _ = SegmentFile.Unlink(tmp);
            if (!linked)
            {
                seg.Dispose();
                return null;
            }

            return seg;
        }
        catch
        {
            seg?.Dispose();
            _ = SegmentFile.Unlink(tmp);
            throw;
        }
    }

    /// <summary>The segment under the channel's name, once Ready and valid. One that is not Ready within
    /// <see cref="ReadyWaitMs"/> is reported as damaged (CorruptSegmentException); its file is left as it is.</summary>
    private static ChannelSegment WaitForReady(SafeFd fd, string obj, string bare, ulong poolInstance, string name)
    {
        long deadline = Environment.TickCount64 + ReadyWaitMs;
        while (true)
        {
            ChannelSegment? ready = TryMapReady(fd, obj, bare, poolInstance, name, out long size, out uint state);
            if (ready is not null)
            {
                return ready;
            }

            if (Environment.TickCount64 > deadline)
            {
                string what = size < ChannelLayout.HeaderSize ? $"is {size} bytes, shorter than its header" : $"is not Ready (State {state})";
                throw new CorruptSegmentException($"pool '{bare}': channel '{name}' is damaged: its segment {PoolName.PathOf(obj)} {what}. Another process wrote it (or an older xmem died creating it); xmem never re-initializes a channel that others may have mapped. Use another channel name, or remove the pool (`xmem rm {bare}`) and create it again.");
            }

            Thread.Sleep(1);
        }
    }

    private static SafeFd? OpenOwn(string obj, string bare, string name)
    {
        try
        {
            return SegmentFile.TryOpen(obj, writable: true);
        }
        catch (PoolPermissionException e)
        {
            throw new PoolPermissionException($"channel '{name}' of pool '{bare}': {PoolName.PathOf(obj)} cannot be opened (permission denied): it was made by a user outside the pool's group, or with another mode. Remove that file as root or as its owner, or use another channel name.", e.NativeError);
        }
    }

    /// <summary>Opens an existing, Ready channel (for repairs); null when there is none.</summary>
    internal static ChannelSegment? TryOpenExisting(string bare, ulong poolInstance, string name, SegmentAccess access)
    {
        string obj = ObjectName(bare, poolInstance, name);
        using SafeFd? fd = SegmentFile.TryOpen(obj, writable: true);
        return fd is null || !SegmentFile.IsPoolFile(fd, access, obj) ? null : TryMapReady(fd, obj, bare, poolInstance, name, out _, out _);
    }

    private void Check(int depth, uint mode)
    {
        if (Depth != depth || Mode != mode)
        {
            string m = Mode == ChannelLayout.ModeFanOut ? "fan-out" : "queue";
            throw new ArgumentException($"channel '{Name}' exists with depth {Depth} in {m} mode; open it with the same depth and mode.");
        }
    }

    private static ChannelSegment? TryMapReady(SafeFd fd, string obj, string bare, ulong poolInstance, string name, out long size, out uint state)
    {
        size = SegmentFile.SizeOf(fd, obj);
        state = 0;
        if (size < ChannelLayout.HeaderSize)
        {
            return null;
        }

        ChannelHeader h;
        using (MappedRegion head = MappedRegion.Map(fd.Fd, ChannelLayout.HeaderSize, writable: false, PoolName.PathOf(obj)))
        {
            h = *(ChannelHeader*)head.Address;
        }

        state = h.State;
        if (state != ChannelLayout.StateReady)
        {
            return null;
        }

        // Validate everything before use: a segment written by anything else is refused.
        int rings = h.Mode == ChannelLayout.ModeFanOut ? ChannelLayout.MaxSubscribers : 1;
        if (h.Magic != ChannelLayout.Magic || h.Version != ChannelLayout.Version || h.Mode > ChannelLayout.ModeFanOut
            || h.Depth < 1 || h.Depth > ChannelLayout.MaxDepth || (h.Depth & (h.Depth - 1)) != 0 || h.RingCount != rings
            || h.PoolInstance != poolInstance || h.SegmentSize != ChannelLayout.SegmentSize(h.Depth, rings) || size < h.SegmentSize
            || h.NameLength != name.Length || !new ReadOnlySpan<byte>(h.Name, h.NameLength).SequenceEqual(Encoding.ASCII.GetBytes(name)))
        {
            throw new CorruptSegmentException($"pool '{bare}': channel segment {obj} does not hold a valid channel of this layout version; remove the pool and create it again.");
        }

        MappedRegion region = MappedRegion.Map(fd.Fd, h.SegmentSize, writable: true, PoolName.PathOf(obj));
        return new ChannelSegment(region, name, h.Depth, rings, h.Mode, h.InstanceId);
    }

    private static ChannelSegment Initialize(SafeFd fd, string obj, ulong poolInstance, string name, int depth, uint mode)
    {
        int rings = mode == ChannelLayout.ModeFanOut ? ChannelLayout.MaxSubscribers : 1;
        long size = ChannelLayout.SegmentSize(depth, rings);
        SegmentFile.Size(fd, size, reserve: true, obj); // a file this process just made, under its private name
        MappedRegion region = MappedRegion.Map(fd.Fd, size, writable: true, PoolName.PathOf(obj));
        var h = (ChannelHeader*)region.Address;
        h->Magic = ChannelLayout.Magic;
        h->Version = ChannelLayout.Version;
        h->Depth = depth;
        h->Mode = mode;
        h->RingCount = rings;
        h->InstanceId = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) | 1;
        h->PoolInstance = poolInstance;
        h->SegmentSize = size;
        h->NameLength = name.Length;
        Encoding.ASCII.GetBytes(name, new Span<byte>(h->Name, 64));
        var seg = new ChannelSegment(region, name, depth, rings, mode, h->InstanceId);
        for (int k = 0; k < rings; k++)
        {
            for (int i = 0; i < depth; i++)
            {
                seg.Cell(k, (ulong)i)->Word = CellWord.Make((uint)i, CellWord.Empty);
            }
        }

        // Published last (release): a reader that sees Ready sees every field and cell above.
        Volatile.Write(ref h->State, ChannelLayout.StateReady);
        return seg;
    }

    // ---------------------------------------------------------------- ring positions

    internal const int Claimed = 0, NothingNow = 1;

    /// <summary>Claims the cell at the ring's tail for writing. False when the ring is full; then
    /// <paramref name="blocker"/> is the word of the cell in the way (its previous lap).</summary>
    internal bool TryClaimWrite(int k, int tag, ushort inc, out ulong pos, out ulong blocker)
    {
        RingHeader* rh = Ring(k);
        for (int spins = 0; ; spins++)
        {
            ulong t = Volatile.Read(ref rh->Tail);
            RingCell* cell = Cell(k, t);
            ulong c = Volatile.Read(ref cell->Word);
            int diff = (int)(CellWord.Lap(c) - (uint)t);
            if (diff == 0)
            {
                if (CellWord.Phase(c) == CellWord.Empty)
                {
                    if (Interlocked.CompareExchange(ref cell->Word, CellWord.Make((uint)t, CellWord.Writing, tag, inc), c) == c)
                    {
                        _ = Interlocked.CompareExchange(ref rh->Tail, t + 1, t);
                        pos = t;
                        blocker = 0;
                        return true;
                    }

                    continue;
                }

                _ = Interlocked.CompareExchange(ref rh->Tail, t + 1, t); // claimed at this lap already: move the tail on
                continue;
            }

            if (diff == -Depth)
            {
                pos = t;
                blocker = c;
                return false;
            }

            if (diff > 0)
            {
                _ = Interlocked.CompareExchange(ref rh->Tail, t + 1, t); // the tail lags behind consumed cells
            }

            CheckProgress(spins);
        }
    }

    /// <summary>Claims the cell at the ring's head for reading (its message becomes this receiver's to take over).
    /// <see cref="NothingNow"/> when no message is ready; then <paramref name="observed"/> is the word of the head cell
    /// (a Writing or Reading word names a process whose progress the caller waits for).</summary>
    internal int TryClaimRead(int k, int tag, ushort inc, out ulong pos, out ulong observed)
    {
        RingHeader* rh = Ring(k);
        for (int spins = 0; ; spins++)
        {
            ulong h = Volatile.Read(ref rh->Head);
            RingCell* cell = Cell(k, h);
            ulong c = Volatile.Read(ref cell->Word);
            int diff = (int)(CellWord.Lap(c) - (uint)h);
            pos = h;
            observed = c;
            if (diff == 0)
            {
                switch (CellWord.Phase(c))
                {
                    case CellWord.Full:
                        ulong mine = CellWord.Make((uint)h, CellWord.Reading, tag, inc);
                        if (Interlocked.CompareExchange(ref cell->Word, mine, c) == c)
                        {
                            _ = Interlocked.CompareExchange(ref rh->Head, h + 1, h);
                            observed = mine;
                            return Claimed;
                        }

                        continue;
                    case CellWord.Void:
                        if (Interlocked.CompareExchange(ref cell->Word, CellWord.Make((uint)(h + (ulong)Depth), CellWord.Empty), c) == c)
                        {
                            _ = Interlocked.CompareExchange(ref rh->Head, h + 1, h);
                            BumpEpoch(&rh->SpaceEpoch);
                        }

                        continue;
                    case CellWord.Reading:
                        _ = Interlocked.CompareExchange(ref rh->Head, h + 1, h);
                        continue;
                    default:
                        return NothingNow; // Empty: nothing sent yet; Writing: being sent
                }
            }

            if (diff > 0)
            {
                _ = Interlocked.CompareExchange(ref rh->Head, h + 1, h); // consumed already: the head lags
                CheckProgress(spins);
                continue;
            }

            return NothingNow; // the previous lap is still being read
        }
    }

    /// <summary>Messages waiting (approximate: tail − head).</summary>
    internal long Backlog(int k)
    {
        RingHeader* rh = Ring(k);
        long n = (long)(Volatile.Read(ref rh->Tail) - Volatile.Read(ref rh->Head));
        return Math.Clamp(n, 0, Depth);
    }

    /// <summary>The channel's current depth: its fullest ring's backlog (in fan-out mode over the rings with an
    /// active subscriber).</summary>
    internal long CurrentDepth()
    {
        long depth = 0;
        for (int k = 0; k < RingCount; k++)
        {
            if (Mode == ChannelLayout.ModeQueue || SubscriberWord.State(Volatile.Read(ref Ring(k)->Subscriber)) == SubscriberWord.Active)
            {
                depth = Math.Max(depth, Backlog(k));
            }
        }

        return depth;
    }

    private void CheckProgress(int spins)
    {
        if (spins > 1_000_000)
        {
            throw new CorruptSegmentException($"channel '{Name}': its ring positions do not match its cells (a corrupt segment).");
        }
    }

    /// <summary>Advances an event word and wakes its sleepers when bit 0 says there are any. Words advance by 2;
    /// bit 0 is set by a sleeper before it sleeps and cleared here before the wake.</summary>
    internal static void BumpEpoch(uint* epoch)
    {
        uint old = Interlocked.Add(ref *epoch, 2u) - 2u;
        if ((old & 1) != 0)
        {
            _ = Interlocked.And(ref *epoch, ~1u);
            _ = Libc.FutexWakeAll((nint)epoch);
        }
    }

    /// <summary>Sleeps on an event word read as <paramref name="seen"/> (before the caller looked at the ring) until it
    /// changes or <paramref name="timeoutNs"/> passes. Sets the sleeper bit first, so a bump wakes it.</summary>
    internal static void SleepOn(uint* epoch, uint seen, long timeoutNs)
    {
        if ((seen & 1) == 0)
        {
            if (Interlocked.CompareExchange(ref *epoch, seen | 1, seen) != seen)
            {
                return; // changed since: look again
            }

            seen |= 1;
        }

        _ = ForkGate.FutexWait((nint)epoch, seen, timeoutNs); // out of the fork gate: a sleep without a bound must not hold a fork back
    }

    public void Dispose() => _region.Dispose();
}
