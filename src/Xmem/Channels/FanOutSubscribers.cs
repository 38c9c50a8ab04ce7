using Xmem.Core;
using Xmem.Layout;

namespace Xmem.Channels;

/// <summary>
/// The subscribers of a fan-out channel (docs/layout.md, "Channels": each subscriber has a ring of its own, claimed
/// through the ring's subscriber word). A subscriber word moves 0 → Joining → Active → Leaving → 0, each step one CAS
/// by the process named in it (tag and incarnation), or by a process that found that one dead. Joining and Leaving
/// drain the ring first, so a new subscriber never receives what an earlier one left, and a ring nobody reads gives
/// its references back.
/// </summary>
internal sealed unsafe class FanOutSubscribers(ChannelSegment seg, ChannelHandover handover, ProcessRegistry registry)
{
    private const uint Joining = 2, Leaving = 3;

    /// <summary>Claims a free ring for a new subscriber of this process (first pass: free rings; second: rings whose
    /// subscriber died) and drains it. Returns the ring, or -1 when all are taken by live subscribers.</summary>
    internal int TryJoin()
    {
        int tag = registry.Tag;
        ushort inc = registry.Incarnation;
        for (int pass = 0; pass < 2; pass++)
        {
            for (int k = 0; k < seg.RingCount; k++)
            {
                uint* sub = &seg.Ring(k)->Subscriber;
                uint sw = Volatile.Read(ref *sub);
                bool free = sw == 0 || (pass == 1 && !registry.IsClaimerAlive(SubscriberWord.Tag(sw), SubscriberWord.Incarnation(sw)));
                if (!free || Interlocked.CompareExchange(ref *sub, SubscriberWord.Make(Joining, tag, inc), sw) != sw)
                {
                    continue;
                }

                Drain(k); // what an earlier subscriber left is not for us
                Volatile.Write(ref *sub, SubscriberWord.Make(SubscriberWord.Active, tag, inc));
                return k;
            }
        }

        return -1;
    }

    /// <summary>Ends this process's subscription on ring <paramref name="k"/>: drains it and frees the ring.</summary>
    internal void Leave(int k)
    {
        uint* sub = &seg.Ring(k)->Subscriber;
        uint sw = Volatile.Read(ref *sub);
        if (SubscriberWord.State(sw) != SubscriberWord.Active || Interlocked.CompareExchange(ref *sub, SubscriberWord.Make(Leaving, SubscriberWord.Tag(sw), SubscriberWord.Incarnation(sw)), sw) != sw)
        {
            return;
        }

        Drain(k);
        Volatile.Write(ref *sub, 0u);
    }

    /// <summary>Drains a ring whose subscriber died (or that has none but holds leftovers). Returns the cells drained.</summary>
    internal int ReclaimIfAbandoned(int k)
    {
        uint* sub = &seg.Ring(k)->Subscriber;
        uint sw = Volatile.Read(ref *sub);
        bool abandoned = sw == 0 ? seg.Backlog(k) > 0 : !registry.IsClaimerAlive(SubscriberWord.Tag(sw), SubscriberWord.Incarnation(sw));
        if (!abandoned || Interlocked.CompareExchange(ref *sub, SubscriberWord.Make(Leaving, registry.Tag, registry.Incarnation), sw) != sw)
        {
            return 0;
        }

        int n = Drain(k);
        Volatile.Write(ref *sub, 0u);
        return n;
    }

    /// <summary>Receives and releases everything ready in ring <paramref name="k"/> (repairing dead claims).</summary>
    private int Drain(int k)
    {
        int n = 0;
        int tag = registry.Tag;
        ushort inc = registry.Incarnation;
        while (true)
        {
            int r = seg.TryClaimRead(k, tag, inc, out ulong pos, out ulong observed);
            if (r == ChannelSegment.Claimed)
            {
                handover.DiscardReceived(seg, k, pos, observed);
                n++;
            }
            else if (!handover.RepairCell(seg, k, pos, observed))
            {
                return n;
            }
        }
    }
}
