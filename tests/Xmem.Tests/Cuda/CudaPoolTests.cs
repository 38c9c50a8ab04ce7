using Xmem.Cuda;
using Xmem.Layout;

namespace Xmem.Tests.Cuda;

/// <summary>
/// xmem's CUDA bookkeeping — slot states, per-slot handle caches, recycling, orphan reaping, errors — checked with
/// simulated device memory (<see cref="FakeCudaDriver"/>) so it runs on every machine. Two pool instances stand for
/// two processes; each has its own driver, as each real process has its own CUDA context.
/// </summary>
public sealed unsafe class CudaPoolTests : PoolTest
{
    private const long MiB = 1 << 20;
    private readonly FakeCudaWorld _world = new(devices: 2);

    private (BufferPool Pool, FakeCudaDriver Driver) Process(string name, bool create, int capacity = 4)
    {
        var driver = new FakeCudaDriver(_world, create ? "exporter" : "importer");
        BufferPool pool = create ? BufferPool.Create(name, capacity) : BufferPool.Open(name);
        pool.UseCudaRuntime(new CudaRuntime(driver));
        return (pool, driver);
    }

    private ((BufferPool Pool, FakeCudaDriver Driver) A, (BufferPool Pool, FakeCudaDriver Driver) B) TwoProcesses(int capacity = 4)
    {
        string name = NewName("cuda");
        var a = Process(name, create: true, capacity);
        var b = Process(name, create: false);
        return (a, b);
    }

    private static void Close(params BufferPool[] pools)
    {
        foreach (BufferPool p in pools)
        {
            p.DetachCuda();
            p.Dispose();
        }
    }

