namespace Xmem.Cli.Demo;

/// <summary>The figures of one demo run (also its <c>--json</c> output).</summary>
internal sealed record DemoResult
{
    public required string Pool { get; init; }
    public required string Mode { get; init; }
    public required int Frames { get; init; }
    public required int WarmupFrames { get; init; }
    public required int Consumers { get; init; }
    public required long FrameBytes { get; init; }
    public required long[] Shape { get; init; }
    public required string ContentType { get; init; }
    public required int Capacity { get; init; }
    public required int Depth { get; init; }
    public required double Seconds { get; init; }
    public required double FramesPerSecond { get; init; }
    public required double MicrosecondsPerFrame { get; init; }
    public required double GigabytesPerSecond { get; init; }
    public required double LatencyP50Microseconds { get; init; }
    public required double LatencyP99Microseconds { get; init; }
    public required long FramesChecked { get; init; }
    public required long BytesVerified { get; init; }
    public required DemoConsumerResult[] PerConsumer { get; init; }
    public required bool PoolRemoved { get; init; }
}
