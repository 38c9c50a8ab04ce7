using System.Diagnostics;
using Xmem.Core;
using Xmem.Layout;

namespace Xmem.Channels;

/// <summary>Claiming a cell of a ring for a send (docs/layout.md, "Channels"), waiting for room: spinning first when
/// asked, then sleeping on the ring's SpaceEpoch futex as a counted blocking call of the pool; a claim that waits
/// long repairs the cell in its way if its claimer died, and a fan-out ring whose subscriber left or died is skipped.</summary>
internal sealed unsafe class SendClaims(ChannelSegment seg, ChannelHandover handover, FanOutSubscribers subscribers, ProcessRegistry registry, BlockingCalls blocking)
{
    private const long RepairAfterNs = 1_000_000;     // a claim older than this while we wait: ask if its owner lives
    private const long MaxSleepNs = 100_000_000;      // wake at least this often to look for dead processes

    /// <summary>Claims a cell of ring <paramref name="k"/> for this sender, waiting for room. ulong.MaxValue on
    /// timeout; <paramref name="skip"/> when the ring's subscriber left or died meanwhile.</summary>
    internal ulong Claim(int k, long timeoutNs, long start, long spinNs, ref SendWait wait, out bool skip)
    {
        skip = false;
        int tag = registry.Tag;
        ushort inc = registry.Incarnation;
        uint* epoch = &seg.Ring(k)->SpaceEpoch;
        while (true)
        {
            if (wait.Counted)
            {
                blocking.ThrowIfClosing();
            }

            uint seen = Volatile.Read(ref *epoch);
            if (seg.TryClaimWrite(k, tag, inc, out ulong pos, out ulong blocker))
            {
                return pos;
            }

            long elapsed = (long)Stopwatch.GetElapsedTime(start).TotalNanoseconds;
            if (elapsed > RepairAfterNs)
            {
                if (handover.RepairCell(seg, k, pos, blocker))
                {
                    continue;
                }

                if (seg.Mode == ChannelLayout.ModeFanOut)
                {
                    _ = subscribers.ReclaimIfAbandoned(k);
                    if (SubscriberWord.State(Volatile.Read(ref seg.Ring(k)->Subscriber)) != SubscriberWord.Active)
                    {
                        skip = true;
                        return 0;
                    }
                }
            }

            if (timeoutNs >= 0 && elapsed >= timeoutNs)
            {
                return ulong.MaxValue;
            }

            if (!wait.Blocked)
            {
                wait.BlockedSince = seg.Counters.BeginSendWait(registry); // ended by the send (BufferChannel)
                wait.Blocked = true;
            }

            if (elapsed < spinNs)
            {
                Thread.SpinWait(8);
                continue;
            }

            if (!wait.Counted)
            {
                blocking.Enter();
                wait.Counted = true;
            }

            if (wait.Word != (nint)epoch)
            {
                wait.Registration.Dispose();
                wait.Registration = blocking.WakeOnClose(epoch);
                wait.Word = (nint)epoch;
                continue; // look once more now that a close would wake us
            }

            ChannelSegment.SleepOn(epoch, seen, timeoutNs >= 0 ? Math.Min(MaxSleepNs, timeoutNs - elapsed) : MaxSleepNs);
            wait.BlockedSince = seg.Counters.AccountSendWait(wait.BlockedSince);
        }
    }
}

/// <summary>A send's standing as a blocking call of the pool (see BlockingCalls): counted in before
/// its first sleep, out when the send is complete.</summary>
internal struct SendWait
{
    public bool Counted;
    public CancellationTokenRegistration Registration;
    public nint Word; // the futex word Registration wakes (fan-out sends wait on one ring after another)
    public bool Blocked; // counted in the channel's waiting senders (ChannelCounters) since BlockedSince
    public long BlockedSince;
}
