using System.Runtime.InteropServices;
using Xmem.Native.Handles;

namespace Xmem.Native.Exports;

/// <summary>Operations on a slot by its meta index (xmem.h, "get / counts"): guards on a live slot, the in-flight
/// reference count, and trimming free slots' memory. A bad index is the core's error (XMEM_E_INDEX_OUT_OF_RANGE,
/// carried by its exception): nothing is checked twice here.</summary>
internal static unsafe class SlotExports
{
    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_get")]
    internal static int PoolGet(ulong pool, int metaIndex, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnPool(pool, new Get(metaIndex, outGuard, outInfo, writable: false));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_get_mut")]
    internal static int PoolGetMut(ulong pool, int metaIndex, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnPool(pool, new Get(metaIndex, outGuard, outInfo, writable: true));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_set_ref_count")]
    internal static int PoolSetRefCount(ulong pool, int metaIndex, int count) =>
        Export.OnPool(pool, new SetRefCount(metaIndex, count));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_add_ref")]
    internal static int PoolAddRef(ulong pool, int metaIndex, int* outCount) =>
        Export.OnPool(pool, new CountOp(metaIndex, outCount, CountKind.AddRef));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_release")]
    internal static int PoolRelease(ulong pool, int metaIndex, int* outCount) =>
        Export.OnPool(pool, new CountOp(metaIndex, outCount, CountKind.Release));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_ref_count")]
    internal static int PoolRefCount(ulong pool, int metaIndex, int* outCount) =>
        Export.OnPool(pool, new CountOp(metaIndex, outCount, CountKind.Read));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_trim")]
    internal static int PoolTrim(ulong pool, long* outBytes) => Export.OnPool(pool, new Trim(outBytes));

    private readonly struct Get(int metaIndex, ulong* outGuard, BufferInfo* outInfo, bool writable) : IExportBody<PoolHandle>
    {
        public int Check() => Export.NotNull(outGuard, "out_guard");

        public int Run(PoolHandle p) =>
            GuardHandles.Register(writable ? p.Pool.GetMutRef(metaIndex) : p.Pool.GetRef(metaIndex), p, outGuard, outInfo);
    }

    private readonly struct SetRefCount(int metaIndex, int count) : IExportBody<PoolHandle>
    {
        public int Check() => 0;

        public int Run(PoolHandle p)
        {
            p.Pool.SetRefCount(metaIndex, count);
            return 0;
        }
    }

    private enum CountKind
    {
        AddRef,
        Release,
        Read,
    }

    private readonly struct CountOp(int metaIndex, int* outCount, CountKind kind) : IExportBody<PoolHandle>
    {
        public int Check() => 0;

        public int Run(PoolHandle p)
        {
            int n = kind switch
            {
                CountKind.AddRef => p.Pool.AddRef(metaIndex),
                CountKind.Release => p.Pool.Release(metaIndex),
                _ => p.Pool.RefCount(metaIndex),
            };
            if (outCount is not null)
            {
                *outCount = n;
            }

            return 0;
        }
    }

    private readonly struct Trim(long* outBytes) : IExportBody<PoolHandle>
    {
        public int Check() => 0;

        public int Run(PoolHandle p)
        {
            long freed = p.Pool.Trim();
            if (outBytes is not null)
            {
                *outBytes = freed;
            }

            return 0;
        }
    }
}
