using System.Runtime.InteropServices;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Acquiring buffers (xmem.h, "acquire"): a new guard on a free slot, CPU or CUDA, at once or waiting for a
/// slot to be released; and preallocating slots' memory ahead of use.</summary>
internal static unsafe class AcquireExports
{
    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_acquire_cpu")]
    internal static int PoolAcquireCpu(ulong pool, long size, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnPool(pool, new AcquireCpu(size, outGuard, outInfo));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_acquire_cpu_wait")]
    internal static int PoolAcquireCpuWait(ulong pool, long size, long timeoutNs, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnPoolBlocking(pool, new AcquireCpuWait(size, timeoutNs, outGuard, outInfo));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_acquire_cuda")]
    internal static int PoolAcquireCuda(ulong pool, long size, int deviceId, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnPool(pool, new AcquireCuda(size, deviceId, outGuard, outInfo));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_preallocate_cpu")]
    internal static int PoolPreallocateCpu(ulong pool, long size, int count, int* outIndexes) =>
        Export.OnPool(pool, new Preallocate(size, count, cuda: false, 0, outIndexes));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_preallocate_cuda")]
    internal static int PoolPreallocateCuda(ulong pool, long size, int count, int deviceId, int* outIndexes) =>
        Export.OnPool(pool, new Preallocate(size, count, cuda: true, deviceId, outIndexes));

    private readonly struct AcquireCpu(long size, ulong* outGuard, BufferInfo* outInfo) : IExportBody<PoolHandle>
    {
        public int Check() => Export.NotNull(outGuard, "out_guard");

        public int Run(PoolHandle p) => GuardHandles.Register(p.Pool.AcquireCpuRef(size), p, outGuard, outInfo);
    }

    private readonly struct AcquireCpuWait(long size, long timeoutNs, ulong* outGuard, BufferInfo* outInfo) : IExportBody<PoolHandle>
    {
        public int Check()
        {
            int rc = Export.NotNull(outGuard, "out_guard");
            return rc != 0 || timeoutNs >= -1
                ? rc
                : LastError.Set(XmemStatus.InvalidArgument, $"timeout_ns is {timeoutNs}; it must be >= 0, or -1 to wait without limit.");
        }

        public int Run(PoolHandle p)
        {
            // 100 ns ticks, rounded up so that a tiny timeout still waits rather than polling once.
            TimeSpan timeout = timeoutNs < 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks((timeoutNs + 99) / 100);
            if (!p.Pool.TryAcquireCpuRef(size, timeout, out BufferRef guard))
            {
                return LastError.Set(XmemStatus.Timeout, $"pool '{p.Pool.Name}': no slot was released within {timeoutNs / 1e9:0.###} s (all {p.Pool.Capacity} are live). Release buffers sooner, wait longer, or create the pool with a larger capacity.");
            }

            return GuardHandles.Register(guard, p, outGuard, outInfo);
        }
    }

    private readonly struct AcquireCuda(long size, int deviceId, ulong* outGuard, BufferInfo* outInfo) : IExportBody<PoolHandle>
    {
        public int Check() => Export.NotNull(outGuard, "out_guard");

        public int Run(PoolHandle p) => GuardHandles.Register(p.Pool.AcquireCuda(size, deviceId), p, outGuard, outInfo);
    }

    /// <summary>CPU memory, or CUDA memory on device <paramref name="deviceId"/>.</summary>
    private readonly struct Preallocate(long size, int count, bool cuda, int deviceId, int* outIndexes) : IExportBody<PoolHandle>
    {
        public int Check() => outIndexes is null && count != 0 ? LastError.NullArgument("out_indexes") : 0;

        public int Run(PoolHandle p)
        {
            int[] indexes = cuda ? p.Pool.PreallocateCuda(size, count, deviceId) : p.Pool.PreallocateCpu(size, count);
            indexes.AsSpan().CopyTo(new Span<int>(outIndexes, indexes.Length));
            return 0;
        }
    }
}
