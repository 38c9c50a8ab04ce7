using Xmem.Core;
using Xmem.Cuda;
using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xmem.Errors;
using Xmem.Pool;

namespace Xmem;

/// <summary>
/// Owns one reference to a buffer in a <see cref="BufferPool"/>, attributed to this process (a process that dies
/// holding guards has their references given back). Disposing it releases the reference exactly once; a guard
/// collected without being disposed releases it too. <see cref="Forget"/> hands the reference off to no process
/// (for another process to release), after which the guard is invalid.
/// </summary>
[SuppressMessage("Design", "CA1063:Implement IDisposable Correctly", Justification = "Not sealed only for its own finalizable kind (Collectable, below); its constructors are internal, so nothing else derives from it, and Dispose is the whole disposal.")]
public unsafe partial class BufferGuard : IDisposable
{
    // _state is the guard's incarnation: an even version while it owns its reference, that version + 1 once it ended
    // (disposed, forgotten, sent). A plain guard has one incarnation (0, then 1). A pooled guard (see GuardCache) is
    // reused for another reference after it ended, at version + 2, so a BufferRef that still names an ended
    // incarnation never matches again (64 bits: never wraps). The fields below are written only while the state is
    // odd (ended, or not yet published: the constructor and Reuse) and published by the release store of the next
    // even state; readers through a BufferRef read the state, the fields, then the state again (a seqlock), so a
    // reuse racing with them is an invalid guard, never another buffer's bytes.
    private readonly BufferPool _pool;
    private readonly GuardCache? _cache; // non-null for a pooled guard: it goes back there when it ends
    private DataMapping? _map; // null for a CUDA buffer: it has no CPU mapping
    private uint _gen;
    private int _metaIndex;
    private long _size;
    private bool _readOnly;
    private long _state;
    private GuardMemoryManager? _memory;

    internal BufferGuard(BufferPool pool, int metaIndex, uint gen, DataMapping? map, long size, bool readOnly)
    {
        _pool = pool;
        _metaIndex = metaIndex;
        _gen = gen;
        _map = map;
        _size = size;
        _readOnly = readOnly;
    }

    /// <summary>A pooled guard, made ended (state 1) for <see cref="GuardCache.Rent"/> to fill and publish.</summary>
    internal BufferGuard(BufferPool pool, GuardCache cache)
    {
        _pool = pool;
        _cache = cache;
        _state = 1;
    }

    /// <summary>The slot's index, to hand to other processes.</summary>
    public int MetaIndex => _metaIndex;

    /// <summary>Size of the buffer in bytes.</summary>
    public long Size => _size;

    /// <summary>True while the guard owns its reference.</summary>
    public bool IsValid => (Volatile.Read(ref _state) & 1) == 0;

    /// <summary>True for guards from <see cref="BufferPool.Get"/>.</summary>
    public bool IsReadOnly => _readOnly;

    /// <summary>The slot generation this guard refers to.</summary>
    internal uint Generation => _gen;

    /// <summary>The pool this guard belongs to.</summary>
    internal BufferPool Pool => _pool;

    /// <summary>The incarnation a <see cref="BufferRef"/> made now names (odd: ended).</summary>
    internal long Version => Volatile.Read(ref _state);

    /// <summary>Address of the first byte in this process.</summary>
    public nint CpuPointer
    {
        get
        {
            return CpuMapping().Address;
        }
    }

    /// <summary>The bytes, writable. Throws <see cref="BufferReadOnlyException"/> on a read-only guard.</summary>
    public Span<byte> Span
    {
        get
        {
            DataMapping map = CpuMapping();
            if (IsReadOnly)
            {
                ThrowHelper.ThrowReadOnly();
            }

            return new Span<byte>((void*)map.Address, checked((int)Size));
        }
    }

    /// <summary>The bytes, read-only.</summary>
    public ReadOnlySpan<byte> ReadOnlySpan
    {
        get
        {
            return new ReadOnlySpan<byte>((void*)CpuMapping().Address, checked((int)Size));
        }
    }

    /// <summary>The bytes as <see cref="Memory{T}"/> (valid while the guard is).</summary>
    public Memory<byte> Memory
    {
        get
        {
            ThrowIfInvalid();
            ThrowIfCuda();
            if (IsReadOnly)
            {
                ThrowHelper.ThrowReadOnly();
            }

            return (_memory ??= new GuardMemoryManager(this)).Memory;
        }
    }

