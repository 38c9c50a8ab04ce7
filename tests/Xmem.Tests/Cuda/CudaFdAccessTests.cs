using Xmem.Cuda;

namespace Xmem.Tests.Cuda;

/// <summary>The access rule of the VMM fd server and client (CudaFdProtocol.Refusal), over kernel-style credentials:
/// who may receive or serve a pool's device memory as a file descriptor.</summary>
public sealed class CudaFdAccessTests
{
    private static readonly uint Me = Xmem.Interop.Libc.GetEUid();
    private static readonly uint Stranger = Me == 4242 ? 4243u : 4242u;

    private static Xmem.Interop.Libc.Ucred Peer(uint uid, uint gid) => new() { Pid = Environment.ProcessId, Uid = uid, Gid = gid };

    [Fact]
    public void The_same_user_and_root_are_admitted_whatever_the_mode()
    {
        var owner = new Xmem.SharedMemory.SegmentAccess(Me, 5000, 0x180); // 0600
        Assert.Null(CudaFdProtocol.Refusal(Peer(Me, 1), owner));
        Assert.Null(CudaFdProtocol.Refusal(Peer(0, 1), owner));
    }

    [Fact]
    public void Another_user_is_refused_unless_the_mode_shares_with_its_group_or_with_everyone()
    {
        var owner = new Xmem.SharedMemory.SegmentAccess(Me, 5000, 0x180); // 0600
        var group = owner with { Mode = 0x1B0 };                          // 0660
        var world = owner with { Mode = 0x1B6 };                          // 0666
        Assert.Contains("not the pool's user", CudaFdProtocol.Refusal(Peer(Stranger, 5000), owner));
        Assert.Null(CudaFdProtocol.Refusal(Peer(Stranger, 5000), group));
        Assert.NotNull(CudaFdProtocol.Refusal(Peer(Stranger, 5001), group)); // another group (and this process's /proc groups do not list 5000)
        Assert.Null(CudaFdProtocol.Refusal(Peer(Stranger, 5001), world));
    }
}
