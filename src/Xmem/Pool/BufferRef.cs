using System.Runtime.InteropServices;
using Xmem.Errors;

namespace Xmem;

/// <summary>
/// One reference to a buffer, as a value: what a <see cref="BufferGuard"/> is, without an object of its own. From
/// <see cref="BufferPool.AcquireCpuRef"/>, <see cref="BufferPool.GetRef"/>, <see cref="BufferPool.GetMutRef"/> and the
/// channels' <c>ReceiveRef</c>; handed on with <see cref="BufferChannel.Send(BufferRef)"/>. A steady-state acquire,
/// get, send and receive through these allocate nothing: the object behind the value is one of the pool's pooled
/// guards, reused for later references once this one ended.
/// <para>
/// Dispose it exactly where a guard would be disposed (<c>using</c>); copies of the value name the same reference,
/// and once any of them disposed, forgot or sent it, all of them are invalid (<see cref="IsValid"/> false; the
/// accessors throw <see cref="BufferGuardInvalidException"/>, Dispose does nothing) — even after the object behind
/// it serves another reference. Unlike a guard, <b>a reference that is never disposed is not given back by the
/// garbage collector</b>: it stays held by this process until the pool is disposed or the process exits (crash
/// recovery then gives it back). Spans taken from it are valid while it is, as with a guard.
/// </para>
/// </summary>
public readonly struct BufferRef : IDisposable, IEquatable<BufferRef>
{
    private readonly BufferGuard? _guard;
    private readonly long _version;

    internal BufferRef(BufferGuard guard)
    {
        _guard = guard;
        _version = guard.Version;
    }

    /// <summary>The reference of <paramref name="guard"/> at <paramref name="version"/>, as a C ABI handle stores it.</summary>
    internal BufferRef(BufferGuard guard, long version)
    {
        _guard = guard;
        _version = version;
    }

    /// <summary>True while this reference is owned (not yet disposed, forgotten or sent). False for <c>default</c>.</summary>
    public bool IsValid => _guard is not null && _guard.IsValidAt(_version);

    /// <summary>The slot's index, to hand to other processes.</summary>
    public int MetaIndex => Guard.MetaIndexAt(_version);

    /// <summary>Size of the buffer in bytes.</summary>
    public long Size => Guard.SizeAt(_version);

    /// <summary>True for references from <see cref="BufferPool.GetRef"/> and read-only receives.</summary>
    public bool IsReadOnly => Guard.IsReadOnlyAt(_version);

    /// <summary>True for a buffer in CUDA device memory (a CUDA buffer received from a channel).</summary>
    public bool IsCuda => Guard.CudaMemoryAt(_version) is not null;

    /// <summary>The CUDA device pointer of the first byte (see <see cref="BufferGuard.CudaPointer"/>); throws for a
    /// CPU buffer.</summary>
    public ulong CudaPointer => Guard.CudaMemoryAt(_version) is { } m ? m.Pointer : throw new XmemException(XmemStatus.InvalidArgument, $"slot {MetaIndex} is a CPU buffer: it has no CUDA device pointer. Use its CPU memory, or copy it to a CUDA device first.");

    /// <summary>Address of the first byte in this process.</summary>
    public nint CpuPointer => Guard.CpuAt(_version, writable: false, out _);

    /// <summary>The bytes, writable. Throws <see cref="BufferReadOnlyException"/> on a read-only reference.</summary>
    public unsafe Span<byte> Span
    {
        get
        {
            nint p = Guard.CpuAt(_version, writable: true, out long size);
            return new Span<byte>((void*)p, checked((int)size));
        }
    }

    /// <summary>The bytes, read-only.</summary>
    public unsafe ReadOnlySpan<byte> ReadOnlySpan
    {
        get
        {
            nint p = Guard.CpuAt(_version, writable: false, out long size);
            return new ReadOnlySpan<byte>((void*)p, checked((int)size));
        }
    }

    /// <summary>The bytes reinterpreted as <typeparamref name="T"/> (read-write references only).</summary>
    public Span<T> AsSpan<T>() where T : unmanaged => MemoryMarshal.Cast<byte, T>(Span);

    /// <summary>The bytes reinterpreted as read-only <typeparamref name="T"/>.</summary>
    public ReadOnlySpan<T> AsReadOnlySpan<T>() where T : unmanaged => MemoryMarshal.Cast<byte, T>(ReadOnlySpan);

    /// <summary>The buffer's description (see <see cref="BufferGuard.Description"/>); null when it has none.</summary>
    public BufferDescription? Description
    {
        get
        {
            BufferGuard g = Guard;
            int s = g.SnapshotAt(_version, out _, out long size);
            return g.Pool.ReadDescription(s, size);
        }
    }

    /// <summary>Describes the buffer for every process that holds it (read-write references only).</summary>
    /// <exception cref="BufferReadOnlyException">The reference is read-only.</exception>
    public void SetDescription(in BufferDescription description)
    {
        BufferGuard g = Guard;
        if (g.IsReadOnlyAt(_version))
        {
            ThrowHelper.ThrowReadOnly();
        }

        int s = g.SnapshotAt(_version, out uint gen, out long size);
        g.Pool.WriteDescription(s, gen, size, description);
    }

    /// <summary>The guard object behind the value, for the pool's and channels' own paths.</summary>
    internal BufferGuard Guard => _guard ?? ThrowDefault();

    /// <summary>The incarnation of <see cref="Guard"/> this value names.</summary>
    internal long Version => _version;

    /// <summary>Releases the reference exactly once; later calls (from this copy or any other) do nothing.</summary>
    public void Dispose() => _ = _guard?.DisposeAt(_version);

    /// <summary>Stops owning the reference without releasing it (see <see cref="BufferGuard.Forget"/>).</summary>
    /// <exception cref="BufferGuardInvalidException">It was already disposed, forgotten or sent.</exception>
    public void Forget()
    {
        if (!Guard.ForgetAt(_version))
        {
            ThrowHelper.ThrowGuardInvalid();
        }
    }

    /// <inheritdoc/>
    public bool Equals(BufferRef other) => ReferenceEquals(_guard, other._guard) && _version == other._version;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is BufferRef other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(_guard, _version);

    /// <summary>Whether two values name the same reference.</summary>
    public static bool operator ==(BufferRef left, BufferRef right) => left.Equals(right);

    /// <summary>Whether two values name different references.</summary>
    public static bool operator !=(BufferRef left, BufferRef right) => !left.Equals(right);

    private static BufferGuard ThrowDefault() =>
        throw new BufferGuardInvalidException("this BufferRef is the default value: it names no reference. Take one with AcquireCpuRef, GetRef, GetMutRef or ReceiveRef.");
}