    /// <summary>The bytes reinterpreted as <typeparamref name="T"/> (read-write guards only).</summary>
    public Span<T> AsSpan<T>() where T : unmanaged => MemoryMarshal.Cast<byte, T>(Span);

    /// <summary>The bytes reinterpreted as read-only <typeparamref name="T"/>.</summary>
    public ReadOnlySpan<T> AsReadOnlySpan<T>() where T : unmanaged => MemoryMarshal.Cast<byte, T>(ReadOnlySpan);

    /// <summary>Stops owning the reference without releasing it: the count stays, now in flight (owned by no
    /// process) for another process to take over and release. The guard becomes invalid.</summary>
    public void Forget()
    {
        if (!ForgetAt(Version))
        {
            ThrowHelper.ThrowGuardInvalid();
        }
    }

    /// <summary>Releases the reference exactly once; later calls do nothing.</summary>
    [SuppressMessage("Usage", "CA1816:Dispose methods should call SuppressFinalize", Justification = "Every end of a guard (Dispose, Forget, a send) suppresses the finalizer of the one kind that has one, in TryEnd, once, by the caller that ended it.")]
    public void Dispose() => DisposeAt(Version);

    /// <summary>Ends incarnation <paramref name="version"/> by releasing its reference; false (doing nothing) when that
    /// incarnation had ended already.</summary>
    internal bool DisposeAt(long version)
    {
        if (!TryEnd(version))
        {
            return false;
        }

        RecordWritesOnRelease();
        ReleaseCudaLease();
        _pool.ReleaseGuardReference(_metaIndex, _gen, forget: false);
        ReleaseLeases();
        Recycle();
        return true;
    }

    /// <summary>Ends incarnation <paramref name="version"/> by handing its reference to no process (see
    /// <see cref="Forget"/>); false when it had ended already.</summary>
    internal bool ForgetAt(long version)
    {
        if (!TryEnd(version))
        {
            return false;
        }

        RecordWritesOnRelease();
        ReleaseCudaLease();
        _pool.ReleaseGuardReference(_metaIndex, _gen, forget: true);
        ReleaseLeases();
        Recycle();
        return true;
    }

    /// <summary>Gives up ownership for a transfer that already moved the reference elsewhere (a channel send):
    /// no count or holding changes here. False when incarnation <paramref name="version"/> had ended.</summary>
    internal bool TryDetachAt(long version)
    {
        if (!TryEnd(version))
        {
            return false;
        }

        RecordWritesOnRelease();
        ReleaseCudaLease();
        ReleaseLeases();
        Recycle();
        return true;
    }

    /// <summary>Whether incarnation <paramref name="version"/> still owns its reference.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool IsValidAt(long version) => (version & 1) == 0 && Volatile.Read(ref _state) == version;

    /// <summary>Throws <see cref="BufferGuardInvalidException"/> unless incarnation <paramref name="version"/> still
    /// owns its reference.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ThrowIfInvalidAt(long version)
    {
        if (!IsValidAt(version))
        {
            ThrowHelper.ThrowGuardInvalid();
        }
    }

    /// <summary>The slot index of incarnation <paramref name="version"/> (read between two checks of the state).</summary>
    internal int MetaIndexAt(long version)
    {
        ThrowIfInvalidAt(version);
        int m = Volatile.Read(ref _metaIndex);
        ThrowIfInvalidAt(version);
        return m;
    }

    /// <summary>The size of incarnation <paramref name="version"/>.</summary>
    internal long SizeAt(long version)
    {
        ThrowIfInvalidAt(version);
        long n = Volatile.Read(ref _size);
        ThrowIfInvalidAt(version);
        return n;
    }

    /// <summary>Whether incarnation <paramref name="version"/> is read-only.</summary>
    internal bool IsReadOnlyAt(long version)
    {
        ThrowIfInvalidAt(version);
        bool ro = Volatile.Read(ref _readOnly);
        ThrowIfInvalidAt(version);
        return ro;
    }

    /// <summary>Slot, generation and size of incarnation <paramref name="version"/>, read between two checks of the
    /// state (a seqlock: a reuse racing with the read throws instead of mixing two references' fields).</summary>
    internal int SnapshotAt(long version, out uint gen, out long size)
    {
        ThrowIfInvalidAt(version);
        int m = Volatile.Read(ref _metaIndex);
        gen = Volatile.Read(ref _gen);
        size = Volatile.Read(ref _size);
        ThrowIfInvalidAt(version);
        return m;
    }

