using System.Collections.Concurrent;
using Xmem.SharedMemory;

namespace Xmem.Cuda;

/// <summary>
/// A process's CUDA state shared by its pools: the driver, and the table of the allocations this process exported,
/// so that a second <see cref="BufferPool"/> of the same pool in this process uses the exporter's pointer (CUDA
/// refuses to open an IPC handle in the process that made it), and the server that hands this process's VMM exports
/// to importers (<see cref="CudaFdServer"/>), with the access rule of each pool it exports from.
/// </summary>
internal sealed class CudaRuntime(ICudaDriver driver)
{
    private static readonly Lazy<CudaRuntime> s_shared = new(() => new CudaRuntime(CudaDriver.Shared));
    private readonly ConcurrentDictionary<(ulong Instance, int Slot, uint MemGen), CudaMemory> _exports = new();
    private readonly ConcurrentDictionary<ulong, SegmentAccess> _access = new();
    private readonly Lock _serverLock = new();
    private CudaFdServer? _server;

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

    /// <summary>This process's live VMM export for that slot and memory generation, if any (the fd server's lookup).</summary>
    internal CudaMemory? FindVmmExport(ulong instance, int slot, uint memGen) =>
        FindExport(instance, slot, memGen) is { IsVmm: true, IsExport: true } m ? m : null;

    /// <summary>The fd server's address (pid, token), started on first use; <paramref name="access"/> becomes pool
    /// instance <paramref name="instance"/>'s access rule for requests. Throws when the socket cannot be made.</summary>
    internal (int Pid, ulong Token) ServeVmm(ulong instance, SegmentAccess access)
    {
        _access[instance] = access;
        lock (_serverLock)
        {
            _server ??= CudaFdServer.Start(FindVmmExport, i => _access.TryGetValue(i, out SegmentAccess a) ? a : null);
            return (_server.Pid, _server.Token);
        }
    }

    /// <summary>At a pool's detach: stops the fd server when no VMM export of any pool is left to serve.</summary>
    internal void StopServingIfIdle()
    {
        lock (_serverLock)
        {
            if (_server is null || _exports.Values.Any(m => m.IsVmm && !m.IsReleased))
            {
                return;
            }

            // A fork child inherited the object but not the thread (and its copy of the socket is closed already).
            if (_server.Pid == Interop.Libc.GetPid())
            {
                _server.Stop();
            }

            _server = null;
        }
    }
}
