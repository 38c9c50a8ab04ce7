using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Inspection;

/// <summary>Turns private copies of a pool's slot records, process entries and holdings into what <c>xmem stat</c>
/// shows. Every value is checked before it is believed: a record out of its range is shown as
/// <see cref="SlotState.Invalid"/> with the reason, never used to index anything.</summary>
internal static class TableSnapshot
{
    internal static SlotInfo DescribeSlot(int index, in SlotRecord r)
    {
        ulong w = r.Word;
        uint state = SlotWord.State(w);
        int count = SlotWord.Count(w);
        int owner = SlotWord.Owner(w);
        long cap = r.DataCapacity;
        long size = r.Size;
        string kind = r.Kind switch { LayoutConstants.KindCpu => "cpu", LayoutConstants.KindCuda => "cuda", LayoutConstants.KindCudaVmm => "cuda", LayoutConstants.KindNone => "none", _ => $"invalid ({r.Kind})" };
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
        else if (r.Kind > LayoutConstants.KindCudaVmm)
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
    internal static void AttributeHoldings(string bare, ulong instance, int cap, List<SlotInfo> slots, List<(int Slot, uint Gen, int Count)> words, List<ProcessEntryInfo> entries)
    {
        var holders = new List<SlotHolder>?[slots.Count];
        var holdings = new ulong[cap];
        for (int e = 0; e < entries.Count; e++)
        {
            ProcessEntryInfo entry = entries[e];
            int got;
            try
            {
                using SegmentReader? r = SegmentReader.TryOpen(SegmentNames.Holdings(bare, instance, entry.Entry));
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

    internal static unsafe string CommandOf(in ProcessEntry e)
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
