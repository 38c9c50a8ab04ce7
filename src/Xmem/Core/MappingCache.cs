using Xmem.SharedMemory;
using System.Runtime.CompilerServices;

namespace Xmem.Core;

/// <summary>
/// This process's cache of data-segment mappings, one entry per slot, bounded by a budget of mappings.
/// Invariants:
/// - Every entry is changed (set, replaced, removed) under <see cref="Gate"/>; readers of the fast path read an entry
///   with one acquire load and take a lease on its region, with no lock, no system call and no allocation.
/// - The cache holds one lease on each region it lists; removing an entry drops that lease (Dispose). A region is
///   unmapped only when its last lease goes, so evicting an entry never unmaps memory under a guard or a view: those
///   hold leases of their own, and the memory goes when they let go.
/// - <see cref="_count"/> is the number of entries. When a new entry makes it exceed the budget, CLOCK evicts: the
///   hand clears the reference bit of used entries and removes the first one found unused since its last pass. So
///   a process keeps at most budget cached mappings, plus those still leased by guards of slots it evicted.
/// A lookup that races an eviction may find the region closed before its lease: it reports a miss, and the caller
/// maps again under the gate.
/// </summary>
internal sealed class MappingCache
{
    /// <summary>The default budget: well under the kernel's default vm.max_map_count (65,530), which every other
    /// mapping of the process (code, heap, threads) also counts against.</summary>
    internal const int DefaultBudget = 16384;

    /// <summary>The environment variable that sets the budget (a whole number ≥ 1).</summary>
    internal const string BudgetVariable = "XMEM_MAX_MAPPINGS";

    private readonly DataMapping?[] _maps;
    private readonly int _budget;
    private int _count;
    private int _hand;

    internal MappingCache(int slots, int budget)
    {
        _maps = new DataMapping?[slots];
        _budget = budget;
    }

    /// <summary>The lock under which entries change (and slow-path lookups map).</summary>
    internal Lock Gate { get; } = new();

    /// <summary>Mappings listed now (for tests and inspection).</summary>
    internal int Count => Volatile.Read(ref _count);

    /// <summary>The most mappings listed at once.</summary>
    internal int Budget => _budget;

    /// <summary>The budget from <see cref="BudgetVariable"/>, else <see cref="DefaultBudget"/>.</summary>
    internal static int BudgetFromEnvironment()
    {
        string? v = Environment.GetEnvironmentVariable(BudgetVariable);
        if (string.IsNullOrWhiteSpace(v))
        {
            return DefaultBudget;
        }

        if (!int.TryParse(v, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int budget) || budget < 1)
        {
            throw new ArgumentException($"{BudgetVariable}='{v}' is not a whole number of at least 1; set it to the most data-segment mappings a process may keep (default {DefaultBudget}), or unset it.");
        }

        return budget;
    }

    /// <summary>The fast path: slot <paramref name="s"/>'s mapping of generation <paramref name="memGen"/>, leased,
    /// when it is cached and covers <paramref name="size"/> bytes (1 ≤ size ≤ its length); else null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal DataMapping? TryLease(int s, uint memGen, long size)
    {
        DataMapping? m = Volatile.Read(ref _maps[s]);
        // One unsigned compare refuses size ≤ 0 and size > length together.
        if (m is null || m.MemGen != memGen || (ulong)(size - 1) >= (ulong)m.Length)
        {
            return null;
        }

        if (!m.Referenced)
        {
            m.Referenced = true; // store only when clear: a hot entry's line is not written on every use
        }

        return TryAddLease(m) ? m : null;
    }

    /// <summary>Under <see cref="Gate"/>: the cached entry of slot <paramref name="s"/>.</summary>
    internal DataMapping? PeekLocked(int s) => _maps[s];

    /// <summary>Under <see cref="Gate"/>: lists <paramref name="map"/> for slot <paramref name="s"/> (dropping the
    /// cache's lease on the entry it replaces) and evicts beyond the budget, never slot <paramref name="s"/>.</summary>
    internal void SetLocked(int s, DataMapping map)
    {
        DataMapping? old = _maps[s];
        map.Referenced = true;
        Volatile.Write(ref _maps[s], map); // release: a reader that sees the entry sees the mapping
        if (old is null)
        {
            _count++;
        }
        else
        {
            old.Region.Dispose();
        }

        while (_count > _budget && EvictOneLocked(s))
        {
        }
    }

    /// <summary>Under <see cref="Gate"/>: removes slot <paramref name="s"/>'s entry, if any.</summary>
    internal void RemoveLocked(int s)
    {
        DataMapping? old = _maps[s];
        if (old is not null)
        {
            Volatile.Write(ref _maps[s], null);
            _count--;
            old.Region.Dispose();
        }
    }

    /// <summary>Under <see cref="Gate"/>: removes every entry.</summary>
    internal void ClearLocked()
    {
        for (int s = 0; s < _maps.Length; s++)
        {
            RemoveLocked(s);
        }
    }

    /// <summary>One step of CLOCK: removes the first entry (other than <paramref name="keep"/>) whose reference bit is
    /// clear, clearing the bits it passes. False when there is nothing else to evict.</summary>
    private bool EvictOneLocked(int keep)
    {
        // Two turns at most: the first clears every bit, the second finds a clear one — unless only `keep` is listed.
        for (long steps = 2L * _maps.Length; steps > 0; steps--)
        {
            int s = _hand;
            _hand = s + 1 == _maps.Length ? 0 : s + 1;
            DataMapping? m = _maps[s];
            if (m is null || s == keep)
            {
                continue;
            }

            if (m.Referenced)
            {
                m.Referenced = false;
                continue;
            }

            RemoveLocked(s);
            return true;
        }

        return false;
    }

    /// <summary>Takes a lease on a mapping found without the gate; false when an eviction closed it meanwhile.</summary>
    internal static bool TryAddLease(DataMapping m)
    {
        try
        {
            m.Region.DangerousAddRefChecked();
            return true;
        }
        catch (ObjectDisposedException)
        {
            return false; // evicted (or dropped) between the lookup and the lease: the caller maps again
        }
    }
}
