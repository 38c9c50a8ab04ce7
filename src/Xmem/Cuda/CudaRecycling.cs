using Xmem.Layout;

namespace Xmem.Cuda;

/// <summary>
/// Which free slot a CUDA acquire takes, and how much it allocates. Only the process that allocated a CUDA
/// allocation can free it, and IPC exposes a whole allocation, so:
/// <list type="bullet">
/// <item>allocations are rounded up to 2 MiB (the driver's large-page granularity): a handle exposes nothing but the
/// buffer, and a kept allocation fits later, slightly larger requests;</item>
/// <item>a free slot whose kept allocation is this process's own, on the same device and large enough, is reused
/// (the smallest such); then a slot with no memory; then one whose memory this process can give back (a CPU
/// segment, or its own CUDA allocation that does not fit); and only as a last resort a slot whose CUDA memory
/// another process exported — that process frees the orphaned allocation the next time it acquires, trims or
/// detaches (a dead exporter's memory went with its context).</item>
/// </list>
/// </summary>
internal static class CudaRecycling
{
    /// <summary>Allocation granularity: 2 MiB.</summary>
    internal const long Granularity = 2L << 20;

    /// <summary>The ranks, best first.</summary>
    internal enum Rank
    {
        /// <summary>Keeps its allocation (own, same device, large enough).</summary>
        Reuse = 0,
        /// <summary>Has no memory.</summary>
        Empty = 1,
        /// <summary>Has memory this process can give back.</summary>
        Replace = 2,
        /// <summary>Has CUDA memory another process exported (or one this process cannot tell).</summary>
        TakeOver = 3,
        /// <summary>Not a candidate.</summary>
        None = 4,
    }

    /// <summary>Bytes allocated for a buffer of <paramref name="size"/> bytes.</summary>
    internal static long AllocationSize(long size) => LayoutConstants.AlignUp(size, Granularity);

    /// <summary>Ranks a free slot for a CUDA acquire of <paramref name="size"/> bytes on <paramref name="device"/>.
    /// <paramref name="ownAllocSize"/> is the size of this process's own allocation kept in the slot for its current
    /// memory generation, or 0 when it keeps none.</summary>
    internal static Rank Classify(ushort kind, int slotDevice, long dataCapacity, long ownAllocSize, long size, int device)
    {
        if (LayoutConstants.IsCuda(kind))
        {
            if (ownAllocSize == 0)
            {
                return Rank.TakeOver;
            }

            return slotDevice == device && ownAllocSize >= size ? Rank.Reuse : Rank.Replace;
        }

        return kind == LayoutConstants.KindNone && dataCapacity == 0 ? Rank.Empty : Rank.Replace;
    }

    /// <summary>True when a candidate of rank <paramref name="r"/> keeping <paramref name="alloc"/> bytes beats the
    /// best so far: a lower rank, or among reusable slots a smaller allocation (least waste).</summary>
    internal static bool Better(Rank r, long alloc, Rank best, long bestAlloc) =>
        r < best || (r == Rank.Reuse && best == Rank.Reuse && alloc < bestAlloc);
}
