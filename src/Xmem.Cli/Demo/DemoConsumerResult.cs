namespace Xmem.Cli.Demo;

/// <summary>One consumer's part of a demo run (in <c>--json</c> output).</summary>
internal sealed record DemoConsumerResult
{
    public required int Index { get; init; }
    public required string Runtime { get; init; }
    public required int Pid { get; init; }
    public required int Frames { get; init; }
    public string? View { get; init; }
}
