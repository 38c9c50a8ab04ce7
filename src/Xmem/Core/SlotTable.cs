using System.Runtime.CompilerServices;
using Xmem.Errors;
using Xmem.Layout;

namespace Xmem.Core;

/// <summary>
/// The slot table and the slot protocol (docs/layout.md, "The slot word" and "Slot protocol"):
/// - A slot's word is changed only by CAS. Unattributed count changes (AddRef, Release, SetRefCount) are one CAS on an
///   unlocked word. Attributed changes (guards, handovers) lock the word (owner = entry + 1), journal the process's
///   holding in the slot, write the holding, clear the journal, and publish the new count with the unlock in one
///   release store (<see cref="CommitAttributed"/>).
/// - Claiming (Free → Acquiring, locked by the claimer, generation + 1) is one path for every kind of acquire
///   (<see cref="Claim{TPicker}"/>); taking a free slot without a new generation, to work on its memory, is another
///   (<see cref="TryTakeFree"/>, <see cref="ReturnFree"/>).
/// - A process that dies inside a locked section is repaired by whoever takes its liveness lock
///   (Recovery.RepairLocked): the journal restores its holding, the count in the word is kept (nothing was
///   published), and the lock is dropped. A lock held over 5 s by a live process is an error, never a hang.
/// Interlocked operations are full fences in .NET; Volatile.Write is a release store, Volatile.Read an acquire load.
/// Indexes given to this type are checked by its caller (the pool facade or a bounds check on a shared value).
/// </summary>
internal sealed unsafe class SlotTable
{
    private const int LockWaitLimitMs = 5000;

    private readonly ControlSegment _control;
    private readonly SlotRecord* _slots;
    private readonly PoolHeader* _header;
    private readonly FreeHints _hints;
    private readonly ProcessRegistry _registry;
    private readonly OwnHoldings _own;
    private Recovery? _recovery;

    internal SlotTable(ControlSegment control, FreeHints hints, ProcessRegistry registry, OwnHoldings own)
    {
        _own = own;
        _control = control;
        _slots = control.Slots;
        _header = control.Header;
        _hints = hints;
        _registry = registry;
    }

    /// <summary>Set once, by <see cref="Recovery"/>'s constructor: a lock held for long by a dead owner is repaired
    /// through it, and a claim that finds the pool full reclaims dead processes through it.</summary>
    internal void UseRecovery(Recovery recovery) => _recovery = recovery;

    internal SlotRecord* Record(int s) => &_slots[s];

    /// <summary>This process's holdings: <c>OwnHoldings[s]</c> is its holding of slot s (made on first use; every path
    /// that adds to a holding reads this before it claims or locks a slot, so the segment is never made under a lock).</summary>
    internal ulong* OwnHoldings => _own.Words;

    /// <summary><see cref="ReleaseAttributed"/> of one reference held by this process (a guard's).</summary>
    internal int ReleaseOwn(int s, uint gen, bool forget) => ReleaseAttributed(s, gen, 1, OwnHoldings, _registry.Tag, forget);

    internal int Capacity => _control.Capacity;

    // ---------------------------------------------------------------- unattributed counts

