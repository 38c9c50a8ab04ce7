using System.Runtime.CompilerServices;

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
/// Maps 64-bit opaque handles to values (objects, or small structs such as <see cref="GuardHandle"/>):
/// <c>kind(8) | generation(32) | index+1(24)</c>. A slot's generation goes up each time it is reused, so a stale or
/// doubly destroyed handle never finds the value that now occupies its slot, and never a freed one: a miss is an
/// error status, not a crash (unlike raw GCHandle pointers). Nothing here allocates once a slot's chunk exists, so
/// a steady state of adds and removes allocates nothing.
/// <para>
/// Each slot is <c>{Handle, Value, Generation, NextFree}</c>. Invariants: a slot's <c>Value</c> is written only while
/// its <c>Handle</c> is 0 (free: by the one thread that popped it from the free list, or removed it), and published
/// by the release store of its new <c>Handle</c>; a handle value never comes back once its slot moved on (the
/// generation only goes up). So a lookup that reads the same handle before and after reading the value (a seqlock;
/// <see cref="Volatile.ReadBarrier"/> keeps the value's reads before the second one) read a consistent value of that
/// handle, even for a struct that is not read in one instruction. Removal is one CAS of <c>Handle</c> to 0, so exactly
/// one of several racing destroys gets the value.
/// </para>
/// <para>
/// The free list is a stack threaded through the slots' <c>NextFree</c>, its head a 64-bit word of <c>tag(32) |
/// index+1(32)</c>; every push and pop bumps the tag, so a pop that read a head another thread popped and pushed back
/// meanwhile fails its CAS (no ABA) instead of linking a slot that is in use. In front of it each thread keeps up to
/// 16 free slots of its own (<see cref="LocalFree"/>): a removal puts its slot there and the thread's next add takes it
/// back, so a thread that acquires and releases makes one CAS per handle (its removal's) rather than three; slots of a
/// thread that exited go to the shared list from its list's finalizer. Adds and removes take no lock (only making a
/// new chunk of 1,024 slots does, once per chunk), and removal never allocates (a thread's list is made by its first
/// add), so it cannot fail — not even in a process out of memory or at its mapping limit.
/// </para>
/// </summary>
internal sealed class HandleTable<T>(HandleKind kind)
{
    private const int ChunkBits = 10;
    private const int ChunkSize = 1 << ChunkBits;
    private const int MaxEntries = (1 << 24) - 1;

    private readonly ulong _kindBits = (ulong)kind << 56;
    // Chunks are never moved or freed, so a reader can index them without a lock while a writer grows the table.
    private readonly Slot[]?[] _chunks = new Slot[]?[(MaxEntries + ChunkSize) / ChunkSize];
    private readonly Lock _growLock = new();
    private long _freeHead; // tag(32) | index + 1 of the top free slot (0 = empty)
    private int _next; // slots below it have been handed out at least once

    /// <summary>Stores <paramref name="value"/> and returns its new handle (never 0).</summary>
    internal ulong Add(T value)
    {
        LocalFree? local = t_local;
        if (local is null || local.Table != this)
        {
            local = MakeLocal(); // made here, where a failure may throw, so that removal never allocates
        }

        int index = local.Count > 0 ? local.Slots[--local.Count] : PopFree();
        if (index < 0)
        {
            index = Interlocked.Increment(ref _next) - 1;
            if (index >= MaxEntries)
            {
                _ = Interlocked.Decrement(ref _next);
                throw new XmemException(XmemStatus.OutOfMemory, $"more than {MaxEntries} xmem handles of one kind are open; release or close some.");
            }
        }

        ref Slot e = ref ChunkFor(index)[index & (ChunkSize - 1)];
        uint gen = unchecked(++e.Generation); // this thread alone owns the free slot
        ulong handle = _kindBits | ((ulong)gen << 24) | (uint)(index + 1);
        if (typeof(T) == typeof(GuardHandle)) // folded by the JIT: a guard slot keeps its last objects (GuardHandle.Store)
        {
            GuardHandle.Store(ref Unsafe.As<T, GuardHandle>(ref e.Value), in Unsafe.As<T, GuardHandle>(ref value));
        }
        else
        {
            e.Value = value;
        }

        Volatile.Write(ref e.Handle, handle); // release: a reader that sees the handle sees the value
        return handle;
    }

    /// <summary>The value behind <paramref name="handle"/>; false for a null, stale or wrong-kind handle.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // every export's lookup: shared generic code would be a call
    internal bool TryGet(ulong handle, out T value)
    {
        Slot[]? chunk = ChunkOf(handle, out int i);
        if (chunk is not null)
        {
            ref Slot e = ref chunk[i];
            if (Volatile.Read(ref e.Handle) == handle)
            {
                value = e.Value;
                Volatile.ReadBarrier();
                if (Volatile.Read(ref e.Handle) == handle)
                {
                    return true;
                }
            }
        }

        value = default!;
        return false;
    }

