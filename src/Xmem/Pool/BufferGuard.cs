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
    private const int StateValid = 0, StateDone = 1;

    private readonly BufferPool _pool;
    private readonly DataMapping? _map; // null for a CUDA buffer: it has no CPU mapping
    private readonly uint _gen;
    private int _state;
    private GuardMemoryManager? _memory;

    internal BufferGuard(BufferPool pool, int metaIndex, uint gen, DataMapping? map, long size, bool readOnly)
    {
        _pool = pool;
        MetaIndex = metaIndex;
        _gen = gen;
        _map = map;
        Size = size;
        IsReadOnly = readOnly;
    }

    /// <summary>The slot's index, to hand to other processes.</summary>
    public int MetaIndex { get; }

    /// <summary>Size of the buffer in bytes.</summary>
    public long Size { get; }

    /// <summary>True while the guard owns its reference.</summary>
    public bool IsValid => Volatile.Read(ref _state) == StateValid;

    /// <summary>True for guards from <see cref="BufferPool.Get"/>.</summary>
    public bool IsReadOnly { get; }

    /// <summary>The slot generation this guard refers to.</summary>
    internal uint Generation => _gen;

    /// <summary>The pool this guard belongs to.</summary>
    internal BufferPool Pool => _pool;

    /// <summary>Address of the first byte in this process.</summary>
    public nint CpuPointer
    {
        get
        {
            ThrowIfInvalid();
            ThrowIfCuda();
            return _map!.Address;
        }
    }

    /// <summary>The bytes, writable. Throws <see cref="BufferReadOnlyException"/> on a read-only guard.</summary>
    public Span<byte> Span
    {
        get
        {
            ThrowIfInvalid();
            ThrowIfCuda();
            if (IsReadOnly)
            {
                ThrowHelper.ThrowReadOnly();
            }

            return new Span<byte>((void*)_map!.Address, checked((int)Size));
        }
    }

    /// <summary>The bytes, read-only.</summary>
    public ReadOnlySpan<byte> ReadOnlySpan
    {
        get
        {
            ThrowIfInvalid();
            ThrowIfCuda();
            return new ReadOnlySpan<byte>((void*)_map!.Address, checked((int)Size));
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
    [SuppressMessage("Usage", "CA1816:Dispose methods should call SuppressFinalize", Justification = "Forget ends the guard as Dispose does (the reference is handed on, not released): the finalizer must not release it again.")]
    public void Forget()
    {
        if (Interlocked.Exchange(ref _state, StateDone) != StateValid)
        {
            ThrowHelper.ThrowGuardInvalid();
        }

        GC.SuppressFinalize(this);
        RecordWritesOnRelease();
        ReleaseCudaLease();
        _pool.ReleaseGuardReference(MetaIndex, _gen, forget: true);
        ReleaseLeases();
    }

    /// <summary>Releases the reference exactly once; later calls do nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _state, StateDone) != StateValid)
        {
            return;
        }

        GC.SuppressFinalize(this);
        RecordWritesOnRelease();
        ReleaseCudaLease();
        _pool.ReleaseGuardReference(MetaIndex, _gen, forget: false);
        ReleaseLeases();
    }

    /// <summary>Gives up ownership for a transfer that already moved the reference elsewhere (a channel send):
    /// no count or holding changes here.</summary>
    [SuppressMessage("Usage", "CA1816:Dispose methods should call SuppressFinalize", Justification = "TryDetach ends the guard as Dispose does (the reference moved to the channel): the finalizer must not release it again.")]
    internal bool TryDetach()
    {
        if (Interlocked.Exchange(ref _state, StateDone) != StateValid)
        {
            return false;
        }

        GC.SuppressFinalize(this);
        RecordWritesOnRelease();
        ReleaseCudaLease();
        ReleaseLeases();
        return true;
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
        if (Interlocked.Exchange(ref _state, StateDone) == StateValid)
        {
            try
            {
                ReleaseCudaLease();
                _pool.ReleaseGuardReference(MetaIndex, _gen, forget: false);
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
        if (Volatile.Read(ref _state) != StateValid)
        {
            ThrowHelper.ThrowGuardInvalid();
        }
    }

    private sealed class GuardMemoryManager(BufferGuard guard) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => guard.Span;

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            guard.ThrowIfInvalid();
            guard.ThrowIfCuda();
            return new MemoryHandle((byte*)guard._map!.Address + elementIndex);
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
