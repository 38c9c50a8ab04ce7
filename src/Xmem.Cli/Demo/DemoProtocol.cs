using System.Text.Json.Serialization;

namespace Xmem.Cli.Demo;

/// <summary>
/// What the demo's producer and its consumer processes agree on (docs/cli.md, "The consumer protocol"). Frames go
/// through the pool's channel <see cref="ChannelName"/>, each described (tensor shape, seq, CLOCK_MONOTONIC timestamp,
/// content type), so consumers need no out-of-band shape agreement. The end of the stream is a small buffer with
/// content type <see cref="EndContentType"/>: one per consumer in queue mode, one in all in fan-out mode (every
/// subscriber gets it). The consumer's stdout carries two protocol lines, <see cref="ReadyLine"/> once it can receive
/// and <see cref="ResultPrefix"/> + one JSON <see cref="ConsumerReport"/> at the end; anything else it prints is shown
/// by the producer. The consumer's stdin is its lifeline: <see cref="StopLine"/> asks it to stop now; end of file
/// without it means the producer died.
/// </summary>
internal static class DemoProtocol
{
    /// <summary>The channel the frames go through.</summary>
    internal const string ChannelName = "frames";

    /// <summary>The content type of the end-of-stream buffer.</summary>
    internal const string EndContentType = "application/x-xmem-end";

    /// <summary>The producer tag of every buffer the demo sends.</summary>
    internal const string ProducerTag = "xmem-demo";

    /// <summary>The consumer's first line: it is attached (and subscribed) and receives from now on.</summary>
    internal const string ReadyLine = "ready";

    /// <summary>The start of the consumer's last line, followed by its report as one line of JSON.</summary>
    internal const string ResultPrefix = "result ";

    /// <summary>Written to a consumer's stdin by the producer: stop after the frame in hand, without a report.</summary>
    internal const string StopLine = "stop";

    /// <summary>The content type that says what a frame of <paramref name="shape"/> bytes is.</summary>
    internal static string ContentTypeOf(long[] shape) => shape switch
    {
        [_, _, 3] => "image/rgb8",
        [_, _, 4] => "image/rgba8",
        [_, _] => "image/gray8",
        _ => "application/octet-stream",
    };
}

/// <summary>A consumer's account of its run, sent once at the end (<see cref="DemoProtocol.ResultPrefix"/>). The
/// arrays have one entry per frame received, in the order received; timestamps are CLOCK_MONOTONIC nanoseconds.</summary>
internal sealed record ConsumerReport
{
    /// <summary>What the consumer is: "dotnet" or "python".</summary>
    public string Runtime { get; init; } = "dotnet";

    /// <summary>How the frames looked to it, e.g. "numpy (1080, 1920, 3) uint8".</summary>
    public string? View { get; init; }

    /// <summary>The description's sequence number of each frame.</summary>
    public long[] Seqs { get; init; } = [];

    /// <summary>Handoff latency of each frame: receive time − the description's timestamp.</summary>
    public long[] LatencyNs { get; init; } = [];

    /// <summary>When each frame had been checked and released.</summary>
    public long[] DoneNs { get; init; } = [];

    /// <summary>Frame bytes compared with the pattern, all frames together.</summary>
    public long BytesChecked { get; init; }

    /// <summary>The first frame that differed from its pattern (null: none), and the offset of its first bad byte.</summary>
    public long? MismatchSeq { get; init; }

    /// <summary>See <see cref="MismatchSeq"/>.</summary>
    public long? MismatchOffset { get; init; }

    /// <summary>Why the consumer stopped early, or null.</summary>
    public string? Error { get; init; }
}

/// <summary>Compact, source-generated JSON for the consumer protocol (one line per report, AOT clean).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = false)]
[JsonSerializable(typeof(ConsumerReport))]
internal sealed partial class DemoJsonContext : JsonSerializerContext;