    /// <summary>Removes the entry and gives its value; false when the handle was not live (already removed, stale,
    /// wrong kind). Of several racing removals exactly one gets the value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // the value is copied into the caller's local, not through a byref
    internal bool TryRemove(ulong handle, out T value)
    {
        Slot[]? chunk = ChunkOf(handle, out int i);
        if (chunk is not null)
        {
            ref Slot e = ref chunk[i];
            if (Volatile.Read(ref e.Handle) == handle)
            {
                value = e.Value; // the value of this handle: it cannot change before the CAS below moves the handle on
                if (Interlocked.CompareExchange(ref e.Handle, 0, handle) == handle)
                {
                    int index = (int)(handle & 0xFFFFFF) - 1;
                    LocalFree? local = t_local;
                    if (local is not null && local.Table == this && local.Count < LocalFree.Capacity)
                    {
                        // This thread's now: its next Add takes it back. A guard slot keeps its objects for that Add
                        // (GuardHandle.Store: no write barrier when they are the same); at most 16 per thread.
                        if (typeof(T) != typeof(GuardHandle))
                        {
                            e.Value = default!; // nothing keeps the object alive; only this thread writes the slot now
                        }

                        local.Slots[local.Count++] = index;
                    }
                    else
                    {
                        e.Value = default!;
                        PushFree(index, ref e);
                    }

                    return true;
                }
            }
        }

        value = default!;
        return false;
    }

    private LocalFree MakeLocal() => t_local = new LocalFree(this);

    /// <summary>Pushes a free slot that no list holds on the shared free list (a dead thread's local ones).</summary>
    private void PushFree(int index)
    {
        ref Slot e = ref _chunks[index >> ChunkBits]![index & (ChunkSize - 1)];
        e.Value = default!; // a guard slot kept its objects while the thread's own list held it
        PushFree(index, ref e);
    }

    /// <summary>Pushes a removed slot on the free list: lock-free, allocation-free.</summary>
    private void PushFree(int index, ref Slot e)
    {
        while (true)
        {
            long head = Volatile.Read(ref _freeHead);
            e.NextFree = (int)head;
            long next = (long)((((ulong)head >> 32) + 1) << 32) | (uint)(index + 1);
            // Full fence: the link (and the slot's cleared value) are visible before the slot is reachable.
            if (Interlocked.CompareExchange(ref _freeHead, next, head) == head)
            {
                return;
            }
        }
    }

    /// <summary>The top free slot's index, taken off the list; -1 when the list is empty.</summary>
    private int PopFree()
    {
        while (true)
        {
            long head = Volatile.Read(ref _freeHead);
            int top = (int)head;
            if (top == 0)
            {
                return -1;
            }

            int index = top - 1;
            // The slot's chunk exists: the slot was handed out before it was freed. Its link may be stale if another
            // thread popped it meanwhile, but then the tag moved on and the CAS fails.
            int link = Volatile.Read(ref _chunks[index >> ChunkBits]![index & (ChunkSize - 1)].NextFree);
            long next = (long)((((ulong)head >> 32) + 1) << 32) | (uint)link;
            if (Interlocked.CompareExchange(ref _freeHead, next, head) == head)
            {
                return index;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)] // every add: the chunk exists but once per 1,024 slots
    private Slot[] ChunkFor(int index) => Volatile.Read(ref _chunks[index >> ChunkBits]) ?? Grow(index >> ChunkBits);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private Slot[] Grow(int c)
    {
        Slot[]? chunk;
        lock (_growLock)
        {
            chunk = _chunks[c];
            if (chunk is null)
            {
                chunk = new Slot[ChunkSize];
                Volatile.Write(ref _chunks[c], chunk);
            }

            return chunk;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Slot[]? ChunkOf(ulong handle, out int i)
    {
        int index = (int)(handle & 0xFFFFFF) - 1;
        i = index & (ChunkSize - 1);
        if ((handle & 0xFF00_0000_0000_0000UL) != _kindBits || index < 0)
        {
            return null;
        }

        return Volatile.Read(ref _chunks[index >> ChunkBits]);
    }

    /// <summary>
    /// A thread's own free slots of a table: a removal keeps its slot here (up to <see cref="Capacity"/>) and the thread's next add takes it back, so that a thread
    /// that acquires and releases makes no compare-and-swap on the shared free list's head. A slot here is free
    /// (Handle 0) and reachable from no other list, so only this thread touches it, as a popped slot. When the thread
    /// is gone its list is unreachable, and its finalizer gives the slots to the shared list (lock-free, as any push).
    /// The thread-static is per type argument, and the process has one table per type (HandleTables); a list is used
    /// only by its own table all the same (<see cref="Table"/>: a second table of a type would make its own, and the
    /// one it replaces gives its slots back when it is finalized).
    /// </summary>
    private sealed class LocalFree(HandleTable<T> table)
    {
        internal const int Capacity = 16;
        internal readonly int[] Slots = new int[Capacity];
        internal int Count;

        internal HandleTable<T> Table { get; } = table;

        ~LocalFree()
        {
            for (int i = 0; i < Count; i++)
            {
                Table.PushFree(Slots[i]);
            }
        }
    }

    [ThreadStatic]
    private static LocalFree? t_local;

    private struct Slot
    {
        internal ulong Handle; // 0 while free
        internal T Value;
        internal uint Generation;
        internal int NextFree; // index + 1 of the next free slot, 0 = end (while free)
    }
}
