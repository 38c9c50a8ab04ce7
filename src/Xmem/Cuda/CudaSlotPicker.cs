using Xmem.Core;
using Xmem.Layout;

namespace Xmem.Cuda;

/// <summary>A CUDA acquire's ranking of hinted free slots (<see cref="CudaRecycling"/>): the best among the first 64
/// candidates, stopping early at an exact fit.</summary>
internal readonly unsafe struct CudaSlotPicker(FreeHints hints, SlotRecord* slots, CudaSlotTable table, long size, int device) : ISlotPicker
{
    public int Pick()
    {
        int best = -1, looked = 0;
        var bestRank = CudaRecycling.Rank.None;
        long bestAlloc = long.MaxValue, exact = CudaRecycling.AllocationSize(size);
        foreach (int s in hints.Hinted())
        {
            SlotRecord* r = &slots[s];
            ushort kind = r->Kind;
            CudaMemory? own = table.OwnExport(s);
            long ownAlloc = own is not null && LayoutConstants.IsCuda(kind) && own.MemGen == r->MemGen ? own.AllocSize : 0;
            CudaRecycling.Rank rank = CudaRecycling.Classify(kind, r->DeviceId, Volatile.Read(ref r->DataCapacity), ownAlloc, size, device);
            if (CudaRecycling.Better(rank, ownAlloc, bestRank, bestAlloc))
            {
                best = s;
                bestRank = rank;
                bestAlloc = ownAlloc;
                if (rank == CudaRecycling.Rank.Reuse && ownAlloc == exact)
                {
                    return s;
                }
            }

            if (++looked >= 64)
            {
                return best;
            }
        }

        return best;
    }
}
