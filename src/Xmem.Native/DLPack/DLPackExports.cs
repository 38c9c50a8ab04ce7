using Xmem.Core;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xmem.Native.Exports;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.DLPack;

/// <summary>
/// DLPack export (xmem.h, "DLPack"). A managed tensor is one native block: the DLManagedTensor(Versioned), then
/// shape, then strides. Its manager context is the handle of a view lease of its own, so the memory stays mapped
/// until the consumer calls the deleter — whatever happens meanwhile to the guard or the pool.
/// </summary>
internal static unsafe class DLPackExports
{
    private const int MaxDims = 32;

    // PyCapsule_IsValid(PyObject*, const char*) and PyCapsule_GetPointer(PyObject*, const char*), given by the bindings.
    private static delegate* unmanaged<nint, byte*, int> s_capsuleIsValid;
    private static delegate* unmanaged<nint, byte*, nint> s_capsuleGetPointer;

    [UnmanagedCallersOnly(EntryPoint = "xmem_guard_export_dlpack")]
    internal static int GuardExportDLPack(ulong guard, DLPackRequest* request, nint* outManaged)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (request is null)
        {
            return LastError.NullArgument("request");
        }

        if (outManaged is null)
        {
            return LastError.NullArgument("out_managed");
        }

        try
        {
            DLPackRequest r = *request;
            int rc = Validate(in r, out long[] shape, out long[] strides);
            if (rc != 0)
            {
                return rc;
            }

            GuardHandle? g = HandleTables.Guards.Get(guard);
            if (g is null)
            {
                return LastError.InvalidHandle("guard", guard);
            }

            // The tensor's own hold on the memory: a view lease on the mapping for CPU buffers; for CUDA buffers a
            // reference of its own (a new guard on the slot), since device memory has no mapping to keep and a slot
            // let go may have its allocation freed or its IPC mapping closed.
            ulong ctx;
            nint data;
            int deviceType, deviceId;
            bool readOnly = (r.Flags & DLPackRequest.FlagReadOnly) != 0 || g.Guard.IsReadOnly;
            if (g.Guard.IsCuda)
            {
                rc = CheckExtent(in r, shape, strides, g.Guard.Size);
                if (rc != 0)
                {
                    return rc;
                }

                rc = TakeCudaReference(g, readOnly, out ctx, out BufferGuard own);
                if (rc != 0)
                {
                    return rc;
                }

                data = (nint)own.CudaPointer;
                deviceType = DLTensor.KDLCuda;
                deviceId = own.DeviceId;
            }
            else
            {
                MappingLease lease = GuardExports.TakeLease(guard, out rc);
                if (rc != 0)
                {
                    return rc;
                }

                rc = CheckExtent(in r, shape, strides, lease.Length);
                if (rc != 0)
                {
                    _ = lease.Release();
                    return rc;
                }

                ctx = GuardExports.RegisterLease(lease);
                data = lease.Address;
                deviceType = DLTensor.KDLCpu;
                deviceId = 0;
            }

            bool versioned = (r.Flags & DLPackRequest.FlagVersioned) != 0;
            int head = versioned ? sizeof(DLManagedTensorVersioned) : sizeof(DLManagedTensor);
            byte* block = (byte*)NativeMemory.AllocZeroed((nuint)(head + 16 * Math.Max(r.NDim, 1)));
            long* shapeOut = (long*)(block + head);
            long* stridesOut = shapeOut + r.NDim;
            for (int i = 0; i < r.NDim; i++)
            {
                shapeOut[i] = shape[i];
                stridesOut[i] = strides[i];
            }

            DLTensor* t;
            if (versioned)
            {
                var m = (DLManagedTensorVersioned*)block;
                m->Major = 1;
                m->Minor = 0;
                m->ManagerCtx = (nint)ctx;
                m->Deleter = (nint)(delegate* unmanaged<DLManagedTensorVersioned*, void>)&DeleteVersioned;
                m->Flags = readOnly ? DLManagedTensorVersioned.FlagReadOnly : 0;
                t = &m->Tensor;
            }
            else
            {
                var m = (DLManagedTensor*)block;
                m->ManagerCtx = (nint)ctx;
                m->Deleter = (nint)(delegate* unmanaged<DLManagedTensor*, void>)&DeleteUnversioned;
                t = &m->Tensor;
            }

            // The offset is folded into the data pointer: some consumers ignore byte_offset.
            t->Data = data + (nint)r.ByteOffset;
            t->DeviceType = deviceType;
            t->DeviceId = deviceId;
            t->NDim = r.NDim;
            t->DTypeCode = r.DTypeCode;
            t->DTypeBits = r.DTypeBits;
            t->DTypeLanes = r.DTypeLanes;
            t->Shape = shapeOut;
            t->Strides = stridesOut;
            t->ByteOffset = 0;
            *outManaged = (nint)block;
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
    }

