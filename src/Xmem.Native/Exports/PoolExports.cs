using Xmem.Core;
using System.Runtime.InteropServices;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Pool exports (xmem.h, "pools"). Each checks its pointers, enters the pool handle (so a concurrent close
/// cannot dispose the pool under it), calls the .NET API, and turns any exception into a status.</summary>
internal static unsafe class PoolExports
{
    // ------------------------------------------------------------------ lifetime

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_create")]
    internal static int PoolCreate(byte* name, int capacity, uint mode, int persistent, ulong* outPool)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (name is null)
        {
            return LastError.NullArgument("name");
        }

        if (outPool is null)
        {
            return LastError.NullArgument("out_pool");
        }

        try
        {
            string n = Marshal.PtrToStringUTF8((nint)name)!;
            if (mode > 0x1FF)
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"mode 0{Convert.ToString(mode, 8)} is not permission bits within 0777; use 0600 or 0660.");
            }

            BufferPool pool = BufferPool.Create(n, capacity, (int)mode, persistent != 0);
            return Register(pool, outPool);
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_open")]
    internal static int PoolOpen(byte* name, ulong* outPool)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (name is null)
        {
            return LastError.NullArgument("name");
        }

        if (outPool is null)
        {
            return LastError.NullArgument("out_pool");
        }

        try
        {
            BufferPool pool = BufferPool.Open(Marshal.PtrToStringUTF8((nint)name)!);
            return Register(pool, outPool);
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    private static int Register(BufferPool pool, ulong* outPool)
    {
        try
        {
            *outPool = HandleTables.Pools.Add(new PoolHandle(pool));
            return 0;
        }
        catch
        {
            pool.Dispose();
            throw;
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_close")]
    internal static int PoolClose(ulong pool)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        PoolHandle? p = HandleTables.Pools.Remove(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            p.BeginClose(); // blocked calls on this pool wake and fail; new ones (through its channels) are refused
        }
        catch (Exception)
        {
            // Waking is a courtesy: the waiters still end within one slice; the close itself goes on.
        }

        p.Exit(); // drops the table's count: disposes now, or when the last call in flight returns
        return 0;
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_remove")]
    internal static int PoolRemove(byte* name, int* outRemoved)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (name is null)
        {
            return LastError.NullArgument("name");
        }

        try
        {
            bool removed = BufferPool.Remove(Marshal.PtrToStringUTF8((nint)name)!);
            if (outRemoved is not null)
            {
                *outRemoved = removed ? 1 : 0;
            }

            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_exists")]
    internal static int PoolExists(byte* name, int* outExists)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (name is null)
        {
            return LastError.NullArgument("name");
        }

        if (outExists is null)
        {
            return LastError.NullArgument("out_exists");
        }

        try
        {
            *outExists = BufferPool.Exists(Marshal.PtrToStringUTF8((nint)name)!) ? 1 : 0;
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    // ------------------------------------------------------------------ properties

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_name")]
    internal static int PoolName(ulong pool, byte* buf, nuint bufSize, nuint* outLength)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            string name = p.Pool.Name;
            int n = System.Text.Encoding.UTF8.GetByteCount(name);
            if (outLength is not null)
            {
                *outLength = (nuint)n;
            }

            if (buf is null || bufSize < (nuint)n + 1)
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"the name buffer holds {bufSize} bytes; the name needs {n + 1} (with its NUL).");
            }

            System.Text.Encoding.UTF8.GetBytes(name, new Span<byte>(buf, n));
            buf[n] = 0;
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_capacity")]
    internal static int PoolCapacity(ulong pool, int* outCapacity)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outCapacity is null)
        {
            return LastError.NullArgument("out_capacity");
        }

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        *outCapacity = p.Pool.Capacity;
        p.Exit();
        return 0;
    }

    // ------------------------------------------------------------------ acquire

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_acquire_cpu")]
    internal static int PoolAcquireCpu(ulong pool, long size, ulong* outGuard, BufferInfo* outInfo)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outGuard is null)
        {
            return LastError.NullArgument("out_guard");
        }

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            return RegisterGuard(p.Pool.AcquireCpu(size), p, outGuard, outInfo);
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_acquire_cpu_wait")]
    internal static int PoolAcquireCpuWait(ulong pool, long size, long timeoutNs, ulong* outGuard, BufferInfo* outInfo)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outGuard is null)
        {
            return LastError.NullArgument("out_guard");
        }

        if (timeoutNs < -1)
        {
            return LastError.Set(XmemStatus.InvalidArgument, $"timeout_ns is {timeoutNs}; it must be >= 0, or -1 to wait without limit.");
        }

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            // 100 ns ticks, rounded up so that a tiny timeout still waits rather than polling once.
            TimeSpan timeout = timeoutNs < 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks((timeoutNs + 99) / 100);
            if (!p.Pool.TryAcquireCpu(size, timeout, out BufferGuard? guard))
            {
                return LastError.Set(XmemStatus.Timeout, $"pool '{p.Pool.Name}': no slot was released within {timeoutNs / 1e9:0.###} s (all {p.Pool.Capacity} are live). Release buffers sooner, wait longer, or create the pool with a larger capacity.");
            }

            return RegisterGuard(guard, p, outGuard, outInfo);
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_acquire_cuda")]
    internal static int PoolAcquireCuda(ulong pool, long size, int deviceId, ulong* outGuard, BufferInfo* outInfo)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outGuard is null)
        {
            return LastError.NullArgument("out_guard");
        }

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            return RegisterGuard(p.Pool.AcquireCuda(size, deviceId), p, outGuard, outInfo);
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_preallocate_cpu")]
    internal static int PoolPreallocateCpu(ulong pool, long size, int count, int* outIndexes)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outIndexes is null && count != 0)
        {
            return LastError.NullArgument("out_indexes");
        }

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            int[] indexes = p.Pool.PreallocateCpu(size, count);
            indexes.AsSpan().CopyTo(new Span<int>(outIndexes, indexes.Length));
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_preallocate_cuda")]
    internal static int PoolPreallocateCuda(ulong pool, long size, int count, int deviceId, int* outIndexes)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outIndexes is null && count != 0)
        {
            return LastError.NullArgument("out_indexes");
        }

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            int[] indexes = p.Pool.PreallocateCuda(size, count, deviceId);
            indexes.AsSpan().CopyTo(new Span<int>(outIndexes, indexes.Length));
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_set_cuda_get_waits")]
    internal static int PoolSetCudaGetWaits(ulong pool, int on)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        p.Pool.CudaGetWaitsForWrites = on != 0;
        p.Exit();
        return 0;
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_cuda_get_waits")]
    internal static int PoolCudaGetWaits(ulong pool, int* outOn)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outOn is null)
        {
            return LastError.NullArgument("out_on");
        }

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        *outOn = p.Pool.CudaGetWaitsForWrites ? 1 : 0;
        p.Exit();
        return 0;
    }

    // ------------------------------------------------------------------ get / counts

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_get")]
    internal static int PoolGet(ulong pool, int metaIndex, ulong* outGuard, BufferInfo* outInfo)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        return Get(pool, metaIndex, outGuard, outInfo, writable: false);
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_get_mut")]
    internal static int PoolGetMut(ulong pool, int metaIndex, ulong* outGuard, BufferInfo* outInfo)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        return Get(pool, metaIndex, outGuard, outInfo, writable: true);
    }

    private static int Get(ulong pool, int metaIndex, ulong* outGuard, BufferInfo* outInfo, bool writable)
    {
        if (outGuard is null)
        {
            return LastError.NullArgument("out_guard");
        }

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            if ((uint)metaIndex >= (uint)p.Pool.Capacity)
            {
                return IndexOutOfRange(p.Pool, metaIndex);
            }

            BufferGuard g = writable ? p.Pool.GetMut(metaIndex) : p.Pool.Get(metaIndex);
            return RegisterGuard(g, p, outGuard, outInfo);
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_set_ref_count")]
    internal static int PoolSetRefCount(ulong pool, int metaIndex, int count)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            if ((uint)metaIndex >= (uint)p.Pool.Capacity)
            {
                return IndexOutOfRange(p.Pool, metaIndex);
            }

            p.Pool.SetRefCount(metaIndex, count);
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_add_ref")]
    internal static int PoolAddRef(ulong pool, int metaIndex, int* outCount)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        return CountOp(pool, metaIndex, outCount, CountOpKind.AddRef);
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_release")]
    internal static int PoolRelease(ulong pool, int metaIndex, int* outCount)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        return CountOp(pool, metaIndex, outCount, CountOpKind.Release);
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_ref_count")]
    internal static int PoolRefCount(ulong pool, int metaIndex, int* outCount)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        return CountOp(pool, metaIndex, outCount, CountOpKind.Read);
    }

    private enum CountOpKind
    {
        AddRef,
        Release,
        Read,
    }

    private static int CountOp(ulong pool, int metaIndex, int* outCount, CountOpKind op)
    {
        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            if ((uint)metaIndex >= (uint)p.Pool.Capacity)
            {
                return IndexOutOfRange(p.Pool, metaIndex);
            }

            int n = op switch
            {
                CountOpKind.AddRef => p.Pool.AddRef(metaIndex),
                CountOpKind.Release => p.Pool.Release(metaIndex),
                _ => p.Pool.RefCount(metaIndex),
            };
            if (outCount is not null)
            {
                *outCount = n;
            }

            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_trim")]
    internal static int PoolTrim(ulong pool, long* outBytes)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        PoolHandle? p = Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
        {
            long freed = p.Pool.Trim();
            if (outBytes is not null)
            {
                *outBytes = freed;
            }

            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>The live pool behind <paramref name="pool"/>, counted in (the caller must call Exit), or null.</summary>
    internal static PoolHandle? Enter(ulong pool)
    {
        PoolHandle? p = HandleTables.Pools.Get(pool);
        return p is not null && p.TryEnter() ? p : null;
    }

    /// <summary>Puts a new guard in the table and fills the out-parameters; disposes the guard when that fails.</summary>
    internal static int RegisterGuard(BufferGuard guard, PoolHandle owner, ulong* outGuard, BufferInfo* outInfo)
    {
        try
        {
            BufferInfo.Fill(outInfo, guard);
            *outGuard = HandleTables.Guards.Add(new GuardHandle(guard, owner));
            return 0;
        }
        catch
        {
            guard.Dispose();
            throw;
        }
    }

    private static int IndexOutOfRange(BufferPool pool, int metaIndex) =>
        LastError.Set(XmemStatus.IndexOutOfRange, $"meta index {metaIndex} is outside pool '{pool.Name}''s slots 0..{pool.Capacity - 1}.");
}
