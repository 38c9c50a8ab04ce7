namespace Xmem.Native.Handles;

/// <summary>A guard behind a C handle: the reference (a <see cref="BufferRef"/>, whose object is one of the pool's
/// pooled guards) and the pool handle it came from (to order its release against a close). A value in the guard
/// table, so registering a guard allocates nothing.</summary>
internal readonly struct GuardHandle(BufferRef reference, PoolHandle owner)
{
    /// <summary>The reference this handle owns.</summary>
    internal BufferRef Ref { get; } = reference;

    /// <summary>The pool handle the guard was taken through.</summary>
    internal PoolHandle Owner { get; } = owner;

    /// <summary>The guard object behind the reference, for the calls that need more than its checked fields
    /// (leases, CUDA, descriptions); throws <see cref="BufferGuardInvalidException"/> once the reference ended.</summary>
    internal BufferGuard Guard
    {
        get
        {
            BufferGuard g = Ref.Guard;
            g.ThrowIfInvalidAt(Ref.Version);
            return g;
        }
    }
}
