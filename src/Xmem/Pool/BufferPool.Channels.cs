using System.Text;
using Xmem.Channels;
using Xmem.Errors;
using Xmem.Interop;
using Xmem.Layout;
using Xmem.Pool;

namespace Xmem;

// Channels (docs/layout.md, "Channels"). A reference in a channel cell is an in-flight count of its slot, owned by the
// channel. Moving one between a process's holding and a cell (a send or a receive) happens under the slot's lock:
//   1. write the handover record (slot bytes 416..) naming channel, ring, position, kind;
//   2. JournalHoldings = holding; JournalWord = locked word; one 8-byte store at 40: JournalOwner = tag, State = Pending;
//   3. holding ± 1;
//   4. one 8-byte store at 40: JournalOwner = 0, State = Committed            (the commit point)
//   5. move the cell on (Writing → Full, or Reading → Empty of the next lap);
//   6. State = None; unlock (the count never changes).
// A death before 4 leaves the core's journal naming the dead owner with the word unchanged: the core's recovery puts
// the holding back, and the record says Pending. A death after 4 leaves no journal (the holding stays changed) and the
// record says Committed. Because step 4 is one store, the two always agree. Whoever next locks the slot for a handover
// (or repairs the cell) reads the record and finishes step 5 of a committed handover; a cell still claimed by a dead
// process with no committed record is repaired by rule: a send never happened (Void), a receive never happened (the
// reference is taken over and released).
public sealed unsafe partial class BufferPool
{
    private readonly Dictionary<ulong, ChannelSegment> _channelSegments = [];
    private readonly Lock _channelLock = new();

