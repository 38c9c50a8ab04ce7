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
/// one of several racing destroys wins.
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
    private readonly Stack<int> _free = new();
    private readonly Lock _lock = new();
    private int _next;

    /// <summary>Stores <paramref name="target"/> and returns its new handle (never 0).</summary>
    internal ulong Add(T target)
    {
        lock (_lock)
        {
            int index;
            if (_free.Count > 0)
            {
                index = _free.Pop();
            }
            else
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

        lock (_lock)
        {
            _free.Push((int)(handle & 0xFFFFFF) - 1);
        }

        return e.Target;
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
