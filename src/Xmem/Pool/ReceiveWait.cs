using System.Diagnostics;
using Xmem.Core;

namespace Xmem;

/// <summary>An asynchronous receive from one ring of a channel, tried by the ring's watcher thread
/// (<see cref="WordWatchers"/>) each time the ring's DataEpoch changes. After 1 ms of waiting an attempt also repairs a
/// cell in its way that a dead process claimed, as a blocking receive does. A disposed channel or subscription
/// ends it with ObjectDisposedException.</summary>
internal sealed class ReceiveWait(BufferChannel channel, int ring, ChannelSubscription? subscription, bool writable, CancellationToken token) : AsyncWait<BufferGuard>(token)
{
    private const long RepairAfterNs = 1_000_000;

    protected override bool TryTake(out BufferGuard result)
    {
        bool repair = Stopwatch.GetElapsedTime(StartTimestamp).TotalNanoseconds > RepairAfterNs;
#pragma warning disable CA2000 // ownership passes to the awaiting caller through the wait's result
        result = channel.ReceiveNow(subscription?.LiveRing() ?? ring, writable, repair)!; // a disposed subscription ends the wait
#pragma warning restore CA2000
        return result is not null;
    }
}
