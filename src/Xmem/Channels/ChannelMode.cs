namespace Xmem;

/// <summary>How a <see cref="BufferChannel"/> delivers.</summary>
public enum ChannelMode
{
    /// <summary>One queue: each buffer sent is received exactly once, by one of the receivers.</summary>
    Queue = 0,

    /// <summary>Fan-out: each buffer sent is delivered to every current subscriber, each with its own reference
    /// (no copy). Receive through <see cref="BufferChannel.Subscribe"/>.</summary>
    FanOut = 1,
}
