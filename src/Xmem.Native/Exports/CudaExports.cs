using Xmem.Core;
using System.Runtime.InteropServices;
using Xmem.Cuda;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>CUDA exports on guards (xmem.h, "CUDA"): device pointers, write ordering and copies across kinds of
/// memory (docs/cuda.md). Every one first checks that CUDA is usable in this process, so that without a driver or
/// device each of them fails with XMEM_E_CUDA_UNAVAILABLE and the reason, whatever the guard; with CUDA, asking a CPU
/// guard for CUDA state is XMEM_E_INVALID_ARGUMENT.</summary>
internal static unsafe class CudaExports
{
    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_cuda_ptr")]
    internal static int GuardCudaPtr(ulong guard, ulong* outPtr) => Export.OnGuard(guard, new CudaPtr(outPtr, mutable: false));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_cuda_ptr_mut")]
    internal static int GuardCudaPtrMut(ulong guard, ulong* outPtr) => Export.OnGuard(guard, new CudaPtr(outPtr, mutable: true));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_record_writes_done")]
    internal static int GuardRecordWritesDone(ulong guard, ulong stream) =>
        Export.OnGuardInPool(guard, new Ordering(stream, OrderingKind.Record));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_wait_writes_done")]
    internal static int GuardWaitWritesDone(ulong guard, ulong stream) =>
        Export.OnGuardInPool(guard, new Ordering(stream, OrderingKind.Wait));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_synchronize_writes")]
    internal static int GuardSynchronizeWrites(ulong guard) =>
        Export.OnGuardInPool(guard, new Ordering(0, OrderingKind.Synchronize));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_copy_to_cuda")]
    internal static int GuardCopyToCuda(ulong guard, int deviceId, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnGuard(guard, new Copy(deviceId, outGuard, outInfo));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_copy_to_cpu")]
    internal static int GuardCopyToCpu(ulong guard, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnGuard(guard, new Copy(-1, outGuard, outInfo));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_copy_to_device")]
    internal static int GuardCopyToDevice(ulong guard, int deviceId, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnGuard(guard, new Copy(deviceId, outGuard, outInfo));

    private readonly struct CudaPtr(ulong* outPtr, bool mutable) : IExportBody<GuardHandle>
    {
        public int Check() => Export.NotNull(outPtr, "out_ptr");

        public int Run(GuardHandle g)
        {
            int rc = RequireUsable(g.Guard);
            if (rc != 0)
            {
                return rc;
            }

            if (mutable && g.Ref.IsReadOnly)
            {
                return LastError.Set(XmemStatus.ReadOnly, $"the guard on slot {g.Ref.MetaIndex} is read-only (from get); take it with get_mut for write access.");
            }

            *outPtr = g.Ref.CudaPointer; // this handle's reference: a racing release is GuardInvalid, not another's pointer
            return 0;
        }
    }

    private enum OrderingKind
    {
        Record,
        Wait,
        Synchronize,
    }

    /// <summary>The driver calls need the pool attached (its CUDA table); the skeleton counts it in, so a concurrent
    /// close waits for them.</summary>
    private readonly struct Ordering(ulong stream, OrderingKind kind) : IExportBody<GuardHandle>
    {
        public int Check() => 0;

        public int Run(GuardHandle g)
        {
            int rc = RequireUsable(g.Guard);
            if (rc != 0)
            {
                return rc;
            }

            switch (kind)
            {
                case OrderingKind.Record:
                    g.Guard.RecordWritesDone((nint)stream);
                    break;
                case OrderingKind.Wait:
                    g.Guard.WaitWritesDone((nint)stream);
                    break;
                default:
                    g.Guard.SynchronizeWrites();
                    break;
            }

            return 0;
        }
    }

    /// <summary>A copy into a new buffer of the same pool: CPU for <paramref name="deviceId"/> -1, else CUDA device
    /// <paramref name="deviceId"/>. A CPU-to-CPU copy needs no CUDA; every other one does. The device is checked
    /// after the guard handle and before the pool is counted in (the order its errors have always been reported in),
    /// so the body counts the pool in itself.</summary>
    private readonly struct Copy(int deviceId, ulong* outGuard, BufferInfo* outInfo) : IExportBody<GuardHandle>
    {
        public int Check() => Export.NotNull(outGuard, "out_guard");

        public int Run(GuardHandle g)
        {
            if (deviceId < -1)
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"device {deviceId} is neither -1 (CPU memory) nor a CUDA device ordinal (0 or more).");
            }

            if (!g.Owner.TryEnter())
            {
                return GuardHandles.PoolClosed(g);
            }

            try
            {
                if (deviceId >= 0 || g.Guard.IsCuda)
                {
                    int rc = RequireUsable(g.Guard);
                    if (rc != 0)
                    {
                        return rc;
                    }
                }

                return GuardHandles.Register(g.Guard.CopyToDevice(deviceId), g.Owner, outGuard, outInfo);
            }
            finally
            {
                g.Owner.Exit();
            }
        }
    }

    /// <summary>0 when CUDA can be used in this process (or the guard is a CUDA buffer, which proves it); else sets
    /// XMEM_E_CUDA_UNAVAILABLE with the reason the driver gave.</summary>
    private static int RequireUsable(BufferGuard guard)
    {
        if (guard.IsCuda)
        {
            return 0;
        }

        string? why = CudaRuntime.Shared.Driver.UnavailableReason;
        return why is null
            ? 0
            : LastError.Set(XmemStatus.CudaUnavailable, $"CUDA is unavailable: {why}. (The buffer in slot {guard.MetaIndex} is in CPU memory; CPU buffers work as usual.)");
    }
}