    /// <summary>A new guard on <paramref name="g"/>'s slot (read-only or read-write like the export), registered
    /// as a guard handle for the tensor's manager context.</summary>
    private static int TakeCudaReference(GuardHandle g, bool readOnly, out ulong handle, out BufferGuard own)
    {
        handle = 0;
        own = null!;
        if (!g.Owner.TryEnter())
        {
            return LastError.Set(XmemStatus.Disposed, $"pool '{g.Guard.Pool.Name}' was closed; a CUDA buffer cannot be exported from a closed pool.");
        }

        try
        {
            g.Guard.ThrowIfInvalid();
            BufferGuard copy = readOnly ? g.Guard.Pool.Get(g.Guard.MetaIndex) : g.Guard.Pool.GetMut(g.Guard.MetaIndex);
            if (copy.Generation != g.Guard.Generation)
            {
                // Cannot happen while the guard holds its reference; refuse rather than export another buffer.
                copy.Dispose();
                return LastError.Set(XmemStatus.GuardInvalid, $"slot {g.Guard.MetaIndex} was recycled while being exported.");
            }

            try
            {
                handle = HandleTables.Guards.Add(new GuardHandle(copy, g.Owner));
            }
            catch
            {
                copy.Dispose();
                throw;
            }

            own = copy;
            return 0;
        }
        finally
        {
            g.Owner.Exit();
        }
    }

    private static int Validate(in DLPackRequest r, out long[] shape, out long[] strides)
    {
        shape = strides = [];
        if (r.NDim is < 0 or > MaxDims)
        {
            return LastError.Set(XmemStatus.InvalidArgument, $"ndim is {r.NDim}; DLPack exports take 0..{MaxDims} dimensions.");
        }

        if (r.DTypeBits == 0 || r.DTypeBits % 8 != 0 || r.DTypeLanes == 0)
        {
            return LastError.Set(XmemStatus.InvalidArgument, $"dtype bits {r.DTypeBits} x lanes {r.DTypeLanes} is not a whole number of bytes; use types of 8, 16, 32 or 64 bits.");
        }

        if (r.NDim > 0 && r.Shape is null)
        {
            return LastError.NullArgument("request->shape");
        }

        shape = new long[r.NDim];
        strides = new long[r.NDim];
        long compact = 1;
        for (int i = r.NDim - 1; i >= 0; i--)
        {
            shape[i] = r.Shape[i];
            if (shape[i] < 0)
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"shape[{i}] is {shape[i]}; extents must be >= 0.");
            }