    /// <summary>Slot, size, memory and mode of incarnation <paramref name="version"/>, read between two checks of the
    /// state: a release racing with the read throws <see cref="BufferGuardInvalidException"/>, where reading the
    /// fields one by one could find a mapping a recycled guard already let go of (null), or another reference's.</summary>
    internal BufferFacts FactsAt(long version)
    {
        ThrowIfInvalidAt(version);
        int m = Volatile.Read(ref _metaIndex);
        long size = Volatile.Read(ref _size);
        bool ro = Volatile.Read(ref _readOnly);
        DataMapping? map = Volatile.Read(ref _map);
        CudaMemory? cuda = Volatile.Read(ref _cudaMemory);
        ThrowIfInvalidAt(version);
        // Valid at both checks: the fields are this incarnation's (a CPU buffer has its mapping, a CUDA one its memory).
        if (cuda is not null)
        {
            return new BufferFacts(m, size, 0, cuda.Pointer, cuda.Device, ro);
        }

        if (map is null)
        {
            ThrowHelper.ThrowGuardInvalid(); // not reached: a valid guard has its mapping or its CUDA memory
        }

        return new BufferFacts(m, size, map.Address, 0, -1, ro);
    }

    /// <summary>The CUDA memory of incarnation <paramref name="version"/> (null for a CPU buffer).</summary>
    internal CudaMemory? CudaMemoryAt(long version)
    {
        ThrowIfInvalidAt(version);
        CudaMemory? m = Volatile.Read(ref _cudaMemory);
        ThrowIfInvalidAt(version);
        return m;
    }

    /// <summary>The first byte and size of incarnation <paramref name="version"/>'s CPU memory; throws for a CUDA
    /// buffer, and for a read-only one when <paramref name="writable"/>.</summary>
    internal nint CpuAt(long version, bool writable, out long size)
    {
        ThrowIfInvalidAt(version);
        DataMapping? map = Volatile.Read(ref _map);
        size = Volatile.Read(ref _size);
        bool ro = Volatile.Read(ref _readOnly);
        ThrowIfInvalidAt(version);
        if (map is null)
        {
            ThrowIfCuda();
            ThrowHelper.ThrowGuardInvalid(); // not reached: a valid guard without a mapping is a CUDA one
        }

        if (writable && ro)
        {
            ThrowHelper.ThrowReadOnly();
        }

        return map.Address;
    }

    /// <summary>Moves the state from <paramref name="version"/> (valid) to ended; true for the one caller that did.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    [SuppressMessage("Usage", "CA1816:Dispose methods should call SuppressFinalize", Justification = "The one place a guard ends (Dispose, Forget, a send): the finalizer of a Collectable guard must not release the reference again.")]
    private bool TryEnd(long version)
    {
        if ((version & 1) != 0 || Interlocked.CompareExchange(ref _state, version + 1, version) != version)
        {
            return false;
        }

        if (this is Collectable)
        {
            GC.SuppressFinalize(this);
        }

        return true;
    }

    /// <summary>A pooled guard that ended goes back to its cache; its fields let go of what they point at.</summary>
    private void Recycle()
    {
        if (_cache is null)
        {
            return;
        }

        _map = null;
        _cudaMemory = null;
        _memory = null;
        _cache.Return(this);
    }

    /// <summary>Fills an ended pooled guard for a new reference and publishes it: the next even version.</summary>
    internal void Reuse(int metaIndex, uint gen, DataMapping? map, CudaMemory? cudaMemory, long size, bool readOnly)
    {
        long ended = Volatile.Read(ref _state);
        _metaIndex = metaIndex;
        _gen = gen;
        _map = map;
        _cudaMemory = cudaMemory;
        _size = size;
        _readOnly = readOnly;
        Volatile.Write(ref _state, ended + 1); // release: a reader that sees the new version sees these fields
    }

    /// <summary>Whether the guards made from now on give their reference back when collected undisposed (true by
    /// default). The C ABI's library turns it off at load: there every guard is kept alive by its handle until
    /// xmem_guard_release (or the pool's close) releases it, so a finalizer could never run, and registering one costs
    /// more than the rest of an acquire.</summary>
    internal static bool ReleaseWhenCollected { get; set; } = true;

