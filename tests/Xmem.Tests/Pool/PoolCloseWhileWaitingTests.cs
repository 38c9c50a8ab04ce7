namespace Xmem.Tests.Pool;

/// <summary>
/// Dispose of a pool while other threads are blocked in it (docs/layout.md, "Closing while others wait"): every
/// waiter — in TryAcquireCpu, BufferChannel.Receive or Send — wakes and throws ObjectDisposedException, Dispose
/// returns only once they have left, and the pool is then detached (and removed: nobody else uses it). Run in a child
/// process, so that a waiter left running on a detached pool cannot harm the test host.
/// </summary>
public sealed class PoolCloseWhileWaitingTests : PoolTest
{
    [Theory]
    [InlineData("acquire")]
    [InlineData("acquire-spinning")]
    [InlineData("receive")]
    [InlineData("send")]
    public void Dispose_wakes_every_blocked_thread_with_ObjectDisposedException_then_detaches(string kind)
    {
        string name = NewName("closewait-" + kind);
        using TestChild child = TestChild.Start("close-while-waiting", name, kind);
        Assert.Equal("woke ObjectDisposedException ObjectDisposedException", child.ReadLine());
        Assert.Equal("exists=false", child.ReadLine());
        Assert.Equal(0, child.WaitForExit());
        Assert.Empty(Shm.EntriesOf(name));
    }
}
