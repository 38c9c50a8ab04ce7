namespace Xmem.Native.Handles;

/// <summary>A guard behind a C handle: the reference (a pooled guard object and the version it was taken at) and the
/// pool handle it came from (to order its release against a close). A value in the guard table, so registering a guard
/// allocates nothing; and <see cref="Store"/> writes no object reference when the table slot already holds the same
/// guard object and pool handle, which is the steady state of a thread that acquires and releases (its slot and its
/// pooled guard both come back to it).</summary>
internal struct GuardHandle(BufferRef reference, PoolHandle owner)
{
    private BufferGuard? _guard = reference.Guard;
    private long _version = reference.Version;
    private PoolHandle _owner = owner;

    /// <summary>The reference this handle owns.</summary>
    internal readonly BufferRef Ref => new(_guard!, _version);

    /// <summary>The pool handle the guard was taken through.</summary>
    internal readonly PoolHandle Owner => _owner;

    /// <summary>The guard object behind the reference, for the calls that need more than its checked fields
    /// (leases, CUDA, descriptions); throws <see cref="BufferGuardInvalidException"/> once the reference ended.</summary>
    internal readonly BufferGuard Guard
    {
        get
        {
            BufferGuard g = _guard!;
            g.ThrowIfInvalidAt(_version);
            return g;
        }
    }

    /// <summary>Stores <paramref name="value"/> in a free table slot. A free slot in its thread's own list keeps the
    /// objects of its last handle (<see cref="HandleTable{T}"/> clears guard slots only when they go to the shared
    /// list): when they are the same, only the version is written, so the store needs no GC write barrier. Retention is
    /// bounded: at most 16 slots per thread (its own list), each keeping one guard object and one pool handle until
    /// the thread's next acquire reuses it; a pool's close released what the pool held outside the heap.</summary>
    internal static void Store(ref GuardHandle slot, in GuardHandle value)
    {
        if (ReferenceEquals(slot._guard, value._guard) && ReferenceEquals(slot._owner, value._owner))
        {
            slot._version = value._version;
        }
        else
        {
            slot = value;
        }
    }
}