    /// <summary>Opens the channel <paramref name="name"/> of this pool, creating it when it does not exist.</summary>
    /// <param name="name">1–48 of [A-Za-z0-9._-], not starting with '.'.</param>
    /// <param name="depth">Messages the channel holds (per subscriber in fan-out mode): a power of two, 1..65,536. An
    /// existing channel must be opened with its depth and mode.</param>
    /// <param name="mode">Queue (each message received once) or fan-out (every subscriber receives every message).</param>
    public BufferChannel Channel(string name, int depth = 64, ChannelMode mode = ChannelMode.Queue)
    {
        ThrowIfDisposed();
        ChannelSegment.ValidateName(name);
        if (depth < 1 || depth > ChannelLayout.MaxDepth || (depth & (depth - 1)) != 0)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(depth), depth, $"depth must be a power of two in 1..{ChannelLayout.MaxDepth}.");
        }

        if (mode is not (ChannelMode.Queue or ChannelMode.FanOut))
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(mode), mode, "mode must be Queue or FanOut.");
        }

        ChannelSegment seg = ChannelSegment.OpenOrCreate(_bare, _instance, name, depth, (uint)mode, _access);
        lock (_channelLock)
        {
            _channelSegments.TryAdd(seg.InstanceId, seg);
        }

        return new BufferChannel(this, seg);
    }

    internal void CloseChannel(ChannelSegment seg)
    {
        lock (_channelLock)
        {
            if (_channelSegments.TryGetValue(seg.InstanceId, out ChannelSegment? s) && ReferenceEquals(s, seg))
            {
                _channelSegments.Remove(seg.InstanceId);
            }
        }

        seg.Dispose();
    }

    internal int ChannelTag => _tag;

    internal ushort ChannelIncarnation => (ushort)Volatile.Read(ref _procs[_me].Incarnation);

    internal void ThrowIfDisposedForChannel() => ThrowIfDisposed();

    /// <summary>True while the process that claimed with (<paramref name="tag"/>, <paramref name="incarnation"/>) is
    /// alive. "Cannot tell" counts as alive.</summary>
    internal bool IsClaimerAlive(int tag, ushort incarnation)
    {
        int i = tag - 1;
        if ((uint)i >= LayoutConstants.MaxProcesses)
        {
            return false;
        }

        ProcessEntry* e = &_procs[i];
        if ((ushort)Volatile.Read(ref e->Incarnation) != incarnation || Volatile.Read(ref e->State) == LayoutConstants.ProcessFree)
        {
            return false;
        }

        return i == _me || Libc.IsByteLockedByOther(_controlFd.Fd, LayoutConstants.LivenessLockByte(i));
    }

    // ---------------------------------------------------------------- send / receive

    /// <summary>Moves <paramref name="guard"/>'s reference into the cell this process claimed at
    /// <paramref name="pos"/> of ring <paramref name="k"/>. The guard is spent; on failure the cell is voided.</summary>
    internal void CompleteSend(ChannelSegment ch, int k, ulong pos, BufferGuard guard)
    {
        RingCell* cell = ch.Cell(k, pos);
        ulong claimed = CellWord.Make((uint)pos, CellWord.Writing, _tag, ChannelIncarnation);
        int s = guard.MetaIndex;
        uint gen = guard.Generation;
        cell->Slot = s;
        cell->Gen = gen;
        if (!guard.TryDetach())
        {
            VoidClaimedCell(ch, k, cell, claimed);
            ThrowHelper.ThrowGuardInvalid();
        }

        ulong w;
        try
        {
            w = LockAny(s);
        }
        catch
        {
            VoidClaimedCell(ch, k, cell, claimed);
            ReleaseGuardReference(s, gen, forget: false);
            throw;
        }

        bool done = false;
        try
        {
            if (SlotWord.State(w) == SlotWord.Live && SlotWord.Gen(w) == gen)
            {
                ResolveHandoverLocked(s);
                done = HandoverLocked(s, w, gen, -1, HandoverRecord.KindSend, ch, k, pos, cell, claimed, CellWord.Make((uint)pos, CellWord.Full));
            }
        }
        finally
        {
            Volatile.Write(ref _slots[s].Word, w); // unlock: the count did not change
        }

        if (!done)
        {
            VoidClaimedCell(ch, k, cell, claimed);
            ThrowHelper.ThrowSlotNotLive(s);
        }

        ChannelSegment.BumpEpoch(&ch.Ring(k)->DataEpoch);
    }

    private static void VoidClaimedCell(ChannelSegment ch, int k, RingCell* cell, ulong claimed)
    {
        _ = Interlocked.CompareExchange(ref cell->Word, CellWord.Make(CellWord.Lap(claimed), CellWord.Void), claimed);
        ChannelSegment.BumpEpoch(&ch.Ring(k)->DataEpoch);
    }

    /// <summary>Takes over the message in the cell this process claimed (<paramref name="claimed"/>) as a guard.
    /// Null when the cell held nothing usable (a corrupt cell, skipped).</summary>
    internal BufferGuard? CompleteReceive(ChannelSegment ch, int k, ulong pos, ulong claimed, bool writable)
    {
        RingCell* cell = ch.Cell(k, pos);
        ulong next = CellWord.Make((uint)(pos + (ulong)ch.Depth), CellWord.Empty);
        int s = cell->Slot;
        uint gen = cell->Gen;
        if ((uint)s >= (uint)_capacity)
        {
            SkipCell(ch, k, cell, claimed, next);
            return null;
        }

        SlotRecord* r = &_slots[s];
        ulong w = LockAny(s);
        DataMapping? map = null;
        Exception? mapError = null;
        long size = 0;
        bool done = false;
        bool cuda = false;
        try
        {
            if (SlotWord.State(w) == SlotWord.Live && SlotWord.Gen(w) == gen && SlotWord.Count(w) > 0)
            {
                ResolveHandoverLocked(s);
                cuda = r->Kind == LayoutConstants.KindCuda; // device memory: no CPU mapping to make
                try
                {
                    if (!cuda)
                    {
                        size = r->Size;
                        map = LeaseSlotMapping(s, r->MemGen, Volatile.Read(ref r->DataCapacity), size);
                    }
                }
                catch (Exception e)
                {
                    map = null;
                    mapError = e;
                }

                done = HandoverLocked(s, w, gen, +1, HandoverRecord.KindReceive, ch, k, pos, cell, claimed, next);
            }
        }
        finally
        {
            Volatile.Write(ref r->Word, w);
        }

        if (!done)
        {
            map?.Region.DangerousRelease();
            SkipCell(ch, k, cell, claimed, next); // a cell naming a slot that is not live: corrupt, skipped
            return null;
        }

        ChannelSegment.BumpEpoch(&ch.Ring(k)->SpaceEpoch);
        if (cuda && mapError is null)
        {
            return CudaGuardForHeldReference(s, gen, writable);
        }

        if (map is null)
        {
            _ = ReleaseAttributed(s, gen, 1, _holdings, _tag, forget: false);
            throw mapError!;
        }

        try
        {
            return NewGuard(s, gen, map, size, readOnly: !writable);
        }
        catch
        {
            // The handover already moved the reference into this process's holding: give it back, or it leaks.
            _ = ReleaseAttributed(s, gen, 1, _holdings, _tag, forget: false);
            throw;
        }
    }

    private static void SkipCell(ChannelSegment ch, int k, RingCell* cell, ulong from, ulong to)
    {
        _ = Interlocked.CompareExchange(ref cell->Word, to, from);
        ChannelSegment.BumpEpoch(&ch.Ring(k)->SpaceEpoch);
        ChannelSegment.BumpEpoch(&ch.Ring(k)->DataEpoch);
    }

    /// <summary>Locks slot <paramref name="s"/> whatever its state and returns its word as it was (unlocked).</summary>
    private ulong LockAny(int s)
    {
        ref ulong word = ref _slots[s].Word;
        while (true)
        {
            ulong w = Volatile.Read(ref word);
            if (SlotWord.Owner(w) != 0)
            {
                w = WaitUnlocked(s);
            }

            if (Interlocked.CompareExchange(ref word, SlotWord.WithOwner(w, _tag), w) == w)
            {
                return w;
            }
        }
    }

    /// <summary>Steps 1–6 of a handover (see the top of this file), with slot <paramref name="s"/> locked by this
    /// process (<paramref name="w"/>: its word unlocked). <paramref name="delta"/> is +1 (receive) or −1 (send).
    /// False (nothing changed) when this process's holding cannot give one (a send of a reference it does not hold).</summary>
    private bool HandoverLocked(int s, ulong w, uint gen, int delta, uint kind, ChannelSegment ch, int k, ulong pos, RingCell* cell, ulong cellFrom, ulong cellTo)
    {
        SlotRecord* r = &_slots[s];
        byte* b = (byte*)r;
        ulong h = _holdings[s];
        int held = Holding.CountFor(h, gen);
        if (held + delta < 0)
        {
            return false;
        }

        *(uint*)(b + HandoverRecord.TagOffset) = (uint)_tag;
        *(uint*)(b + HandoverRecord.KindOffset) = kind;
        *(uint*)(b + HandoverRecord.GenOffset) = gen;
        *(int*)(b + HandoverRecord.RingOffset) = k;
        *(ulong*)(b + HandoverRecord.ChannelOffset) = ch.InstanceId;
        *(ulong*)(b + HandoverRecord.PositionOffset) = pos;
        *(int*)(b + HandoverRecord.NameLengthOffset) = ch.Name.Length;
        Encoding.ASCII.GetBytes(ch.Name, new Span<byte>(b + HandoverRecord.NameOffset, 512 - HandoverRecord.NameOffset));
        r->JournalHoldings = h;
        *(ulong*)(b + HandoverRecord.JournalWordOffset) = SlotWord.WithOwner(w, _tag);
        ref ulong journal = ref *(ulong*)(b + HandoverRecord.JournalOwnerOffset);
        // Release stores, in order: the record and the saved holding are visible before the journal names us; the
        // journal before the new holding; the new holding before the commit.
        Volatile.Write(ref journal, ((ulong)HandoverRecord.Pending << 32) | (uint)_tag);
        Volatile.Write(ref _holdings[s], Holding.Make(gen, held + delta));
        Volatile.Write(ref journal, (ulong)HandoverRecord.Committed << 32); // commit: JournalOwner 0 + Committed, one store
        _ = Interlocked.CompareExchange(ref cell->Word, cellTo, cellFrom);  // release: the cell's payload before Full
        Volatile.Write(ref journal, 0UL);
        return true;
    }

    /// <summary>With slot <paramref name="s"/> locked by this process: finishes the handover a dead process left on
    /// it. A record can outlive its owner only if it died holding the lock; the core's recovery has since dealt with
    /// the lock and the holding, and only the cell may be left to move on.</summary>
    private void ResolveHandoverLocked(int s)
    {
        byte* b = (byte*)&_slots[s];
        uint state = Volatile.Read(ref *(uint*)(b + HandoverRecord.StateOffset));
        if (state == HandoverRecord.None)
        {
            return;
        }

        if (state == HandoverRecord.Committed)
        {
            uint kind = *(uint*)(b + HandoverRecord.KindOffset);
            int k = *(int*)(b + HandoverRecord.RingOffset);
            ulong instance = *(ulong*)(b + HandoverRecord.ChannelOffset);
            ulong pos = *(ulong*)(b + HandoverRecord.PositionOffset);
            int nameLength = *(int*)(b + HandoverRecord.NameLengthOffset);
            string? name = nameLength is > 0 and <= ChannelLayout.MaxNameLength
                ? Encoding.ASCII.GetString(b + HandoverRecord.NameOffset, nameLength)
                : null;
            WithChannel(instance, name, ch =>
            {
                if ((uint)k >= (uint)ch.RingCount)
                {
                    return;
                }

                RingCell* cell = ch.Cell(k, pos);
                ulong c = Volatile.Read(ref cell->Word);
                if (CellWord.Lap(c) != (uint)pos)
                {
                    return;
                }

                if (kind == HandoverRecord.KindSend && CellWord.Phase(c) == CellWord.Writing)
                {
                    _ = Interlocked.CompareExchange(ref cell->Word, CellWord.Make((uint)pos, CellWord.Full), c);
                    ChannelSegment.BumpEpoch(&ch.Ring(k)->DataEpoch);
                }
                else if (kind == HandoverRecord.KindReceive && CellWord.Phase(c) == CellWord.Reading)
                {
                    _ = Interlocked.CompareExchange(ref cell->Word, CellWord.Make((uint)(pos + (ulong)ch.Depth), CellWord.Empty), c);
                    ChannelSegment.BumpEpoch(&ch.Ring(k)->SpaceEpoch);
                }
            });
        }

        // Pending: the holding was put back by the core's recovery; the cell, still claimed by the dead process, is
        // repaired by RepairCell's rule.
        Volatile.Write(ref *(uint*)(b + HandoverRecord.StateOffset), HandoverRecord.None);
    }

    private void WithChannel(ulong instance, string? name, Action<ChannelSegment> action)
    {
        lock (_channelLock)
        {
            if (_channelSegments.TryGetValue(instance, out ChannelSegment? open))
            {
                action(open);
                return;
            }
        }

        if (name is null || name.AsSpan().ContainsAny('/', '\0'))
        {
            return;
        }

        ChannelSegment? seg;
        try
        {
            ChannelSegment.ValidateName(name);
            seg = ChannelSegment.TryOpenExisting(_bare, _instance, name, _access);
        }
        catch (Exception e) when (e is ArgumentException or XmemException)
        {
            return;
        }

        if (seg is null)
        {
            return;
        }

        using (seg)
        {
            if (seg.InstanceId == instance)
            {
                action(seg);
            }
        }
    }

    // ---------------------------------------------------------------- repair

    /// <summary>Repairs the cell at <paramref name="pos"/> of ring <paramref name="k"/> if the process that claimed it
    /// (as <paramref name="observed"/> says) is dead. True when the cell was repaired (by anyone).</summary>
    internal bool RepairCell(ChannelSegment ch, int k, ulong pos, ulong observed)
    {
        uint phase = CellWord.Phase(observed);
        if ((phase != CellWord.Writing && phase != CellWord.Reading) || IsClaimerAlive(CellWord.Tag(observed), CellWord.Incarnation(observed)))
        {
            return false;
        }

        RingCell* cell = ch.Cell(k, pos);
        uint lap = CellWord.Lap(observed);
        ulong voided = CellWord.Make(lap, CellWord.Void);
        ulong emptied = CellWord.Make(lap + (uint)ch.Depth, CellWord.Empty);
        int s = cell->Slot;
        uint gen = cell->Gen;
        if ((uint)s >= (uint)_capacity)
        {
            SkipCell(ch, k, cell, observed, phase == CellWord.Writing ? voided : emptied);
            return true;
        }

        bool release = false;
        ulong w = LockAny(s);
        try
        {
            ResolveHandoverLocked(s);
            if (Volatile.Read(ref cell->Word) != observed)
            {
                return true;
            }

            if (phase == CellWord.Writing)
            {
                // No committed record: the send never committed; the reference stayed with the dead sender.
                SkipCell(ch, k, cell, observed, voided);
            }
            else if (SlotWord.State(w) == SlotWord.Live && SlotWord.Gen(w) == gen && SlotWord.Count(w) > 0)
            {
                // No committed record: the cell still owns its reference. Take it over, then release it below.
                release = HandoverLocked(s, w, gen, +1, HandoverRecord.KindReceive, ch, k, pos, cell, observed, emptied);
            }
            else
            {
                SkipCell(ch, k, cell, observed, emptied);
            }
        }
        finally
        {
            Volatile.Write(ref _slots[s].Word, w);
        }

        if (release)
        {
            ChannelSegment.BumpEpoch(&ch.Ring(k)->SpaceEpoch);
            _ = ReleaseAttributed(s, gen, 1, _holdings, _tag, forget: false);
        }

        return true;
    }
}