    /// <summary>Sets the slot's count (0..MaxCount, checked by the caller); 0 recycles the slot.</summary>
    internal void SetRefCount(int s, int count)
    {
        ref ulong word = ref _slots[s].Word;
        while (true)
        {
            ulong w = WaitUnlocked(s);
            RequireLive(s, w);
            ulong next = count == 0 ? SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)) : SlotWord.Make(count, SlotWord.Live, 0, SlotWord.Gen(w));
            if (Interlocked.CompareExchange(ref word, next, w) == w)
            {
                if (count == 0)
                {
                    AfterFreed(s);
                }

                return;
            }
        }
    }

    /// <summary>Adds one in-flight reference (owned by no process) and returns the new count.</summary>
    internal int AddRef(int s)
    {
        ref ulong word = ref _slots[s].Word;
        while (true)
        {
            ulong w = LiveUnlocked(s, ref word);
            int c = SlotWord.Count(w);
            if (c == SlotWord.MaxCount)
            {
                ThrowHelper.ThrowArgumentOutOfRange("metaIndex", s, $"slot {s}'s count is at its maximum ({SlotWord.MaxCount}).");
            }

            // One CAS: the count changes only if nothing else changed the word (state, lock, generation) meanwhile.
            if (Interlocked.CompareExchange(ref word, w + 1, w) == w)
            {
                return c + 1;
            }
        }
    }

    /// <summary>Drops one in-flight reference and returns the new count; at 0 the slot is recycled.</summary>
    internal int Release(int s)
    {
        ref ulong word = ref _slots[s].Word;
        while (true)
        {
            ulong w = LiveUnlocked(s, ref word);
            int c = SlotWord.Count(w);
            ulong next = c == 1 ? SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)) : w - 1;
            if (Interlocked.CompareExchange(ref word, next, w) == w)
            {
                if (c == 1)
                {
                    AfterFreed(s);
                }

                return c - 1;
            }
        }
    }

    /// <summary>The slot's current count: 0 for a slot with no live buffer. No system call, no lock. No state test:
    /// Free and Acquiring slots hold count 0, so the count field alone is the answer; a word damaged by another
    /// process can only make this number wrong, never unsafe.</summary>
    internal int RefCount(int s) => SlotWord.Count(Volatile.Read(ref _slots[s].Word));

    internal static void RequireLive(int s, ulong w)
    {
        if (SlotWord.State(w) != SlotWord.Live || SlotWord.Count(w) == 0)
        {
            ThrowHelper.ThrowSlotNotLive(s);
        }
    }

    /// <summary>Slot <paramref name="s"/>'s word once it is unlocked (waiting while it is locked), checked live: the
    /// first step of every change of a live slot's count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong LiveUnlocked(int s, ref ulong word)
    {
        ulong w = Volatile.Read(ref word);
        if (SlotWord.Owner(w) != 0)
        {
            w = WaitUnlocked(s);
        }

        RequireLive(s, w);
        return w;
    }

    // ---------------------------------------------------------------- claiming

    /// <summary>Claims the slot <paramref name="picker"/> ranks best (Free → Acquiring, locked by this process,
    /// generation + 1). Returns -1 when none is free, after repairing lost hints and, when <paramref name="reclaim"/>,
    /// reclaiming what dead processes held.</summary>
    internal int Claim<TPicker>(in TPicker picker, bool reclaim)
        where TPicker : struct, ISlotPicker
    {
        _ = _own.Words; // this process's holdings exist before it claims (made on first use, never under a lock)
        int s = TryClaimHinted(picker);
        if (s >= 0)
        {
            return s;
        }

        // Slow path (pool looks full): hints can be lost by a process that died between freeing a slot and setting
        // its hint, and dead processes may hold slots. Repair both, then look again.
        bool changed = _hints.Repair();
        if (reclaim && _recovery is not null)
        {
            changed |= _recovery.ReclaimDeadProcesses() > 0;
        }

        return changed ? TryClaimHinted(picker) : -1;
    }

    private int TryClaimHinted<TPicker>(in TPicker picker)
        where TPicker : struct, ISlotPicker
    {
        for (int round = 0; round < 1024; round++)
        {
            int pick = picker.Pick();
            if (pick < 0)
            {
                return -1;
            }

            if (TryClaimPicked(pick))
            {
                return pick;
            }
        }

        return -1;
    }

    /// <summary>Claims hinted slot <paramref name="pick"/>: clears its hint, then CASes it Free → Acquiring. False when
    /// another claimer took the hint or the hint was stale.</summary>
    private bool TryClaimPicked(int pick)
    {
        // Clearing the hint first makes this thread the one claimer that acts on it; a stale hint (slot in use) is
        // simply dropped, since the slot's releaser sets it again.
        if (!_hints.TryTake(pick))
        {
            return false;
        }

        ref ulong word = ref _slots[pick].Word;
        while (true)
        {
            ulong w = Volatile.Read(ref word);
            if (SlotWord.State(w) != SlotWord.Free)
            {
                return false; // stale hint
            }

            if (SlotWord.Owner(w) != 0)
            {
                _ = WaitUnlocked(pick);
                continue;
            }

            ulong claimed = SlotWord.Make(0, SlotWord.Acquiring, _registry.Tag, SlotWord.Gen(w) + 1);
            if (Interlocked.CompareExchange(ref word, claimed, w) == w)
            {
                _control.Counters.CountAcquire();
                return true;
            }
        }
    }

    /// <summary>Takes free, unlocked slot <paramref name="s"/> as if acquiring it (Acquiring, locked by this process,
    /// same generation), so that no acquirer uses its memory while this process changes it. <paramref name="w"/> is
    /// the word it had. False when the slot is not free or another process took it first.</summary>
    internal bool TryTakeFree(int s, out ulong w)
    {
        ref ulong word = ref _slots[s].Word;
        w = Volatile.Read(ref word);
        return SlotWord.State(w) == SlotWord.Free && SlotWord.Owner(w) == 0
            && Interlocked.CompareExchange(ref word, SlotWord.Make(0, SlotWord.Acquiring, _registry.Tag, SlotWord.Gen(w)), w) == w;
    }

    /// <summary>Puts back a slot taken by <see cref="TryTakeFree"/>: Free again, and hinted (an acquirer that met the
    /// hint while this process held the slot dropped it as stale).</summary>
    internal void ReturnFree(int s, ulong w)
    {
        Volatile.Write(ref _slots[s].Word, SlotWord.Make(0, SlotWord.Free, 0, SlotWord.Gen(w)));
        _hints.Set(s);
    }

    /// <summary>Gives up a claimed slot that could not be published (its memory could not be had).</summary>
    internal void AbandonClaim(int s, uint gen)
    {
        Volatile.Write(ref _slots[s].Word, SlotWord.Make(0, SlotWord.Free, 0, gen));
        AfterFreed(s);
    }

    /// <summary>Slot <paramref name="s"/>'s word now (an acquire load): for a claimer, the word as it claimed it.</summary>
    internal ulong Word(int s) => Volatile.Read(ref _slots[s].Word);

    /// <summary>True when slot <paramref name="s"/>'s record says it holds CUDA memory (a choice only: whoever acts on
    /// it holds the slot locked or claimed).</summary>
    internal bool HoldsCuda(int s) => LayoutConstants.IsCuda(Volatile.Read(ref _slots[s].Kind));

    /// <summary>With slot <paramref name="s"/> claimed and given CPU memory: its record says CPU memory of no device,
    /// then the common reset (<see cref="ResetRecord"/>).</summary>
    internal void ResetRecordForCpu(int s, long size)
    {
        SlotRecord* r = &_slots[s];
        r->Kind = LayoutConstants.KindCpu;
        r->DeviceId = -1;
        r->CudaOffset = 0;
        r->CudaAllocSize = 0;
        ResetRecord(s, size);
    }

    /// <summary>With slot <paramref name="s"/> claimed: its size, and no description for the new buffer (the one
    /// record reset of every kind of acquire). DescVersion 0 alone says "none": no reader looks at the other
    /// description fields then, and the next writer stores every field that differs from what is left there
    /// (docs/layout.md, "Descriptions"), so the acquire does not dirty the four cache lines of the last buffer's
    /// description that its consumer read.</summary>
    internal void ResetRecord(int s, long size)
    {
        SlotRecord* r = &_slots[s];
        r->Size = size;
        r->DescVersion = 0;
    }

    /// <summary>Publishes claimed slot <paramref name="s"/> (<paramref name="claimed"/>: its word as claimed) Live
    /// with count 1, attributed to this process's holdings. Every record field written before is visible before the
    /// slot reads Live (release stores).</summary>
    internal void PublishOwned(int s, ulong claimed)
    {
        uint gen = SlotWord.Gen(claimed);
        CommitAttributed(&_slots[s], s, OwnHoldings, _registry.Tag, claimed, Holding.Make(gen, 1), SlotWord.Make(1, SlotWord.Live, 0, gen));
    }

    /// <summary>Publishes claimed slot <paramref name="s"/> Live with count 1 in flight (held by no process).</summary>
    internal void PublishInFlight(int s, uint gen) => Volatile.Write(ref _slots[s].Word, SlotWord.Make(1, SlotWord.Live, 0, gen));

    // ---------------------------------------------------------------- locking and attributed changes

    /// <summary>Locks a live slot for an attributed change and returns its word as it was (unlocked).</summary>
    internal ulong LockLive(int s)
    {
        _ = _own.Words; // this process's holdings exist before it locks (made on first use, never under a lock)
        ref ulong word = ref _slots[s].Word;
        int tag = _registry.Tag;
        while (true)
        {
            ulong w = LiveUnlocked(s, ref word);
            if (SlotWord.Count(w) == SlotWord.MaxCount)
            {
                ThrowHelper.ThrowArgumentOutOfRange("metaIndex", s, $"slot {s}'s count is at its maximum ({SlotWord.MaxCount}).");
            }

            if (Interlocked.CompareExchange(ref word, SlotWord.WithOwner(w, tag), w) == w)
            {
                return w;
            }
        }
    }

    /// <summary>Locks slot <paramref name="s"/> whatever its state and returns its word as it was (unlocked).</summary>
    internal ulong LockAny(int s)
    {
        ref ulong word = ref _slots[s].Word;
        int tag = _registry.Tag;
        while (true)
        {
            ulong w = Volatile.Read(ref word);
            if (SlotWord.Owner(w) != 0)
            {
                w = WaitUnlocked(s);
            }

            if (Interlocked.CompareExchange(ref word, SlotWord.WithOwner(w, tag), w) == w)
            {
                return w;
            }
        }
    }

    /// <summary>Unlocks slot <paramref name="s"/>, putting back <paramref name="w"/> (the count did not change).</summary>
    internal void Unlock(int s, ulong w) => Volatile.Write(ref _slots[s].Word, w);

    /// <summary>With live slot <paramref name="s"/> locked by this process (<paramref name="w"/>: its word before the
    /// lock): one more reference, attributed to this process's holdings, and the unlock.</summary>
    internal void CommitGet(int s, ulong w)
    {
        ulong* holdings = OwnHoldings;
        int tag = _registry.Tag;
        uint gen = SlotWord.Gen(w);
        CommitAttributed(&_slots[s], s, holdings, tag, SlotWord.WithOwner(w, tag), Holding.Make(gen, Holding.CountFor(holdings[s], gen) + 1), SlotWord.Make(SlotWord.Count(w) + 1, SlotWord.Live, 0, gen));
    }

    /// <summary>Under the slot's lock (<paramref name="locked"/> is the word as locked): journals the old holding and
    /// word, writes the new holding, publishes the new word still locked, clears the journal, unlocks. A death at any
    /// point is resolved by recovery: no journal means nothing or everything was done; a journal with the word still
    /// equal to the saved one means the count was never published (the old holding goes back); a journal with a
    /// changed word means everything but the unlock was done (docs/layout.md, "Slot protocol").</summary>
    internal static void CommitAttributed(SlotRecord* r, int s, ulong* holdings, int tag, ulong locked, ulong holding, ulong unlocked)
    {
        r->JournalHoldings = holdings[s];
        r->JournalWord = locked;
        Volatile.Write(ref r->JournalOwner, (uint)tag);                 // release: the saved values are visible first
        Volatile.Write(ref holdings[s], holding);                       // release: after the journal
        Volatile.Write(ref r->Word, SlotWord.WithOwner(unlocked, tag)); // release: count published, still locked
        Volatile.Write(ref r->JournalOwner, 0u);
        Volatile.Write(ref r->Word, unlocked);                          // release: unlock
    }

    /// <summary>Drops up to <paramref name="n"/> of the references that <paramref name="holdings"/> (entry tag
    /// <paramref name="tag"/>) keep on slot <paramref name="s"/> of generation <paramref name="gen"/>;
    /// <paramref name="forget"/> leaves them in the count as in-flight references instead. Returns how many.</summary>
    internal int ReleaseAttributed(int s, uint gen, int n, ulong* holdings, int tag, bool forget)
    {
        SlotRecord* r = &_slots[s];
        ref ulong word = ref r->Word;
        ulong w;
        while (true)
        {
            w = Volatile.Read(ref word);
            if (SlotWord.Owner(w) != 0)
            {
                w = WaitUnlocked(s);
            }

            if (SlotWord.State(w) != SlotWord.Live || SlotWord.Gen(w) != gen)
            {
                return 0; // recycled under us (someone released references that were not theirs)
            }

            if (Interlocked.CompareExchange(ref word, SlotWord.WithOwner(w, tag), w) == w)
            {
                break;
            }
        }

        int held = Holding.CountFor(holdings[s], gen);
        int drop = Math.Min(held, n);
        if (drop == 0)
        {
            Volatile.Write(ref word, w);
            return 0;
        }

        ulong locked = SlotWord.WithOwner(w, tag);
        ulong hold = Holding.Make(gen, held - drop);
        if (forget)
        {
            CommitAttributed(r, s, holdings, tag, locked, hold, w);
            return drop;
        }

        int count = Math.Max(SlotWord.Count(w) - drop, 0);
        if (count == 0)
        {
            CommitAttributed(r, s, holdings, tag, locked, hold, SlotWord.Make(0, SlotWord.Free, 0, gen));
            AfterFreed(s);
        }
        else
        {
            CommitAttributed(r, s, holdings, tag, locked, hold, SlotWord.Make(count, SlotWord.Live, 0, gen));
        }

        return drop;
    }

    /// <summary>After a slot became Free: hint it, advance the free epoch and wake sleepers, if any.</summary>
    internal void AfterFreed(int s)
    {
        _hints.Set(s);
        PoolHeader* header = _header;
        // The hint's atomic OR is a full fence, so a waiter that showed itself (its WaitMask bit) before reading the
        // epoch and looking is seen here; one that shows itself later finds this slot when it looks. So the epoch moves
        // only when someone may sleep on it: a release with no waiter makes no atomic write to the header at all.
        ulong* mask = header->WaitMask;
        if ((Volatile.Read(ref mask[0]) | Volatile.Read(ref mask[1]) | Volatile.Read(ref mask[2]) | Volatile.Read(ref mask[3])) != 0)
        {
            Interlocked.Increment(ref header->FreeEpoch);
            _ = Interop.Libc.FutexWakeAll((nint)(&header->FreeEpoch));
        }
    }

    /// <summary>Waits while slot <paramref name="s"/> is locked and returns its unlocked word. A lock held by a dead
    /// process is repaired; one held longer than 5 s by a live one is an error, never a hang.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal ulong WaitUnlocked(int s)
    {
        ref ulong word = ref _slots[s].Word;
        var spin = new SpinWait();
        long start = Environment.TickCount64;
        int checks = 0;
        while (true)
        {
            ulong w = Volatile.Read(ref word);
            int owner = SlotWord.Owner(w);
            if (owner == 0)
            {
                return w;
            }

            if (owner > LayoutConstants.MaxProcesses)
            {
                ThrowHelper.ThrowCorrupt(_control.Bare, $"slot {s} is locked by process entry {owner - 1}, which does not exist");
            }

            spin.SpinOnce(sleep1Threshold: -1);
            if (spin.Count < 100)
            {
                continue;
            }

            // Held for long: its holder may be dead, or descheduled.
            if ((++checks & 63) == 1 && owner - 1 != _registry.Me)
            {
                _ = _recovery?.TryRecoverEntry(owner - 1);
            }

            if (Environment.TickCount64 - start > LockWaitLimitMs)
            {
                throw new XmemTimeoutException($"pool '{_control.Bare}': slot {s} has been locked by live process entry {owner - 1} for over {LockWaitLimitMs / 1000} s. That process is stopped or misbehaving; see `xmem stat {_control.Bare}`.");
            }

            Thread.Sleep(0);
        }
    }
}
