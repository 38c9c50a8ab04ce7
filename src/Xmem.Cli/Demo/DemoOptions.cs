namespace Xmem.Cli.Demo;

/// <summary>What <c>xmem demo</c> was asked to do.</summary>
internal sealed record DemoOptions(int Frames, int Consumers, FrameShape Shape, int Capacity, int Depth, bool FanOut, PythonConsumers Python, string? Name, bool Json);
