using System.Text.Json;

namespace Xmem.Cli.Demo;

/// <summary>Writes the figures of a demo run: JSON with <c>--json</c>, else the lines for a person (with what the
/// consumers printed besides their reports).</summary>
internal static class DemoReport
{
    /// <summary>Prints <paramref name="r"/> as <paramref name="options"/> ask.</summary>
    internal static void Print(DemoOptions options, DemoResult r, IReadOnlyList<ConsumerProcess> consumers)
    {
        if (options.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(r, Output.CliJsonContext.Default.DemoResult));
            return;
        }

        string checkedBy = options.FanOut
            ? (r.Consumers == 1 ? "every byte checked by the consumer" : $"every byte checked by each of the {r.Consumers} consumers")
            : (r.Consumers == 1 ? "every byte checked by the consumer" : "every byte checked by one of the consumers");
        Console.WriteLine($"  {r.Frames} frames handed over in {r.Seconds:0.000} s, {checkedBy}");
        foreach (ConsumerProcess c in consumers)
        {
            string[] lines;
            lock (c.OtherLines)
            {
                lines = [.. c.OtherLines];
            }

            foreach (string line in lines.Take(6))
            {
                Console.WriteLine($"  | consumer {c.Index}: {line}");
            }

            if (lines.Length > 6)
            {
                Console.WriteLine($"  | consumer {c.Index}: ({lines.Length - 6} more lines)");
            }
        }

        if (r.Consumers > 1 || r.PerConsumer.Any(p => p.View is not null))
        {
            Console.WriteLine("  " + string.Join("; ", r.PerConsumer.Select(p =>
                $"consumer {p.Index} ({p.Runtime}{(p.View is null ? "" : ", " + p.View)}): {p.Frames} frames")));
        }

        Console.WriteLine($"  frames/s          {r.FramesPerSecond,10:N1}");
        Console.WriteLine($"  µs per frame      {r.MicrosecondsPerFrame,10:N1}   (wall time per frame, producer and consumers overlapping)");
        Console.WriteLine($"  GB/s              {r.GigabytesPerSecond,10:N2}   (frame bytes per second{(options.FanOut && r.Consumers > 1 ? $"; checked: × {r.Consumers}" : "")})");
        Console.WriteLine($"  latency p50 µs    {r.LatencyP50Microseconds,10:N1}   (handoff: receive time − the description's timestamp, taken before Send;");
        Console.WriteLine($"  latency p99 µs    {r.LatencyP99Microseconds,10:N1}    includes waiting in the channel behind up to {r.Depth} frames)");
        Console.WriteLine($"  pool '{r.Pool}' {(r.PoolRemoved ? "removed" : "NOT removed: run `xmem gc`")}");
    }
}
