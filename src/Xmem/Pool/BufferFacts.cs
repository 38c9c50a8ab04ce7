namespace Xmem.Pool;

/// <summary>What one incarnation of a guard says about its buffer, read at once between two checks of the guard's
/// state (<see cref="BufferGuard.FactsAt"/>): a release or reuse racing with the read is an invalid guard, never a mix
/// of two references' fields nor a field a recycled guard already let go of. The C ABI's <c>xmem_buffer_info</c> is
/// filled from it.</summary>
/// <param name="MetaIndex">The slot.</param>
/// <param name="Size">The buffer's size in bytes.</param>
/// <param name="CpuPointer">The first byte in this process; 0 for a CUDA buffer.</param>
/// <param name="CudaPointer">The device pointer of the first byte; 0 for a CPU buffer.</param>
/// <param name="DeviceId">The CUDA device ordinal; -1 for a CPU buffer.</param>
/// <param name="IsReadOnly">True for a guard from get.</param>
internal readonly record struct BufferFacts(int MetaIndex, long Size, nint CpuPointer, ulong CudaPointer, int DeviceId, bool IsReadOnly)
{
    /// <summary>True for a buffer in CUDA device memory.</summary>
    internal bool IsCuda => DeviceId >= 0;
}
