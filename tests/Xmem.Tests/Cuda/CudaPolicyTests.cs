using Xmem.Cuda;
using Xmem.Layout;
using Rank = Xmem.Cuda.CudaRecycling.Rank;

namespace Xmem.Tests.Cuda;

/// <summary>The pure parts of the CUDA design: allocation granularity, the recycling ranks, the CUresult table.</summary>
public sealed class CudaPolicyTests
{
    private const long MiB = 1 << 20;

    [Theory]
    [InlineData(1, 2 * MiB)]
    [InlineData(2 * MiB, 2 * MiB)]
    [InlineData((2 * MiB) + 1, 4 * MiB)]
    [InlineData(64 * MiB, 64 * MiB)]
    public void Allocations_are_rounded_up_to_2MiB(long size, long expected) =>
        Assert.Equal(expected, CudaRecycling.AllocationSize(size));

    [Theory]
    // kind, slot device, data capacity, own allocation, size, device → rank (0 Reuse, 1 Empty, 2 Replace, 3 TakeOver)
    [InlineData(LayoutConstants.KindCuda, 0, 0, 2 * MiB, MiB, 0, 0)]
    [InlineData(LayoutConstants.KindCuda, 1, 0, 2 * MiB, MiB, 0, 2)]     // own, other device
    [InlineData(LayoutConstants.KindCuda, 0, 0, 2 * MiB, 3 * MiB, 0, 2)] // own, too small
    [InlineData(LayoutConstants.KindCuda, 0, 0, 0, MiB, 0, 3)]          // another process's memory
    [InlineData(LayoutConstants.KindNone, -1, 0, 0, MiB, 0, 1)]
    [InlineData(LayoutConstants.KindCpu, -1, 4096, 0, MiB, 0, 2)]
    [InlineData(LayoutConstants.KindNone, -1, 4096, 0, MiB, 0, 2)]       // kind cleared, segment left
    public void Free_slots_are_ranked_for_a_cuda_acquire(ushort kind, int slotDevice, long dataCapacity, long ownAlloc, long size, int device, int expected) =>
        Assert.Equal((Rank)expected, CudaRecycling.Classify(kind, slotDevice, dataCapacity, ownAlloc, size, device));

    [Fact]
    public void A_lower_rank_wins_and_among_reusable_slots_the_smaller_allocation()
    {
        Assert.True(CudaRecycling.Better(Rank.Reuse, 8 * MiB, Rank.Empty, 0));
        Assert.True(CudaRecycling.Better(Rank.Empty, 0, Rank.Replace, 0));
        Assert.True(CudaRecycling.Better(Rank.Replace, 0, Rank.TakeOver, 0));
        Assert.True(CudaRecycling.Better(Rank.TakeOver, 0, Rank.None, long.MaxValue));
        Assert.True(CudaRecycling.Better(Rank.Reuse, 2 * MiB, Rank.Reuse, 4 * MiB));
        Assert.False(CudaRecycling.Better(Rank.Reuse, 4 * MiB, Rank.Reuse, 4 * MiB));
        Assert.False(CudaRecycling.Better(Rank.Empty, 0, Rank.Empty, 0)); // equal ranks keep the lowest index
    }

    [Fact]
    public void Cuda_results_map_to_the_error_model()
    {
        var oom = Assert.IsType<XmemOutOfMemoryException>(CudaResult.ToException("cuMemAlloc", CudaResult.OutOfMemory, "CUDA_ERROR_OUT_OF_MEMORY: out of memory"));
        Assert.Equal(CudaResult.OutOfMemory, oom.NativeError);
        Assert.Contains("GPU is out of memory", oom.Message);
        foreach (int rc in new[] { CudaResult.NoDevice, CudaResult.StubLibrary, CudaResult.InsufficientDriver, CudaResult.NotInitialized })
        {
            Assert.Equal(XmemStatus.CudaUnavailable, Assert.IsType<CudaUnavailableException>(CudaResult.ToException("cuInit", rc, CudaResult.Name(rc))).Status);
        }

        var self = Assert.IsType<CudaException>(CudaResult.ToException("cuIpcOpenMemHandle", CudaResult.InvalidContext, "x"));
        Assert.Contains("process that exported it", self.Message);
        var other = Assert.IsType<CudaException>(CudaResult.ToException("cuMemcpyDtoD", CudaResult.IllegalAddress, "CUDA_ERROR_ILLEGAL_ADDRESS"));
        Assert.Equal(CudaResult.IllegalAddress, other.NativeError);
        Assert.Equal(XmemStatus.CudaError, other.Status);
        Assert.Equal("CUresult 12345", CudaResult.Name(12345));
    }

    [Fact]
    public void Slot_records_that_break_the_layout_are_named()
    {
        var ok = new CudaSlotInfo { Kind = LayoutConstants.KindCuda, Device = 0, Offset = 0, AllocSize = 2 * MiB, Size = 2 * MiB };
        Assert.Null(ok.Problem(1));
        Assert.Contains("kind 1", (ok with { Kind = LayoutConstants.KindCpu }).Problem(1));
        var vmm = ok with { Kind = LayoutConstants.KindCudaVmm, ExporterPid = 42, ExporterToken = 7 };
        Assert.Null(vmm.Problem(1));
        Assert.Contains("VMM export", (vmm with { ExporterPid = 0 }).Problem(1));
        Assert.Contains("VMM export", (vmm with { ExporterToken = 0 }).Problem(1));
        Assert.Contains("device 1", (ok with { Device = 1 }).Problem(1));
        Assert.NotNull((ok with { Size = (2 * MiB) + 1 }).Problem(1));
        Assert.NotNull((ok with { Offset = -1 }).Problem(1));
        Assert.NotNull((ok with { Offset = 1 }).Problem(1));
        Assert.NotNull((ok with { AllocSize = 0 }).Problem(1));
    }

    [Fact]
    public void Without_a_driver_cuda_is_unavailable_with_the_reason_and_the_pool_still_works()
    {
        string? reason = CudaDriver.Shared.UnavailableReason;
        if (reason is null)
        {
            return; // a machine with a working driver: covered by RealCudaTests
        }

        Assert.False(string.IsNullOrWhiteSpace(reason));
        string name = Shm.UniqueName("cuda-real-none");
        using (BufferPool p = BufferPool.Create(name, 2))
        {
            var e = Assert.Throws<CudaUnavailableException>(() => p.AcquireCuda(10, 0));
            Assert.Contains(reason, e.Message);
            Assert.Equal(XmemStatus.CudaUnavailable, e.Status);
            using BufferGuard g = p.AcquireCpu(10);
            Assert.Equal(1, p.RefCount(g.MetaIndex));
        }

        Assert.Empty(Shm.EntriesOf(name));
    }
}
