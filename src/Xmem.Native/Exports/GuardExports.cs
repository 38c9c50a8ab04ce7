using Xmem.Core;
using System.Runtime.InteropServices;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Guard and view-lease exports (xmem.h, "guards" and "view leases").</summary>
internal static unsafe class GuardExports
{
    [UnmanagedCallersOnly(EntryPoint = "xmem_guard_info")]
    internal static int GuardInfo(ulong guard, BufferInfo* outInfo)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outInfo is null)
        {
            return LastError.NullArgument("out_info");
        }

        GuardHandle? g = HandleTables.Guards.Get(guard);
        if (g is null)
        {
            return LastError.InvalidHandle("guard", guard);
        }

        try
        {
            BufferInfo.Fill(outInfo, g.Guard);
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_guard_cpu_ptr")]
    internal static int GuardCpuPtr(ulong guard, nint* outPtr)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        return CpuPtr(guard, outPtr, mutable: false);
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_guard_cpu_ptr_mut")]
    internal static int GuardCpuPtrMut(ulong guard, nint* outPtr)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        return CpuPtr(guard, outPtr, mutable: true);
    }

    private static int CpuPtr(ulong guard, nint* outPtr, bool mutable)
    {
        if (outPtr is null)
        {
            return LastError.NullArgument("out_ptr");
        }

        GuardHandle? g = HandleTables.Guards.Get(guard);
        if (g is null)
        {
            return LastError.InvalidHandle("guard", guard);
        }

        try
        {
            if (mutable && g.Guard.IsReadOnly)
            {
                return LastError.Set(XmemStatus.ReadOnly, $"the guard on slot {g.Guard.MetaIndex} is read-only (from get); take it with get_mut for write access.");
            }

            *outPtr = g.Guard.CpuPointer;
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_guard_release")]
    internal static int GuardRelease(ulong guard)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        GuardHandle? g = HandleTables.Guards.Remove(guard);
        if (g is null)
        {
            return LastError.InvalidHandle("guard", guard);
        }

        try
        {
            Release(g);
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    /// <summary>Releases the reference of a guard already removed from the table, ordered against a pool close.</summary>
    internal static void Release(GuardHandle g)
    {
        if (g.Owner.TryEnter())
        {
            try
            {
                g.Guard.Dispose();
            }
            finally
            {
                g.Owner.Exit();
            }
        }
        else
        {
            // The pool is being disposed (it takes this process's references back itself); let it finish, then
            // drop the guard's mapping leases, which touches no shared state.
            g.Owner.WaitDisposed();
            g.Guard.Dispose();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_guard_forget")]
    internal static int GuardForget(ulong guard)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        GuardHandle? g = HandleTables.Guards.Remove(guard);
        if (g is null)
        {
            return LastError.InvalidHandle("guard", guard);
        }

        try
        {
            if (!g.Owner.TryEnter())
            {
                g.Owner.WaitDisposed();
                g.Guard.Dispose();
                return LastError.Set(XmemStatus.Disposed, $"the pool was closed before forget, and closing released this guard's reference to slot {g.Guard.MetaIndex}; nothing is left to hand off. Forget guards before closing the pool.");
            }

            try
            {
                g.Guard.Forget();
            }
            finally
            {
                g.Owner.Exit();
            }

            return 0;
        }
        catch (Exception e)
        {
            int rc = LastError.Fail(e);
            try
            {
                g.Guard.Dispose();
            }
            catch (Exception)
            {
                // The forget's own error is the one to report; a reference not given back here is reclaimed at detach.
            }

            return rc;
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_guard_lease_view")]
    internal static int GuardLeaseView(ulong guard, ulong* outLease, nint* outPtr, long* outSize)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outLease is null)
        {
            return LastError.NullArgument("out_lease");
        }

        try
        {
            MappingLease lease = TakeLease(guard, out int rc);
            if (rc != 0)
            {
                return rc;
            }

            *outLease = RegisterLease(lease);
            if (outPtr is not null)
            {
                *outPtr = lease.Address;
            }

            if (outSize is not null)
            {
                *outSize = lease.Length;
            }

            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_lease_release")]
    internal static int LeaseRelease(ulong lease)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        MappingLease? l = HandleTables.Leases.Remove(lease);
        if (l is null)
        {
            return LastError.InvalidHandle("lease", lease);
        }

        _ = l.Release();
        return 0;
    }

    /// <summary>A new lease on the guard's mapping; <paramref name="rc"/> is nonzero (and the result null) on failure.</summary>
    internal static MappingLease TakeLease(ulong guard, out int rc)
    {
        GuardHandle? g = HandleTables.Guards.Get(guard);
        if (g is null)
        {
            rc = LastError.InvalidHandle("guard", guard);
            return null!;
        }

        try
        {
            if (g.Guard.IsCuda)
            {
                rc = LastError.Set(XmemStatus.InvalidArgument, $"the buffer in slot {g.Guard.MetaIndex} is CUDA device memory: it has no CPU mapping to view. Use its CUDA pointer (cuda_ptr, __cuda_array_interface__, DLPack), or copy_to_cpu().");
                return null!;
            }

            rc = 0;
            return g.Guard.LeaseMapping();
        }
        catch (ObjectDisposedException)
        {
            rc = LastError.Set(XmemStatus.Disposed, $"pool '{g.Guard.Pool.Name}' was closed, which unmapped slot {g.Guard.MetaIndex}'s memory for new views; views taken before the close still work. Take views before closing the pool.");
            return null!;
        }
    }

    /// <summary>Puts a lease in the table; drops it when that fails.</summary>
    internal static ulong RegisterLease(MappingLease lease)
    {
        try
        {
            return HandleTables.Leases.Add(lease);
        }
        catch
        {
            _ = lease.Release();
            throw;
        }
    }
}
