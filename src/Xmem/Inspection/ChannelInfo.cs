namespace Xmem.Inspection;

/// <summary>One channel of a pool as seen from outside (<c>xmem stat</c>, <c>xmem top</c>): its counters and current
/// depth, read from its segment without opening it. Counters are numbers to show: they only grow (a rate is the
/// difference of two readings), and they count only the work of processes of this xmem version.</summary>
public sealed record ChannelInfo
{
    /// <summary>The channel's name.</summary>
    public required string Name { get; init; }

    /// <summary>"queue" or "fanOut"; null when the segment could not be read (see <see cref="Problem"/>).</summary>
    public string? Mode { get; init; }

    /// <summary>Messages each ring holds at most (the channel's depth when opened).</summary>
    public int Capacity { get; init; }

    /// <summary>Active subscribers (fan-out mode; 0 for a queue).</summary>
    public int Subscribers { get; init; }

    /// <summary>Messages waiting now: the fullest ring's (in fan-out mode over the rings with a subscriber).</summary>
    public int Depth { get; init; }

    /// <summary>Messages put into the channel, ever (a fan-out send counts once per subscriber it reached).</summary>
    public long Sent { get; init; }

    /// <summary>Messages taken out of the channel, ever.</summary>
    public long Received { get; init; }

    /// <summary>Sends that found the channel full and waited.</summary>
    public long SendWaits { get; init; }

    /// <summary>Receives that found the channel empty and waited.</summary>
    public long ReceiveWaits { get; init; }

    /// <summary>Nanoseconds senders spent waiting for room, summed over sends.</summary>
    public long SendBlockedNs { get; init; }

    /// <summary>Live processes with a sender waiting for room now.</summary>
    public int BlockedSenders { get; init; }

    /// <summary>Live processes with a receiver waiting for a message now.</summary>
    public int BlockedReceivers { get; init; }

    /// <summary>Why the channel's figures could not be read (a damaged or unreadable segment); otherwise null.</summary>
    public string? Problem { get; init; }
}