    /// <summary>A new guard on a CPU buffer (see the constructor), of the kind <see cref="ReleaseWhenCollected"/>
    /// says.</summary>
    internal static BufferGuard Make(BufferPool pool, int metaIndex, uint gen, DataMapping? map, long size, bool readOnly) =>
        ReleaseWhenCollected ? new Collectable(pool, metaIndex, gen, map, size, readOnly) : new BufferGuard(pool, metaIndex, gen, map, size, readOnly);

    /// <summary>A new guard on a CPU or CUDA buffer: from the pool's <see cref="GuardCache"/> when
    /// <paramref name="pooled"/> (for a <see cref="BufferRef"/>: no allocation once the cache is warm), else of the
    /// kind <see cref="ReleaseWhenCollected"/> says.</summary>
    internal static BufferGuard Make(BufferPool pool, bool pooled, int metaIndex, uint gen, DataMapping? map, CudaMemory? cudaMemory, long size, bool readOnly)
    {
        if (pooled)
        {
            return pool.Guards.Rent(metaIndex, gen, map, cudaMemory, size, readOnly);
        }

        return cudaMemory is null ? Make(pool, metaIndex, gen, map, size, readOnly) : Make(pool, metaIndex, gen, cudaMemory, size, readOnly);
    }

    /// <summary>A new guard on a CUDA buffer (see its constructor), of the kind <see cref="ReleaseWhenCollected"/>
    /// says.</summary>
    internal static BufferGuard Make(BufferPool pool, int metaIndex, uint gen, CudaMemory memory, long size, bool readOnly) =>
        ReleaseWhenCollected ? new Collectable(pool, metaIndex, gen, memory, size, readOnly) : new BufferGuard(pool, metaIndex, gen, memory, size, readOnly);

    /// <summary>A guard that gives its reference back when it is collected without having been disposed.</summary>
    private sealed class Collectable : BufferGuard
    {
        internal Collectable(BufferPool pool, int metaIndex, uint gen, DataMapping? map, long size, bool readOnly)
            : base(pool, metaIndex, gen, map, size, readOnly)
        {
        }

        internal Collectable(BufferPool pool, int metaIndex, uint gen, CudaMemory memory, long size, bool readOnly)
            : base(pool, metaIndex, gen, memory, size, readOnly)
        {
        }

        ~Collectable() => ReleaseCollected();
    }

    /// <summary>A guard never disposed gives its reference back when collected.</summary>
    private void ReleaseCollected()
    {
        long version = Volatile.Read(ref _state);
        if ((version & 1) == 0 && Interlocked.CompareExchange(ref _state, version + 1, version) == version)
        {
            try
            {
                ReleaseCudaLease();
                _pool.ReleaseGuardReference(_metaIndex, _gen, forget: false);
            }
            catch (Exception)
            {
                // A finalizer must not throw; the pool's recovery gives the reference back at detach.
            }

            ReleaseLeases();
        }
    }

    private void ReleaseLeases()
    {
        _map?.Region.DangerousRelease();
        _pool.ReleaseControlLease();
    }

    /// <summary>The mapping of this valid CPU guard. The mapping is read once, after the check: a pooled guard that ends
    /// meanwhile lets go of it (<see cref="Recycle"/>), which is an invalid guard here, never a null dereference.
    /// Throws for an ended guard and for a CUDA one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private DataMapping CpuMapping()
    {
        ThrowIfInvalid();
        ThrowIfCuda();
        DataMapping? map = Volatile.Read(ref _map);
        if (map is null)
        {
            ThrowHelper.ThrowGuardInvalid(); // ended (and recycled) since the check
        }

        return map;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ThrowIfCuda()
    {
        if (_cudaMemory is not null)
        {
            throw new XmemException(XmemStatus.InvalidArgument, $"buffer {MetaIndex} is in CUDA device memory: it has no CPU address. Use its CUDA device pointer, or copy it to CPU memory first.");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void ThrowIfInvalid()
    {
        if ((Volatile.Read(ref _state) & 1) != 0)
        {
            ThrowHelper.ThrowGuardInvalid();
        }
    }

    private sealed class GuardMemoryManager(BufferGuard guard) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => guard.Span;

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            return new MemoryHandle((byte*)guard.CpuMapping().Address + elementIndex);
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
