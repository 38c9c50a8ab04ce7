using System.Text;
using Xmem.Core;
using Xmem.Errors;
using Xmem.Layout;

namespace Xmem.Channels;

/// <summary>
/// Channels (docs/layout.md, "Channels"). A reference in a channel cell is an in-flight count of its slot, owned by the
/// channel. Moving one between a process's holding and a cell (a send or a receive) happens under the slot's lock:
///   1. write the handover record (slot bytes 416..) naming channel, ring, position, kind;
///   2. JournalHoldings = holding; JournalWord = locked word; one 8-byte store at 40: JournalOwner = tag, State = Pending;
///   3. holding ± 1;
///   4. one 8-byte store at 40: JournalOwner = 0, State = Committed            (the commit point)
///   5. move the cell on (Writing → Full, or Reading → Empty of the next lap);
///   6. State = None; unlock (the count never changes).
/// A death before 4 leaves the core's journal naming the dead owner with the word unchanged: the core's recovery puts
/// the holding back, and the record says Pending. A death after 4 leaves no journal (the holding stays changed) and the
/// record says Committed. Because step 4 is one store, the two always agree. Whoever next locks the slot for a handover
/// (or repairs the cell) reads the record and finishes step 5 of a committed handover; a cell still claimed by a dead
/// process with no committed record is repaired by rule: a send never happened (Void), a receive never happened (the
/// reference is taken over and released).
/// This type also keeps the channel segments this process has open, by instance id, for finishing other processes'
/// committed handovers.
/// </summary>
internal sealed unsafe class ChannelHandover(PoolCore core)
{
    private readonly Dictionary<ulong, ChannelSegment> _open = [];
    private readonly Lock _openLock = new();
    private readonly SlotTable _slots = core.Slots;

    private int Tag => core.Registry.Tag;

    /// <summary>Lists <paramref name="seg"/> as open in this process (see <see cref="WithChannel"/>). False when
    /// another view of the same channel is open already.</summary>
    internal bool Register(ChannelSegment seg)
    {
        lock (_openLock)
        {
            return _open.TryAdd(seg.InstanceId, seg);
        }
    }

    /// <summary>Runs <paramref name="read"/> on each channel open in this process, under the list's lock (so none is
    /// closed meanwhile): for reading its counters.</summary>
    internal void ForEachOpen<TState>(TState state, Action<ChannelSegment, TState> read)
    {
        lock (_openLock)
        {
            foreach (ChannelSegment seg in _open.Values)
            {
                read(seg, state);
            }
        }
    }

    /// <summary>Takes <paramref name="seg"/> off the list and closes it.</summary>
    internal void Close(ChannelSegment seg)
    {
        lock (_openLock)
        {
            if (_open.TryGetValue(seg.InstanceId, out ChannelSegment? s) && ReferenceEquals(s, seg))
            {
                _open.Remove(seg.InstanceId);
            }
        }

        seg.Dispose();
    }

    // ---------------------------------------------------------------- send / receive

    /// <summary>With slot <paramref name="s"/> locked by this process (<paramref name="w"/>: its word unlocked) for
    /// the send of a reference of generation <paramref name="gen"/> that this process holds: moves it into the cell
    /// this process claimed at <paramref name="pos"/> of ring <paramref name="k"/>, and unlocks. When the slot is not
    /// live with that generation (or this process holds no such reference) nothing moves: the cell is voided and
    /// SlotNotLive thrown.</summary>
    internal void SendLocked(ChannelSegment ch, int k, ulong pos, int s, uint gen, ulong w)
    {
        RingCell* cell = ch.Cell(k, pos);
        ulong claimed = ClaimedForSend(pos);
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
            _slots.Unlock(s, w); // the count did not change
        }

        if (!done)
        {
            VoidClaimedCell(ch, k, pos);
            ThrowHelper.ThrowSlotNotLive(s);
        }

