using System.Text.RegularExpressions;
using Xmem.Layout;

namespace Xmem.Tests.Robustness;

/// <summary>
/// What a pool looks like from outside, read through its files as another process would see it: every slot word and
/// journal, the free hints, the process table and the segment files. <see cref="Problems"/> lists every departure
/// from "every slot back": a slot that is not Free with count 0 and unlocked, a journal left, an entry other than
/// the expected live ones, a waiter left counted, a holdings segment of a freed entry, a data segment no slot records.
/// </summary>
internal sealed unsafe partial class PoolAudit
{
    private PoolAudit()
    {
    }

    public int Capacity { get; private init; }

    /// <summary>Slots that are not Free with count 0 (the buffers lost).</summary>
    public int SlotsNotFree { get; private init; }

    /// <summary>Free slots whose hint bit is clear (allowed: a hint can be lost, and the next full scan repairs it).</summary>
    public int HintsLost { get; private init; }

    /// <summary>Data segments that no slot records as its memory (MemGen, DataCapacity &gt; 0).</summary>
    public int OrphanDataSegments { get; private init; }

    public IReadOnlyList<string> Problems { get; private init; } = [];

    [GeneratedRegex(@"\.([0-9a-f]{16})\.s(\d+)\.g(\d+)$")]
    private static partial Regex DataSegmentName();

    [GeneratedRegex(@"\.([0-9a-f]{16})\.p(\d+)$")]
    private static partial Regex HoldingsName();

    /// <summary>Audits pool <paramref name="name"/>, expecting exactly the entries in <paramref name="liveEntries"/>
    /// to be Active (with a holdings segment) and every slot back (Free, count 0, unlocked, no journal).</summary>
    public static PoolAudit Of(string name, params int[] liveEntries)
    {
        var problems = new List<string>();
        using var seg = RawSegment.Open(Shm.ControlPath(name));
        var h = (PoolHeader*)seg.Base;
        int cap = h->Capacity;
        ulong instance = h->InstanceId;
        var hints = (ulong*)(seg.Base + LayoutConstants.FreeHintsOffset);
        var slots = (SlotRecord*)(seg.Base + LayoutConstants.SlotTableOffset(cap));
        int notFree = 0, hintsLost = 0;
        var recorded = new HashSet<(int Slot, uint Gen)>();
        for (int s = 0; s < cap; s++)
        {
            SlotRecord* r = &slots[s];
            ulong w = Volatile.Read(ref r->Word);
            if (SlotWord.State(w) != SlotWord.Free || SlotWord.Count(w) != 0 || SlotWord.Owner(w) != 0)
            {
                notFree++;
                problems.Add($"slot {s}: state {SlotWord.State(w)} count {SlotWord.Count(w)} owner {SlotWord.Owner(w)} (expected Free, 0, unlocked)");
            }
            else if ((Volatile.Read(ref hints[s >> 6]) & (1UL << (s & 63))) == 0)
            {
                hintsLost++;
            }

            if (r->JournalOwner != 0)
            {
                problems.Add($"slot {s}: journal of tag {r->JournalOwner} left");
            }

            if (r->DataCapacity > 0)
            {
                recorded.Add((s, r->MemGen));
            }
        }

        for (int k = 0; k < 4; k++)
        {
            if (h->WaitMask[k] != 0)
            {
                problems.Add($"header WaitMask[{k}] is 0x{h->WaitMask[k]:x16} (expected 0: no process waits)");
            }
        }

        for (int i = 0; i < LayoutConstants.MaxProcesses; i++)
        {
            var e = (ProcessEntry*)(seg.Base + LayoutConstants.ProcessTableOffset + ((long)i * LayoutConstants.ProcessEntrySize));
            uint expected = liveEntries.Contains(i) ? LayoutConstants.ProcessActive : LayoutConstants.ProcessFree;
            if (e->State != expected)
            {
                problems.Add($"process entry {i}: state {e->State} (pid {e->Pid}), expected {expected}");
            }

            if (e->Waiters != 0)
            {
                problems.Add($"process entry {i}: Waiters {e->Waiters} (expected 0)");
            }
        }

        int orphans = 0;
        foreach (string f in Shm.EntriesOf(name))
        {
            Match d = DataSegmentName().Match(f);
            Match p = HoldingsName().Match(f);
            if (f == LayoutConstants.ObjectPrefix + name)
            {
                continue;
            }

            if (d.Success && Convert.ToUInt64(d.Groups[1].Value, 16) == instance)
            {
                if (!recorded.Contains((int.Parse(d.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), uint.Parse(d.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture))))
                {
                    orphans++;
                    problems.Add($"data segment {f} is recorded by no slot (orphan)");
                }
            }
            else if (p.Success && Convert.ToUInt64(p.Groups[1].Value, 16) == instance && liveEntries.Contains(int.Parse(p.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)))
            {
                // the holdings of a live entry
            }
            else
            {
                problems.Add($"stray segment {f}");
            }
        }

        return new PoolAudit { Capacity = cap, SlotsNotFree = notFree, HintsLost = hintsLost, OrphanDataSegments = orphans, Problems = problems };
    }

    /// <summary>True when every hint bit of the pool's slots is set.</summary>
    public static bool AllHintsSet(string name)
    {
        using var seg = RawSegment.Open(Shm.ControlPath(name));
        int cap = ((PoolHeader*)seg.Base)->Capacity;
        var hints = (ulong*)(seg.Base + LayoutConstants.FreeHintsOffset);
        for (int s = 0; s < cap; s++)
        {
            if ((Volatile.Read(ref hints[s >> 6]) & (1UL << (s & 63))) == 0)
            {
                return false;
            }
        }

        return true;
    }
}
