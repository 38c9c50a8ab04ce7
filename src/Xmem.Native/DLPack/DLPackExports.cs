using Xmem.Core;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xmem.Native.Exports;
using Xmem.Native.Gate;
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

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_export_dlpack")]
    internal static int GuardExportDLPack(ulong guard, DLPackRequest* request, nint* outManaged) =>
        Export.OnGuard(guard, new ExportTensor(request, outManaged));

    /// <summary>The request is checked (<see cref="Check"/>) before the guard handle is looked up; the shape and
    /// strides it read are kept for <see cref="Run"/>.</summary>
    private struct ExportTensor(DLPackRequest* request, nint* outManaged) : IExportBody<GuardHandle>
    {
        private DLPackRequest _r;
        private long[] _shape = [];
        private long[] _strides = [];

        public int Check()
        {
            int rc = Export.NotNull(request, "request", outManaged, "out_managed");
            if (rc != 0)
            {
                return rc;
            }

            _r = *request;
            return Validate(in _r, out _shape, out _strides);
        }

        public readonly int Run(GuardHandle g)
        {
            // The tensor's own hold on the memory: a view lease on the mapping for CPU buffers; for CUDA buffers a
            // reference of its own (a new guard on the slot), since device memory has no mapping to keep and a slot
            // let go may have its allocation freed or its IPC mapping closed.
            ulong ctx;
            nint data;
            int deviceType, deviceId;
            int rc;
            bool readOnly = (_r.Flags & DLPackRequest.FlagReadOnly) != 0 || g.Guard.IsReadOnly;
            if (g.Guard.IsCuda)
            {
                rc = CheckExtent(in _r, _shape, _strides, g.Guard.Size);
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
                MappingLease lease = LeaseHandles.Take(g, out rc);
                if (rc != 0)
                {
                    return rc;
                }

                rc = CheckExtent(in _r, _shape, _strides, lease.Length);
                if (rc != 0)
                {
                    _ = lease.Release();
                    return rc;
                }

                ctx = LeaseHandles.Register(lease);
                data = lease.Address;
                deviceType = DLTensor.KDLCpu;
                deviceId = 0;
            }

            *outManaged = (nint)Build(in _r, _shape, _strides, ctx, data, deviceType, deviceId, readOnly);
            return 0;
        }
    }

    /// <summary>The managed tensor as one native block (header, shape, strides) whose manager context is
    /// <paramref name="ctx"/>.</summary>
    private static byte* Build(in DLPackRequest r, long[] shape, long[] strides, ulong ctx, nint data, int deviceType, int deviceId, bool readOnly)
    {
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
            m->Deleter = NativeGate.DlpackDeleter(1); // gated in C, then DeleteVersioned
            m->Flags = readOnly ? DLManagedTensorVersioned.FlagReadOnly : 0;
            t = &m->Tensor;
        }
        else
        {
            var m = (DLManagedTensor*)block;
            m->ManagerCtx = (nint)ctx;
            m->Deleter = NativeGate.DlpackDeleter(0); // gated in C, then DeleteUnversioned
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
        return block;
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
                handle = HandleTables.Guards.Add(new GuardHandle(new BufferRef(copy), g.Owner));
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

    // Called only by the gated deleters of src/Xmem.Native/Gate/dlpack_deleters.c (not exported).
    [UnmanagedCallersOnly(EntryPoint = "xmemi_dlpack_delete_versioned")]
    private static void DeleteVersioned(DLManagedTensorVersioned* m) => Free((nint)m, m is null ? 0 : m->ManagerCtx);

    [UnmanagedCallersOnly(EntryPoint = "xmemi_dlpack_delete_unversioned")]
    private static void DeleteUnversioned(DLManagedTensor* m) => Free((nint)m, m is null ? 0 : m->ManagerCtx);

    /// <summary>Frees a managed tensor's block and lets go of its hold on the memory (lease or own reference).</summary>
    internal static void Free(nint block, nint managerCtx)
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
            else if (HandleTables.Guards.TryRemove((ulong)managerCtx, out GuardHandle guard))
            {
                GuardHandles.Release(guard); // a CUDA tensor's own reference
            }
        }
        catch (Exception)
        {
            // A deleter must not fail; a reference not given back here is reclaimed when this process detaches.
        }

        NativeMemory.Free((void*)block);
    }
}
