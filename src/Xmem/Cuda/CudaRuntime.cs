using System.Collections.Concurrent;

namespace Xmem.Cuda;

/// <summary>
/// A process's CUDA state shared by its pools: the driver, and the table of the allocations this process exported,
/// so that a second <see cref="BufferPool"/> of the same pool in this process uses the exporter's pointer (CUDA
/// refuses to open an IPC handle in the process that made it).
/// </summary>
internal sealed class CudaRuntime(ICudaDriver driver)
{
    private static readonly Lazy<CudaRuntime> s_shared = new(() => new CudaRuntime(CudaDriver.Shared));
    private readonly ConcurrentDictionary<(ulong Instance, int Slot, uint MemGen), CudaMemory> _exports = new();

    /// <summary>The process's runtime over the real driver.</summary>
    internal static CudaRuntime Shared => s_shared.Value;

    /// <summary>The driver.</summary>
    internal ICudaDriver Driver { get; } = driver;

    /// <summary>Records an allocation this process exported for slot <paramref name="slot"/> of pool instance
    /// <paramref name="instance"/>.</summary>
    internal void RegisterExport(ulong instance, int slot, CudaMemory memory) => _exports[(instance, slot, memory.MemGen)] = memory;

    /// <summary>Forgets an export (it is being freed).</summary>
    internal void UnregisterExport(ulong instance, int slot, CudaMemory memory) =>
        _exports.TryRemove(KeyValuePair.Create((instance, slot, memory.MemGen), memory));

    /// <summary>This process's own allocation for that slot and memory generation, if it made one.</summary>
    internal CudaMemory? FindExport(ulong instance, int slot, uint memGen) =>
        _exports.TryGetValue((instance, slot, memGen), out CudaMemory? m) && !m.IsReleased ? m : null;
}
