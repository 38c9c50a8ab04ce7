namespace Xmem.Native.Handles;

/// <summary>The kinds of opaque handle the C ABI hands out; the kind sits in a handle's top byte, so a handle of one
/// kind passed where another is expected is refused (XMEM_E_INVALID_HANDLE) rather than misread.</summary>
internal enum HandleKind : byte
{
    Pool = 0x01,
    Guard = 0x02,
    Lease = 0x03,
    Channel = 0x04,
    Subscription = 0x05,
}

/// <summary>
/// Maps 64-bit opaque handles to managed objects: <c>kind(8) | generation(32) | index+1(24)</c>. A slot's generation
/// goes up each time it is reused, so a stale or doubly destroyed handle never finds the object that now occupies its
/// slot, and never a freed one: a miss is an error status, not a crash (unlike raw GCHandle pointers).
/// Lookups are lock-free (one acquire load of an immutable entry); adding takes a lock; removal is one CAS, so exactly
/// one of several racing destroys wins, and then a lock-free push of the index on the free list.
/// Removal (every destroy, release and close) takes no lock and allocates nothing, so it cannot fail — not even in a
/// process out of memory or at its mapping limit, where an allocation here used to throw outside the export's try and
/// abort the process. The free list is a stack threaded through a per-chunk array of next indexes: any thread pushes
/// (CAS on the head); only <see cref="Add"/> pops, under its lock, so the one popper never meets ABA (an index on the
/// stack can be pushed again only after that popper popped it).
/// </summary>
internal sealed class HandleTable<T>(HandleKind kind) where T : class
{
    private const int ChunkBits = 10;
    private const int ChunkSize = 1 << ChunkBits;
    private const int MaxEntries = (1 << 24) - 1;

    private readonly ulong _kindBits = (ulong)kind << 56;
    // Chunks are never moved or freed, so a reader can index them without a lock while a writer grows the table.
    private readonly Entry?[]?[] _chunks = new Entry?[]?[(MaxEntries + ChunkSize) / ChunkSize];
    private readonly uint[]?[] _generations = new uint[]?[(MaxEntries + ChunkSize) / ChunkSize];
    // Free-list links: _nextFree[c][i] = (next free index + 1), 0 = end; allocated with the chunk, so a push never allocates.
    private readonly int[]?[] _nextFree = new int[]?[(MaxEntries + ChunkSize) / ChunkSize];
    private readonly Lock _lock = new();
    private int _freeHead; // index + 1 of the top free entry, 0 = empty
    private int _next;

    /// <summary>Stores <paramref name="target"/> and returns its new handle (never 0).</summary>
    internal ulong Add(T target)
    {
        lock (_lock)
        {
            int index = PopFree();
            if (index < 0)
            {
                if (_next >= MaxEntries)
                {
                    throw new XmemException(XmemStatus.OutOfMemory, $"more than {MaxEntries} xmem handles of one kind are open; release or close some.");
                }

                index = _next++;
            }

            int c = index >> ChunkBits, i = index & (ChunkSize - 1);
            Entry?[] chunk = _chunks[c] ??= new Entry?[ChunkSize];
            uint[] gens = _generations[c] ??= new uint[ChunkSize];
            _nextFree[c] ??= new int[ChunkSize];
            uint gen = unchecked(++gens[i]);
            ulong handle = _kindBits | ((ulong)gen << 24) | (uint)(index + 1);
            // Release store: a reader that sees the entry sees its fields.
            Volatile.Write(ref chunk[i], new Entry(handle, target));
            return handle;
        }
    }

    /// <summary>The object behind <paramref name="handle"/>, or null for a null, stale or wrong-kind handle.</summary>
    internal T? Get(ulong handle)
    {
        Entry?[]? chunk = ChunkOf(handle, out int i);
        if (chunk is null)
        {
            return null;
        }

        Entry? e = Volatile.Read(ref chunk[i]);
        return e is not null && e.Handle == handle ? e.Target : null;
    }

    /// <summary>Removes the entry and returns its object; null when the handle was not live (already removed, stale,
    /// wrong kind). Of several racing removals exactly one gets the object.</summary>
    internal T? Remove(ulong handle)
    {
        Entry?[]? chunk = ChunkOf(handle, out int i);
        if (chunk is null)
        {
            return null;
        }

        Entry? e = Volatile.Read(ref chunk[i]);
        if (e is null || e.Handle != handle || Interlocked.CompareExchange(ref chunk[i], null, e) != e)
        {
            return null;
        }

        PushFree((int)(handle & 0xFFFFFF) - 1);
        return e.Target;
    }

    /// <summary>Pushes a removed entry's index on the free list: lock-free, allocation-free (its link array exists,
    /// since the entry did).</summary>
    private void PushFree(int index)
    {
        ref int link = ref _nextFree[index >> ChunkBits]![index & (ChunkSize - 1)];
        while (true)
        {
            int head = Volatile.Read(ref _freeHead);
            link = head;
            // Full fence: the link is visible before the index is reachable from the head.
            if (Interlocked.CompareExchange(ref _freeHead, index + 1, head) == head)
            {
                return;
            }
        }
    }

    /// <summary>Under <see cref="_lock"/> (the only popper): the top free index, or -1 when none.</summary>
    private int PopFree()
    {
        while (true)
        {
            int head = Volatile.Read(ref _freeHead);
            if (head == 0)
            {
                return -1;
            }

            int index = head - 1;
            int next = Volatile.Read(ref _nextFree[index >> ChunkBits]![index & (ChunkSize - 1)]);
            if (Interlocked.CompareExchange(ref _freeHead, next, head) == head)
            {
                return index;
            }
        }
    }

    private Entry?[]? ChunkOf(ulong handle, out int i)
    {
        int index = (int)(handle & 0xFFFFFF) - 1;
        i = index & (ChunkSize - 1);
        if ((handle & 0xFF00_0000_0000_0000UL) != _kindBits || index < 0)
        {
            return null;
        }

        return Volatile.Read(ref _chunks[index >> ChunkBits]);
    }

    /// <summary>Immutable, so one reference read gives a consistent (handle, target) pair.</summary>
    private sealed class Entry(ulong handle, T target)
    {
        internal readonly ulong Handle = handle;
        internal readonly T Target = target;
    }
}
