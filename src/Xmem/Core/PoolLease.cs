using System.Runtime.InteropServices;
using Xmem.SharedMemory;

namespace Xmem.Core;

/// <summary>
/// Keeps a pool's own mappings (control segment and this process's holdings) mapped while anything of this process
/// may still touch them: the pool holds the handle, each guard a DangerousAddRef lease. Disposing the pool disposes
/// the handle, and the mappings go when the last guard lets go — so a guard released after (or while) its pool is
/// disposed never touches unmapped memory.
/// </summary>
internal sealed class PoolLease : SafeHandle
{
    private readonly MappedRegion _control;
    private MappedRegion? _holdings;

    internal PoolLease(MappedRegion control) : base(0, ownsHandle: true)
    {
        _control = control;
        SetHandle(1);
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>Hands over this process's holdings mapping, unmapped with the control segment.</summary>
    internal void AdoptHoldings(MappedRegion holdings) => _holdings = holdings;

    protected override bool ReleaseHandle()
    {
        _holdings?.Dispose();
        _control.Dispose();
        return true;
    }
}
