using Xmem.Core;
using Xmem.Cuda;
using Xmem.Errors;
using Xmem.Interop;
using Xmem.Pool;

namespace Xmem;

// CUDA members of the guard. A CUDA guard has no CPU mapping: CpuPointer, Span and Memory do not apply to it.
public unsafe partial class BufferGuard
{
    private CudaMemory? _cudaMemory;

    /// <summary>A guard on a CUDA buffer: no CPU mapping. <paramref name="memory"/> comes with a lease
    /// (<see cref="CudaMemory.TryLease"/>) that the guard owns and gives back when it ends, before its reference: an
    /// import is then closed before the exporter can see the slot free (docs/cuda.md, "Who frees what").</summary>
    internal BufferGuard(BufferPool pool, int metaIndex, uint gen, CudaMemory memory, long size, bool readOnly)
        : this(pool, metaIndex, gen, (DataMapping?)null, size, readOnly)
    {
        _cudaMemory = memory;
    }

    /// <summary>True for a buffer in CUDA device memory.</summary>
    public bool IsCuda => _cudaMemory is not null;

    /// <summary>The CUDA device ordinal of the buffer; -1 for a CPU buffer.</summary>
    public int DeviceId => _cudaMemory?.Device ?? -1;

    /// <summary>The device pointer (<c>CUdeviceptr</c>) of the first byte, valid in this process's primary context of
    /// <see cref="DeviceId"/> while the guard is. Read-only guards give it too: writing through it is the caller's
    /// breach of contract. Throws for a CPU buffer.</summary>
    public ulong CudaPointer
    {
        get
        {
            ThrowIfInvalid();
            return RequireCuda().Pointer;
        }
    }

    /// <summary>Records the slot's interprocess event on <paramref name="stream"/> (0: the legacy default stream)
    /// after the writes queued there so far; readers' <see cref="BufferPool.Get"/> (or <see cref="WaitWritesDone"/>)
    /// wait for it. Call it when your writes run on another stream than the legacy default one.</summary>
    public void RecordWritesDone(nint stream = 0)
    {
        ThrowIfInvalid();
        CudaMemory m = RequireCuda();
        if (IsReadOnly)
        {
            ThrowHelper.ThrowReadOnly();
        }

        m.RecordWrites(stream);
    }

    /// <summary>Makes later work on <paramref name="stream"/> wait (on the device, not the host) for the writes last
    /// recorded on the slot's event.</summary>
    public void WaitWritesDone(nint stream = 0)
    {
        ThrowIfInvalid();
        CudaMemory m = RequireCuda();
        m.WaitWrites(stream);
    }

    /// <summary>Blocks the calling thread until the writes last recorded on the slot's event completed.</summary>
    public void SynchronizeWrites()
    {
        ThrowIfInvalid();
        CudaMemory m = RequireCuda();
        m.SynchronizeWrites();
    }

    /// <summary>Copies the buffer into a new CUDA buffer of the same pool on <paramref name="deviceId"/> and returns
    /// its read-write guard. The copy waits for the source's recorded writes and the new buffer's event is recorded
    /// after the copy, so readers of the new buffer see it complete.</summary>
    public BufferGuard CopyToCuda(int deviceId)
    {
        ThrowIfInvalid();
        BufferGuard dst = Pool.AcquireCuda(Size, deviceId);
        try
        {
            ICudaDriver d = Pool.CudaDriver;
            CudaMemory to = dst._cudaMemory!;
            if (_cudaMemory is { } from)
            {
                if (from.Device == deviceId)
                {
                    from.WaitWrites(LibCuda.NullStream);
                    d.CopyDeviceToDevice(deviceId, to.Pointer, from.Pointer, Size);
                }
                else
                {
                    from.SynchronizeWrites();
                    d.CopyPeer(deviceId, to.Pointer, from.Device, from.Pointer, Size);
                }
            }
            else
            {
                d.CopyHostToDevice(deviceId, to.Pointer, CpuMapping().Address, Size);
            }

            d.RecordEvent(deviceId, to.Event, LibCuda.NullStream);
            return dst;
        }
        catch
        {
            dst.Dispose();
            throw;
        }
    }

    /// <summary>Copies the buffer into a new CPU buffer of the same pool and returns its read-write guard; the bytes
    /// are in place on return.</summary>
    public BufferGuard CopyToCpu()
    {
        ThrowIfInvalid();
        BufferGuard dst = Pool.AcquireCpu(Size);
        try
        {
            if (_cudaMemory is { } from)
            {
                ICudaDriver d = Pool.CudaDriver;
                from.WaitWrites(LibCuda.NullStream);
                d.CopyDeviceToHost(from.Device, dst.CpuPointer, from.Pointer, Size);
            }
            else
            {
                Buffer.MemoryCopy((void*)CpuMapping().Address, (void*)dst.CpuPointer, Size, Size);
            }

            return dst;
        }
        catch
        {
            dst.Dispose();
            throw;
        }
    }

    /// <summary>Copies the buffer to <paramref name="deviceId"/>: -1 for CPU memory (<see cref="CopyToCpu"/>), a
    /// CUDA device ordinal otherwise (<see cref="CopyToCuda"/>).</summary>
    public BufferGuard CopyToDevice(int deviceId) => deviceId == -1 ? CopyToCpu() : CopyToCuda(deviceId);

    /// <summary>Core hook, called by Dispose/Forget/TryDetach before the reference goes: a read-write CUDA guard
    /// records the slot's event on the legacy default stream, so that readers wait for the writes queued there.
    /// Never throws (a failure leaves ordering to the reader's explicit synchronization).</summary>
    internal void RecordWritesOnRelease()
    {
        // The guard's lease keeps the event alive (even after the pool closed); IsFreed is a second guard rail.
        if (_cudaMemory is null || IsReadOnly || _cudaMemory.IsFreed)
        {
            return;
        }

        try
        {
            _cudaMemory.RecordWrites(LibCuda.NullStream);
        }
        catch (XmemException)
        {
        }
    }

    /// <summary>Gives back the guard's lease on its device memory (once: the callers run once per guard).</summary>
    private void ReleaseCudaLease() => _cudaMemory?.Unlease();

    private CudaMemory RequireCuda()
    {
        CudaMemory? m = Volatile.Read(ref _cudaMemory); // once: a pooled guard that ends meanwhile lets go of it
        if (m is null)
        {
            ThrowIfInvalid(); // ended (and recycled) since the caller's check: an invalid guard, not a CPU buffer
            throw new XmemException(XmemStatus.InvalidArgument, $"slot {MetaIndex} is a CPU buffer: it has no CUDA device pointer. Use its CPU memory, or copy it to a CUDA device first.");
        }

        return m;
    }
}
