using System.Security.Cryptography;
using System.Text;
using Xmem.Errors;
using Xmem.Interop;
using Xmem.Pool;
using Xmem.SharedMemory;

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
        Depth = depth;
        Mask = depth - 1;
        RingCount = rings;
        Mode = mode;
        InstanceId = instance;
        Stride = ChannelLayout.RingStride(depth);
    }

    internal string Name { get; }
    internal int Depth { get; }
    internal int Mask { get; }
    internal int RingCount { get; }
    internal uint Mode { get; }
    internal ulong InstanceId { get; }
    private long Stride { get; }

    internal RingHeader* Ring(int k) => (RingHeader*)(_base + ChannelLayout.HeaderSize + (k * Stride));

    internal RingCell* Cell(int k, ulong pos) =>
        (RingCell*)(_base + ChannelLayout.HeaderSize + (k * Stride) + ChannelLayout.RingHeaderSize + ((long)(pos & (ulong)Mask) * ChannelLayout.CellSize));

    internal static string ObjectName(string bare, ulong poolInstance, string channel) => PoolName.InstancePrefix(bare, poolInstance) + "c" + channel;

    /// <summary>Checks a channel name: 1–48 of [A-Za-z0-9._-], not starting with '.'.</summary>
    internal static void ValidateName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Length is 0 or > ChannelLayout.MaxNameLength || name[0] == '.'
            || name.AsSpan().ContainsAnyExcept(NameChars))
        {
            throw new ArgumentException($"channel name '{name}' must be 1 to {ChannelLayout.MaxNameLength} characters of [A-Za-z0-9._-], not starting with '.'.", nameof(name));
        }
    }

    private static readonly System.Buffers.SearchValues<char> NameChars =
        System.Buffers.SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");

    /// <summary>Opens the channel, creating and initializing it when it does not exist. Whoever holds the OFD lock
    /// on byte 0 initializes a segment not yet Ready (the creator, or an opener that finds the creator died).</summary>
    internal static ChannelSegment OpenOrCreate(string bare, ulong poolInstance, string name, int depth, uint mode, uint fileMode)
    {
        string obj = ObjectName(bare, poolInstance, name);
        SafeFd? fd = SegmentFile.TryOpen(obj, writable: true);
        if (fd is null)
        {
            try
            {
                fd = SegmentFile.CreateExclusive(obj, fileMode);
            }
            catch (PoolExistsException)
            {
                fd = SegmentFile.TryOpen(obj, writable: true)
                    ?? throw new XmemException(XmemStatus.NotFound, $"channel '{name}' of pool '{bare}' vanished while it was being opened (the pool is being removed).");
            }
        }

        using (fd)
        {
            long deadline = Environment.TickCount64 + 2000;
            while (true)
            {
                ChannelSegment? ready = TryMapReady(fd, obj, bare, poolInstance, name);
                if (ready is not null)
                {
                    ready.Check(depth, mode);
                    return ready;
                }

                if (Libc.TryLockByte(fd.Fd, ChannelLayout.InitLockByte))
                {
                    try
                    {
                        ready = TryMapReady(fd, obj, bare, poolInstance, name) ?? Initialize(fd, obj, poolInstance, name, depth, mode);
                    }
                    finally
                    {
                        Libc.UnlockByte(fd.Fd, ChannelLayout.InitLockByte);
                    }

                    ready.Check(depth, mode);
                    return ready;
                }

                if (Environment.TickCount64 > deadline)
                {
                    throw new XmemTimeoutException($"channel '{name}' of pool '{bare}' has been initializing for over 2 s.");
                }

                Thread.Sleep(1);
            }
        }
    }

    /// <summary>Opens an existing, Ready channel (for repairs); null when there is none.</summary>
    internal static ChannelSegment? TryOpenExisting(string bare, ulong poolInstance, string name)
    {
        string obj = ObjectName(bare, poolInstance, name);
        using SafeFd? fd = SegmentFile.TryOpen(obj, writable: true);
        return fd is null ? null : TryMapReady(fd, obj, bare, poolInstance, name);
    }

    private void Check(int depth, uint mode)
    {
        if (Depth != depth || Mode != mode)
        {
            string m = Mode == ChannelLayout.ModeFanOut ? "fan-out" : "queue";
            throw new ArgumentException($"channel '{Name}' exists with depth {Depth} in {m} mode; open it with the same depth and mode.");
        }
    }

    private static ChannelSegment? TryMapReady(SafeFd fd, string obj, string bare, ulong poolInstance, string name)
    {
        long size = SegmentFile.SizeOf(fd, obj);
        if (size < ChannelLayout.HeaderSize)
        {
            return null;
        }

        ChannelHeader h;
        using (MappedRegion head = MappedRegion.Map(fd.Fd, ChannelLayout.HeaderSize, writable: false, PoolName.PathOf(obj)))
        {
            h = *(ChannelHeader*)head.Address;
        }

        if (Volatile.Read(ref h.State) != ChannelLayout.StateReady)
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
        SegmentFile.Size(fd, 0, reserve: false, obj); // a dead initializer's leftovers go: start from zeros
        SegmentFile.Size(fd, size, reserve: true, obj);
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

        bool outOfGate = ForkGate.LeaveForWait(); // a sleep without a bound must not hold a fork back
        _ = Libc.FutexWait((nint)epoch, seen, timeoutNs);
        ForkGate.ReturnFromWait(outOfGate);
    }

    public void Dispose() => _region.Dispose();
}