            strides[i] = r.Strides is null ? compact : r.Strides[i];
            if (strides[i] < 0)
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"strides[{i}] is {strides[i]}; xmem exports non-negative strides only.");
            }

            compact = shape[i] == 0 ? compact : checked(compact * shape[i]);
        }

        return 0;
    }

    /// <summary>Refuses a tensor that reaches past the buffer: the safety boundary of every view.</summary>
    private static int CheckExtent(in DLPackRequest r, long[] shape, long[] strides, long size)
    {
        long elem = r.DTypeBits / 8 * r.DTypeLanes;
        try
        {
            long end = checked((long)r.ByteOffset);
            if (Array.IndexOf(shape, 0L) < 0)
            {
                long last = 0;
                for (int i = 0; i < shape.Length; i++)
                {
                    last = checked(last + (shape[i] - 1) * strides[i]);
                }

                end = checked(end + (last + 1) * elem);
            }

            if (end <= size)
            {
                return 0;
            }
        }
        catch (OverflowException)
        {
        }

        return LastError.Set(XmemStatus.InvalidArgument, $"the tensor (offset {r.ByteOffset}, shape [{string.Join(", ", shape)}], {elem}-byte elements) reaches past the end of the {size}-byte buffer; ask for a smaller shape.");
    }

    [UnmanagedCallersOnly]
    private static void DeleteVersioned(DLManagedTensorVersioned* m)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        Free((nint)m, m is null ? 0 : m->ManagerCtx);
    }

    [UnmanagedCallersOnly]
    private static void DeleteUnversioned(DLManagedTensor* m)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        Free((nint)m, m is null ? 0 : m->ManagerCtx);
    }

    private static void Free(nint block, nint managerCtx)
    {
        if (block == 0)
        {
            return;
        }

        try
        {
            if (HandleTables.Leases.Remove((ulong)managerCtx) is { } lease)
            {
                _ = lease.Release();
            }
            else if (HandleTables.Guards.Remove((ulong)managerCtx) is { } guard)
            {
                GuardExports.Release(guard); // a CUDA tensor's own reference
            }
        }
        catch (Exception)
        {
            // A deleter must not fail; a reference not given back here is reclaimed when this process detaches.
        }

        NativeMemory.Free((void*)block);
    }

    // ------------------------------------------------------------------ Python capsules

    private static readonly byte[] s_nameUnversioned = PinnedName("dltensor");
    private static readonly byte[] s_nameVersioned = PinnedName("dltensor_versioned");

    [UnmanagedCallersOnly(EntryPoint = "xmem_dlpack_capsule_name")]
    internal static byte* CapsuleName(int versioned)
    {
        using ForkGate.Scope fork = ForkGate.Enter();
        return AddressOf(versioned != 0 ? s_nameVersioned : s_nameUnversioned);
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_dlpack_init_python")]
    internal static int InitPython(nint isValid, nint getPointer)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (isValid == 0 || getPointer == 0)
        {
            return LastError.NullArgument(isValid == 0 ? "py_capsule_is_valid" : "py_capsule_get_pointer");
        }

        s_capsuleIsValid = (delegate* unmanaged<nint, byte*, int>)isValid;
        s_capsuleGetPointer = (delegate* unmanaged<nint, byte*, nint>)getPointer;
        return 0;
    }

    /// <summary>PyCapsule destructor: runs with the GIL held when a capsule dies. A consumer renames the capsules it
    /// takes ("used_dltensor…"), so a capsule that still has its first name was never consumed, and its tensor is
    /// freed here; otherwise the consumer owns it and calls the deleter itself.</summary>
    [UnmanagedCallersOnly(EntryPoint = "xmem_dlpack_capsule_destructor")]
    internal static void CapsuleDestructor(nint capsule)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        try
        {
            if (capsule == 0 || s_capsuleIsValid is null)
            {
                return;
            }

            if (s_capsuleIsValid(capsule, AddressOf(s_nameVersioned)) != 0)
            {
                var m = (DLManagedTensorVersioned*)s_capsuleGetPointer(capsule, AddressOf(s_nameVersioned));
                if (m is not null)
                {
                    Free((nint)m, m->ManagerCtx);
                }
            }
            else if (s_capsuleIsValid(capsule, AddressOf(s_nameUnversioned)) != 0)
            {
                var m = (DLManagedTensor*)s_capsuleGetPointer(capsule, AddressOf(s_nameUnversioned));
                if (m is not null)
                {
                    Free((nint)m, m->ManagerCtx);
                }
            }
        }
        catch (Exception)
        {
            // A destructor must not fail; at worst one mapping stays leased until the process exits.
        }
    }

    private static byte[] PinnedName(string s)
    {
        byte[] b = GC.AllocateArray<byte>(s.Length + 1, pinned: true);
        for (int i = 0; i < s.Length; i++)
        {
            b[i] = (byte)s[i];
        }

        return b;
    }

    // Safe: pinned-heap arrays held by static fields never move or die.
    private static byte* AddressOf(byte[] pinned) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
}
