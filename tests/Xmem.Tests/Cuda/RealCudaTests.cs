using Xmem.Cuda;

namespace Xmem.Tests.Cuda;

/// <summary>A fact that runs only where the real driver loads and sees a device; elsewhere it is skipped, saying why.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        string? reason = CudaDriver.Shared.UnavailableReason;
        if (reason is not null)
        {
            Skip = $"needs a CUDA device: {reason}";
        }
    }
}

/// <summary>The pool over the real driver (libcuda.so.1), in one process. Cross-process IPC on real hardware is
/// covered by tests/gpu (scripts/gpu-test.sh).</summary>
public sealed unsafe class RealCudaTests : PoolTest
{
    [CudaFact]
    public void Bytes_round_trip_through_device_memory_and_recycling_keeps_the_allocation()
    {
        using BufferPool pool = NewPool(4);
        using BufferGuard cpu = pool.AcquireCpu(3 << 20);
        for (int i = 0; i < cpu.Size; i++)
        {
            cpu.Span[i] = (byte)(i * 31);
        }

        int idx;
        ulong ptr;
        using (BufferGuard dev = cpu.CopyToCuda(0))
        {
            idx = dev.MetaIndex;
            ptr = dev.CudaPointer;
            using BufferGuard view = pool.GetCudaGuard(idx, writable: false);
            Assert.Equal(ptr, view.CudaPointer);
            using BufferGuard back = view.CopyToCpu();
            Assert.True(back.ReadOnlySpan.SequenceEqual(cpu.ReadOnlySpan));
        }

        using (BufferGuard again = pool.AcquireCuda(4 << 20, 0))
        {
            Assert.Equal(idx, again.MetaIndex);
            Assert.Equal(ptr, again.CudaPointer);
        }

        Assert.Equal(4L << 20, pool.TrimCuda());
        pool.DetachCuda();
    }

    [CudaFact]
    public void A_device_that_does_not_exist_is_unavailable()
    {
        using BufferPool pool = NewPool(2);
        int n = CudaDriver.Shared.DeviceCount;
        Assert.Throws<CudaUnavailableException>(() => pool.AcquireCuda(10, n));
    }
}