        ChannelSegment.BumpEpoch(&ch.Ring(k)->DataEpoch);
    }

    /// <summary>Names the message's slot and generation in the cell this process claimed for a send.</summary>
    internal static void FillClaimedCell(ChannelSegment ch, int k, ulong pos, int s, uint gen)
    {
        RingCell* cell = ch.Cell(k, pos);
        cell->Slot = s;
        cell->Gen = gen;
    }

    private ulong ClaimedForSend(ulong pos) => CellWord.Make((uint)pos, CellWord.Writing, Tag, core.Registry.Incarnation);

    /// <summary>Gives up the cell this process claimed for a send at <paramref name="pos"/>: it becomes Void.</summary>
    internal void VoidClaimedCell(ChannelSegment ch, int k, ulong pos)
    {
        RingCell* cell = ch.Cell(k, pos);
        ulong claimed = ClaimedForSend(pos);
        _ = Interlocked.CompareExchange(ref cell->Word, CellWord.Make(CellWord.Lap(claimed), CellWord.Void), claimed);
        ChannelSegment.BumpEpoch(&ch.Ring(k)->DataEpoch);
    }

    /// <summary>Takes over the message in the cell this process claimed (<paramref name="claimed"/>) into this
    /// process's holding. For a CPU buffer it also leases this process's mapping (<see cref="Received.Map"/>, or
    /// <see cref="Received.MapError"/> when it could not be had: the reference is held all the same). Slot -1 when the
    /// cell held nothing usable (a corrupt cell, skipped).</summary>
    internal Received TakeReceived(ChannelSegment ch, int k, ulong pos, ulong claimed)
    {
        RingCell* cell = ch.Cell(k, pos);
        ulong next = CellWord.Make((uint)(pos + (ulong)ch.Depth), CellWord.Empty);
        int s = cell->Slot;
        uint gen = cell->Gen;
        if ((uint)s >= (uint)_slots.Capacity)
        {
            SkipCell(ch, k, cell, claimed, next);
            return Received.Nothing;
        }

        SlotRecord* r = _slots.Record(s);
        ulong w = _slots.LockAny(s);
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
                cuda = LayoutConstants.IsCuda(r->Kind); // device memory: no CPU mapping to make
                try
                {
                    if (!cuda)
                    {
                        size = r->Size;
                        map = core.Data.Lease(s, r->MemGen, Volatile.Read(ref r->DataCapacity), size);
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
            _slots.Unlock(s, w);
        }

        if (!done)
        {
            map?.Region.DangerousRelease();
            SkipCell(ch, k, cell, claimed, next); // a cell naming a slot that is not live: corrupt, skipped
            return Received.Nothing;
        }

        ChannelSegment.BumpEpoch(&ch.Ring(k)->SpaceEpoch);
        return new Received(s, gen, cuda, map, size, mapError);
    }

    /// <summary>Takes over the message in the cell this process claimed and releases it at once (a ring nobody will
    /// read is drained).</summary>
    internal void DiscardReceived(ChannelSegment ch, int k, ulong pos, ulong claimed)
    {
        Received r = TakeReceived(ch, k, pos, claimed);
        if (r.Slot >= 0)
        {
            r.Map?.Region.DangerousRelease();
            _ = _slots.ReleaseOwn(r.Slot, r.Gen, forget: false);
        }
    }

    /// <summary>What a receive took over: a reference of generation <see cref="Gen"/> of slot <see cref="Slot"/>, now
    /// in this process's holding (Slot -1: nothing).</summary>
    internal readonly record struct Received(int Slot, uint Gen, bool Cuda, DataMapping? Map, long Size, Exception? MapError)
    {
        internal static Received Nothing => new(-1, 0, false, null, 0, null);
    }

    private static void SkipCell(ChannelSegment ch, int k, RingCell* cell, ulong from, ulong to)
    {
        _ = Interlocked.CompareExchange(ref cell->Word, to, from);
        ChannelSegment.BumpEpoch(&ch.Ring(k)->SpaceEpoch);
        ChannelSegment.BumpEpoch(&ch.Ring(k)->DataEpoch);
    }

    /// <summary>Steps 1–6 of a handover (see the top of this file), with slot <paramref name="s"/> locked by this
    /// process (<paramref name="w"/>: its word unlocked). <paramref name="delta"/> is +1 (receive) or −1 (send).
    /// False (nothing changed) when this process's holding cannot give one (a send of a reference it does not hold).</summary>
    private bool HandoverLocked(int s, ulong w, uint gen, int delta, uint kind, ChannelSegment ch, int k, ulong pos, RingCell* cell, ulong cellFrom, ulong cellTo)
    {
        SlotRecord* r = _slots.Record(s);
        var rec = (HandoverRecord*)r;
        ulong* holdings = core.Own.Words;
        ulong h = holdings[s];
        int held = Holding.CountFor(h, gen);
        if (held + delta < 0)
        {
            return false;
        }

        rec->HandoverTag = (uint)Tag;
        rec->HandoverKind = kind;
        rec->HandoverGen = gen;
        rec->HandoverRing = k;
        rec->HandoverChannel = ch.InstanceId;
        rec->HandoverPosition = pos;
        rec->HandoverNameLength = ch.Name.Length;
        ch.NameAscii.CopyTo(new Span<byte>(rec->HandoverName, HandoverRecord.MaxNameLength)); // at most 48 bytes
        r->JournalHoldings = h;
        r->JournalWord = SlotWord.WithOwner(w, Tag);
        ref ulong journal = ref *(ulong*)((byte*)r + HandoverRecord.JournalOwnerWordOffset);
        // Release stores, in order: the record and the saved holding are visible before the journal names us; the
        // journal before the new holding; the new holding before the commit.
        Volatile.Write(ref journal, HandoverRecord.JournalOwnerAndState((uint)Tag, HandoverRecord.StatePending));
        Volatile.Write(ref holdings[s], Holding.Make(gen, held + delta));
        Volatile.Write(ref journal, HandoverRecord.JournalOwnerAndState(0, HandoverRecord.StateCommitted)); // commit: one store
        _ = Interlocked.CompareExchange(ref cell->Word, cellTo, cellFrom);  // release: the cell's payload before Full
        Volatile.Write(ref journal, 0UL);
        return true;
    }

    /// <summary>With slot <paramref name="s"/> locked by this process: finishes the handover a dead process left on
    /// it. A record can outlive its owner only if it died holding the lock; the core's recovery has since dealt with
    /// the lock and the holding, and only the cell may be left to move on.</summary>
    private void ResolveHandoverLocked(int s)
    {
        var rec = (HandoverRecord*)_slots.Record(s);
        uint state = Volatile.Read(ref rec->HandoverState);
        if (state == HandoverRecord.StateNone)
        {
            return;
        }

        if (state == HandoverRecord.StateCommitted)
        {
            uint kind = rec->HandoverKind;
            int k = rec->HandoverRing;
            ulong instance = rec->HandoverChannel;
            ulong pos = rec->HandoverPosition;
            int nameLength = rec->HandoverNameLength;
            string? name = nameLength is > 0 and <= ChannelLayout.MaxNameLength
                ? Encoding.ASCII.GetString(rec->HandoverName, nameLength)
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
        Volatile.Write(ref rec->HandoverState, HandoverRecord.StateNone);
    }

    private void WithChannel(ulong instance, string? name, Action<ChannelSegment> action)
    {
        lock (_openLock)
        {
            if (_open.TryGetValue(instance, out ChannelSegment? open))
            {
                action(open);
                return;
            }
        }

        if (name is null || name.AsSpan().ContainsAny('/', '\0'))
        {
            return;
        }

        using ChannelSegment? seg = TryOpenNamed(name);
        if (seg is not null && seg.InstanceId == instance)
        {
            action(seg);
        }
    }

    /// <summary>The channel a record names, for its repair; null when the name is not a channel's or the channel is
    /// gone or unusable (then there is nothing to repair in it).</summary>
    private ChannelSegment? TryOpenNamed(string name)
    {
        try
        {
            ChannelSegment.ValidateName(name);
            return ChannelSegment.TryOpenExisting(core.Bare, core.Control.Instance, name, core.Control.Access);
        }
        catch (Exception e) when (e is ArgumentException or XmemException)
        {
            return null;
        }
    }

    /// <summary>Repairs the cell at <paramref name="pos"/> of ring <paramref name="k"/> if the process that claimed it
    /// (as <paramref name="observed"/> says) is dead. True when the cell was repaired (by anyone).</summary>
    internal bool RepairCell(ChannelSegment ch, int k, ulong pos, ulong observed)
    {
        uint phase = CellWord.Phase(observed);
        if ((phase != CellWord.Writing && phase != CellWord.Reading) || core.Registry.IsClaimerAlive(CellWord.Tag(observed), CellWord.Incarnation(observed)))
        {
            return false;
        }

        RingCell* cell = ch.Cell(k, pos);
        uint lap = CellWord.Lap(observed);
        ulong voided = CellWord.Make(lap, CellWord.Void);
        ulong emptied = CellWord.Make(lap + (uint)ch.Depth, CellWord.Empty);
        int s = cell->Slot;
        uint gen = cell->Gen;
        if ((uint)s >= (uint)_slots.Capacity)
        {
            SkipCell(ch, k, cell, observed, phase == CellWord.Writing ? voided : emptied);
            return true;
        }

        bool release = false;
        ulong w = _slots.LockAny(s);
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
            _slots.Unlock(s, w);
        }

        if (release)
        {
            ChannelSegment.BumpEpoch(&ch.Ring(k)->SpaceEpoch);
            _ = _slots.ReleaseOwn(s, gen, forget: false);
        }

        return true;
    }}