    [Fact]
    public void Acquire_publishes_a_live_cuda_slot_with_a_2MiB_allocation()
    {
        var (a, b) = TwoProcesses();
        using (BufferGuard g = a.Pool.AcquireCuda(1000, deviceId: 1))
        {
            Assert.True(g.IsCuda);
            Assert.Equal(1, g.DeviceId);
            Assert.Equal(1000, g.Size);
            Assert.NotEqual(0UL, g.CudaPointer);
            Assert.Equal(1, a.Pool.RefCount(g.MetaIndex));
            Assert.Equal(2 * MiB, _world.LiveBytes);
            Assert.Equal(1, a.Driver.Count("cuMemAlloc"));
            Assert.Equal(1, a.Driver.Count("cuIpcGetMemHandle"));
            Assert.Equal(1, a.Driver.Count("cuEventCreate"));
        }

        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void Another_process_opens_the_handle_once_while_it_holds_a_guard_and_closes_it_before_its_last_reference_goes()
    {
        var (a, b) = TwoProcesses();
        BufferGuard w = a.Pool.AcquireCuda(4096, 0);
        new Span<byte>((void*)w.CudaPointer, 4096).Fill(0x5A); // simulated device memory is host memory
        int idx = w.MetaIndex;
        Assert.Equal(2, a.Pool.AddRef(idx)); // keep the slot live with an in-flight reference
        w.Dispose();

        using (BufferGuard g1 = b.Pool.GetCudaGuard(idx, writable: false))
        {
            Assert.Equal(4096, g1.Size);
            Assert.True(g1.IsReadOnly);
            Assert.NotEqual(0UL, g1.CudaPointer);
            Assert.All(new ReadOnlySpan<byte>((void*)g1.CudaPointer, 4096).ToArray(), x => Assert.Equal(0x5A, x));
            Assert.Equal(1, b.Driver.Count("cuIpcOpenMemHandle"));
            Assert.Equal(1, b.Driver.Count("cuIpcOpenEventHandle"));

            int before = b.Driver.TotalCalls;
            using (BufferGuard g2 = b.Pool.GetCudaGuard(idx, writable: true))
            {
                Assert.Equal(1, b.Driver.Count("cuIpcOpenMemHandle"));
                Assert.Equal(before + 1, b.Driver.TotalCalls); // only the stream wait on the writes' event
                Assert.Equal(2, b.Driver.Count("cuStreamWaitEvent"));
            }

            b.Pool.CudaGetWaitsForWrites = false;
            before = b.Driver.TotalCalls;
            using (BufferGuard g3 = b.Pool.GetCudaGuard(idx, writable: false))
            {
                Assert.Equal(before, b.Driver.TotalCalls); // cached: no driver call at all
            }

            Assert.Equal(1, b.Driver.OpenImports);
        }

        // The last guard closed the mapping (and its event) before its reference went: the exporter may free.
        Assert.Equal(0, b.Driver.OpenImports);
        Assert.Equal(1, b.Driver.Count("cuIpcCloseMemHandle"));
        Assert.Equal(0, a.Pool.Release(idx));
        Close(a.Pool, b.Pool);
        Assert.Equal(0, b.Driver.OpenImports);
    }

    [Fact]
    public void The_exporting_process_uses_its_own_pointer_never_its_own_handle()
    {
        string name = NewName("cuda-self");
        var driver = new FakeCudaDriver(_world, "one process");
        var runtime = new CudaRuntime(driver);
        using BufferPool a = BufferPool.Create(name, 4);
        using BufferPool a2 = BufferPool.Open(name); // a second instance in the same process
        a.UseCudaRuntime(runtime);
        a2.UseCudaRuntime(runtime);
        using BufferGuard w = a.AcquireCuda(100, 0);
        using (BufferGuard r1 = a.GetCudaGuard(w.MetaIndex, writable: false))
        using (BufferGuard r2 = a2.GetCudaGuard(w.MetaIndex, writable: false))
        {
            Assert.Equal(w.CudaPointer, r1.CudaPointer);
            Assert.Equal(w.CudaPointer, r2.CudaPointer);
        }

        Assert.Equal(0, driver.Count("cuIpcOpenMemHandle"));
        w.Dispose();
        a.DetachCuda();
        a2.DetachCuda();
    }

    [Fact]
    public void A_released_slot_keeps_its_allocation_for_a_fitting_acquire_on_the_same_device()
    {
        var (a, b) = TwoProcesses();
        int idx;
        ulong ptr;
        using (BufferGuard g = a.Pool.AcquireCuda(3 * MiB, 0))
        {
            idx = g.MetaIndex;
            ptr = g.CudaPointer;
        }

        Assert.Equal(0, a.Pool.RefCount(idx));
        using (BufferGuard g = a.Pool.AcquireCuda(4 * MiB, 0)) // fits the 4 MiB kept allocation
        {
            Assert.Equal(idx, g.MetaIndex);
            Assert.Equal(ptr, g.CudaPointer);
        }

        Assert.Equal(1, a.Driver.Count("cuMemAlloc"));
        using (BufferGuard g = a.Pool.AcquireCuda(100, 1)) // other device: another slot, new memory
        {
            Assert.NotEqual(idx, g.MetaIndex);
        }

        Assert.Equal(2, a.Driver.Count("cuMemAlloc"));
        Assert.Equal(0, a.Driver.Count("cuMemFree"));
        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void Among_kept_allocations_the_smallest_that_fits_is_reused()
    {
        var (a, b) = TwoProcesses();
        BufferGuard big = a.Pool.AcquireCuda(64 * MiB, 0);
        BufferGuard small = a.Pool.AcquireCuda(2 * MiB, 0);
        int smallIdx = small.MetaIndex;
        big.Dispose();
        small.Dispose();
        using (BufferGuard g = a.Pool.AcquireCuda(MiB, 0))
        {
            Assert.Equal(smallIdx, g.MetaIndex);
        }

        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void A_too_small_own_allocation_is_freed_and_replaced()
    {
        var (a, b) = TwoProcesses(capacity: 1);
        a.Pool.AcquireCuda(MiB, 0).Dispose();
        using (BufferGuard g = a.Pool.AcquireCuda(5 * MiB, 0))
        {
            Assert.Equal(0, g.MetaIndex);
        }

        Assert.Equal(1, a.Driver.Count("cuMemFree"));
        Assert.Equal(6 * MiB, _world.LiveBytes);
        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void Another_process_prefers_an_empty_slot_to_an_exporters_kept_memory()
    {
        var (a, b) = TwoProcesses(capacity: 2);
        int aIdx;
        using (BufferGuard g = a.Pool.AcquireCuda(MiB, 0))
        {
            aIdx = g.MetaIndex;
        }

        using (BufferGuard g = b.Pool.AcquireCuda(MiB, 0))
        {
            Assert.NotEqual(aIdx, g.MetaIndex);
        }

        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void Memory_taken_over_by_another_process_is_freed_by_its_exporter_later()
    {
        var (a, b) = TwoProcesses(capacity: 1);
        a.Pool.AcquireCuda(MiB, 0).Dispose();
        using (BufferGuard g = b.Pool.AcquireCuda(MiB, 0)) // the only slot holds a's memory: taken over
        {
            Assert.Equal(0, g.MetaIndex);
        }

        Assert.Equal(0, b.Driver.Count("cuMemFree")); // b cannot free a's allocation
        Assert.Equal(4 * MiB, _world.LiveBytes);
        Assert.Equal(2 * MiB, a.Pool.TrimCuda()); // a notices its orphan
        Assert.Equal(1, a.Driver.Count("cuMemFree"));
        Assert.Equal(2 * MiB, _world.LiveBytes);
        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void An_importers_mapping_of_replaced_memory_is_closed_and_the_new_generation_opened()
    {
        var (a, b) = TwoProcesses(capacity: 1);
        a.Pool.PreallocateCuda(MiB, 1, 0);
        b.Pool.GetCudaGuard(0, writable: false).Dispose();
        Assert.Equal(0, b.Driver.OpenImports); // closed with its last guard
        Assert.Equal(0, a.Pool.Release(0));
        a.Pool.AcquireCuda(8 * MiB, 0).Forget(); // bigger: new memory generation, count 1 in flight
        using (BufferGuard g = b.Pool.GetCudaGuard(0, writable: false))
        {
            Assert.Equal(8 * MiB, g.Size);
            Assert.Equal(1, b.Driver.OpenImports);
        }

        Assert.Equal(2, b.Driver.Count("cuIpcOpenMemHandle"));
        Assert.Equal(2, b.Driver.Count("cuIpcCloseMemHandle"));
        Assert.Equal(0, b.Driver.OpenImports);
        Assert.Equal(0, a.Pool.Release(0));
        Close(a.Pool, b.Pool);
        Assert.Equal(0, b.Driver.OpenImports);
        Assert.Equal(0, b.Driver.LiveEvents);
    }

    [Fact]
    public void Trim_gives_back_own_allocations_of_free_slots_only()
    {
        var (a, b) = TwoProcesses();
        BufferGuard held = a.Pool.AcquireCuda(MiB, 0);
        a.Pool.AcquireCuda(3 * MiB, 0).Dispose();
        Assert.Equal(4 * MiB, a.Pool.TrimCuda());
        Assert.Equal(2 * MiB, _world.LiveBytes);
        Assert.Equal(0, b.Pool.TrimCuda()); // b exported nothing
        held.Dispose();
        Assert.Equal(2 * MiB, a.Pool.TrimCuda());
        Assert.Equal(0, _world.LiveBytes);
        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void A_cpu_acquire_that_takes_an_own_cuda_slot_leaves_an_orphan_that_is_reaped()
    {
        var (a, b) = TwoProcesses(capacity: 1);
        a.Pool.AcquireCuda(MiB, 0).Dispose();
        using (BufferGuard g = a.Pool.AcquireCpu(4096))
        {
            Assert.False(g.IsCuda);
            Assert.Equal(-1, g.DeviceId);
        }

        a.Pool.TrimCuda();
        Assert.Equal(0, _world.LiveBytes);
        using (BufferGuard g = a.Pool.AcquireCuda(MiB, 0)) // and the slot can turn CUDA again
        {
            Assert.True(g.IsCuda);
        }

        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void Preallocate_leaves_live_slots_in_flight_and_releases_them_all_on_failure()
    {
        var (a, b) = TwoProcesses(capacity: 3);
        int[] idx = a.Pool.PreallocateCuda(1000, 3, 0);
        Assert.Equal(3, idx.Distinct().Count());
        Assert.All(idx, i => Assert.Equal(1, a.Pool.RefCount(i)));
        foreach (int i in idx)
        {
            Assert.Equal(0, a.Pool.Release(i));
        }

        a.Pool.AcquireCpu(10).Forget(); // one slot taken: 3 no longer fit
        Assert.Throws<PoolFullException>(() => a.Pool.PreallocateCuda(1000, 3, 0));
        Assert.Equal(1, Enumerable.Range(0, 3).Sum(a.Pool.RefCount));
        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void Writes_are_recorded_and_read_only_guards_cannot_record()
    {
        var (a, b) = TwoProcesses();
        using BufferGuard w = a.Pool.AcquireCuda(100, 0);
        w.RecordWritesDone(stream: 0x77);
        Assert.Equal(1, a.Driver.Count("cuEventRecord"));
        using BufferGuard r = b.Pool.GetCudaGuard(w.MetaIndex, writable: false);
        Assert.Throws<BufferReadOnlyException>(() => r.RecordWritesDone());
        r.WaitWritesDone(stream: 0x99);
        r.SynchronizeWrites();
        Assert.Equal(1, b.Driver.Count("cuEventSynchronize"));
        w.RecordWritesOnRelease();
        r.RecordWritesOnRelease(); // a reader records nothing
        Assert.Equal(2, a.Driver.Count("cuEventRecord"));
        Assert.Equal(0, b.Driver.Count("cuEventRecord"));
        r.Dispose();
        w.Dispose();
        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void Copies_between_kinds_carry_every_byte()
    {
        var (a, b) = TwoProcesses(capacity: 8);
        using BufferGuard cpu = a.Pool.AcquireCpu(5000);
        for (int i = 0; i < 5000; i++)
        {
            cpu.Span[i] = (byte)(i * 7);
        }

        using BufferGuard dev0 = cpu.CopyToCuda(0);
        Assert.True(dev0.IsCuda);
        using BufferGuard imported = b.Pool.GetCudaGuard(dev0.MetaIndex, writable: false);
        using BufferGuard dev1 = imported.CopyToDevice(1); // importer copies to another device: peer copy
        Assert.Equal(1, dev1.DeviceId);
        using BufferGuard dev1b = dev1.CopyToCuda(1);      // same device: device to device
        using BufferGuard back = dev1b.CopyToCpu();
        using BufferGuard back2 = back.CopyToDevice(-1);   // CPU to CPU
        Assert.True(back2.ReadOnlySpan.SequenceEqual(cpu.ReadOnlySpan));
        Assert.Equal(1, a.Driver.Count("cuMemcpyHtoD"));
        Assert.Equal(1, b.Driver.Count("cuMemcpyPeer"));
        Assert.Equal(1, b.Driver.Count("cuMemcpyDtoD"));
        Assert.Equal(1, b.Driver.Count("cuMemcpyDtoH"));
        dev0.Dispose();
        imported.Dispose();
        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void CudaPointer_of_a_cpu_buffer_and_a_cpu_slot_through_the_cuda_get_are_refused()
    {
        var (a, b) = TwoProcesses();
        using BufferGuard g = a.Pool.AcquireCpu(10);
        var e = Assert.Throws<XmemException>(() => g.CudaPointer);
        Assert.Equal(XmemStatus.InvalidArgument, e.Status);
        Assert.Throws<XmemException>(() => b.Pool.GetCudaGuard(g.MetaIndex, writable: false));
        Assert.Equal(1, a.Pool.RefCount(g.MetaIndex));
        g.Dispose();
        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void A_get_of_a_dead_exporters_memory_fails_and_changes_no_count()
    {
        var (a, b) = TwoProcesses();
        int idx = a.Pool.PreallocateCuda(MiB, 1, 0)[0];
        _world.Kill(a.Driver); // the exporter's context is gone, the slot still says Live
        var e = Assert.Throws<CudaException>(() => b.Pool.GetCudaGuard(idx, writable: false));
        Assert.Equal(XmemStatus.CudaError, e.Status);
        Assert.Equal(1, b.Pool.RefCount(idx));
        Assert.Equal(0, b.Pool.Release(idx));
        using (BufferGuard g = b.Pool.AcquireCuda(MiB, 0)) // the dead exporter's slot is usable again
        {
            Assert.True(g.IsCuda);
        }

        a.Pool.Dispose();
        Close(b.Pool);
    }

    [Fact]
    public void A_damaged_cuda_record_is_refused_before_any_driver_call()
    {
        var (a, b) = TwoProcesses();
        int idx = a.Pool.PreallocateCuda(100, 1, 0)[0];
        WriteSlotField(b.Pool, idx, 30, BitConverter.GetBytes((short)9)); // DeviceId 9 of 2 devices
        int before = b.Driver.Count("cuIpcOpenMemHandle");
        Assert.Throws<CorruptSegmentException>(() => b.Pool.GetCudaGuard(idx, writable: false));
        Assert.Equal(before, b.Driver.Count("cuIpcOpenMemHandle"));
        Assert.Equal(1, b.Pool.RefCount(idx));
        WriteSlotField(b.Pool, idx, 30, BitConverter.GetBytes((short)0));
        WriteSlotField(b.Pool, idx, 56, BitConverter.GetBytes(10L)); // CudaAllocSize smaller than Size
        Assert.Throws<CorruptSegmentException>(() => b.Pool.GetCudaGuard(idx, writable: false));
        Assert.Equal(0, a.Pool.Release(idx));
        Close(a.Pool, b.Pool);
    }

    [Fact]
    public void Device_and_availability_errors_say_why()
    {
        var (a, b) = TwoProcesses();
        var e = Assert.Throws<CudaUnavailableException>(() => a.Pool.AcquireCuda(10, 2));
        Assert.Contains("device 2 does not exist", e.Message);
        Assert.Equal(XmemStatus.CudaUnavailable, e.Status);
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Pool.AcquireCuda(10, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Pool.AcquireCuda(0, 0));
        Close(a.Pool, b.Pool);

        string name = NewName("cuda-none");
        using BufferPool p = BufferPool.Create(name, 2);
        p.UseCudaRuntime(new CudaRuntime(new FakeCudaDriver(_world, "no gpu", unavailable: "no NVIDIA driver here")));
        var u = Assert.Throws<CudaUnavailableException>(() => p.AcquireCuda(10, 0));
        Assert.Contains("no NVIDIA driver here", u.Message);
        Assert.Throws<CudaUnavailableException>(() => p.PreallocateCuda(10, 1, 0));
        using BufferGuard cpu = p.AcquireCpu(10); // CPU features unaffected
        Assert.Equal(0, Enumerable.Range(0, 2).Count(i => p.RefCount(i) > 1));
    }

    [Fact]
    public void Public_get_returns_a_cuda_guard_for_a_cuda_slot()
    {
        var (a, b) = TwoProcesses();
        int idx = a.Pool.PreallocateCuda(100, 1, 0)[0];
        using (BufferGuard g = b.Pool.Get(idx))
        {
            Assert.True(g.IsCuda);
        }

        Assert.Equal(0, a.Pool.Release(idx));
        Close(a.Pool, b.Pool);
    }

    private static void WriteSlotField(BufferPool pool, int slot, int offset, byte[] bytes)
    {
        string path = Xmem.SharedMemory.PoolName.PathOf(Xmem.SharedMemory.PoolName.ControlObject(pool.Name));
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.Position = LayoutConstants.SlotTableOffset(pool.Capacity) + ((long)slot * LayoutConstants.SlotSize) + offset;
        f.Write(bytes);
    }

    protected override void Dispose(bool disposing)
    {
        try
        {
            base.Dispose(disposing);
        }
        finally
        {
            _world.Dispose();
        }
    }
}
