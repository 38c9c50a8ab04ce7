using System.CommandLine;
using System.CommandLine.Parsing;
using Xmem.Cli.Demo;

namespace Xmem.Cli.Commands;

/// <summary><c>xmem demo</c> and its hidden child command <c>xmem __consumer</c>.</summary>
internal static class DemoCommand
{
    internal static Command Create()
    {
        var frames = new Option<int>("--frames", "-f") { Description = "Frames to hand over (timed; a few warm-up frames come first)", DefaultValueFactory = _ => 300 };
        var consumers = new Option<int>("--consumers", "-c") { Description = "Consumer processes (default: cores - 1, at least 1)", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount - 1) };
        var fanOut = new Option<bool>("--fanout") { Description = "Every consumer receives and checks every frame (default: each frame goes to one consumer)" };
        var python = new Option<PythonConsumers>("--python")
        {
            Description = "Make consumers Python processes running python/examples/consumer.py: 'one' (the last; the default when given without a value) or 'all'",
            Arity = ArgumentArity.ZeroOrOne,
            DefaultValueFactory = _ => PythonConsumers.None,
            CustomParser = ParsePython,
        };
        var size = new Option<FrameShape>("--size", "-s") { Description = "Frame: WxHxC (uint8 tensor [H, W, C]), WxH, or bytes with an optional K/M/G suffix (default 1920x1080x3)", DefaultValueFactory = _ => FrameShape.FullHd, CustomParser = ParseSize };
        var capacity = new Option<int>("--capacity") { Description = "Slots in the demo's pool", DefaultValueFactory = _ => 8 };
        var depth = new Option<int>("--depth", "--window") { Description = "Frames the channel holds (per consumer with --fanout): a power of two", DefaultValueFactory = _ => 2 };
        var name = new Option<string?>("--name") { Description = "The pool's name (default: xmem-demo-<pid>)" };
        Option<bool> json = CommonOptions.Json();
        Positive(frames, 1, 100_000_000);
        Positive(consumers, 1, 64);
        Positive(capacity, 1, 4096);
        Positive(depth, 1, 1024);
        depth.Validators.Add(r =>
        {
            int v = r.GetValueOrDefault<int>();
            if ((v & (v - 1)) != 0)
            {
                r.AddError($"--depth must be a power of two (1, 2, 4, ...), not {v}.");
            }
        });
        var command = new Command("demo", "Run a producer and consumer processes that hand described 1920×1080×3 frames over through a pool's channel, check every byte, and print frames/s, handoff latency, µs per frame and GB/s")
        {
            frames, consumers, fanOut, python, size, capacity, depth, name, json,
        };
        command.Validators.Add(r =>
        {
            if (r.GetValue(fanOut) && r.GetValue(consumers) > 16)
            {
                r.AddError("--fanout takes at most 16 consumers (a fan-out channel's subscribers).");
            }
        });
        command.SetAction(r => new DemoRunner(new DemoOptions(
            r.GetValue(frames), r.GetValue(consumers), r.GetValue(size)!, r.GetValue(capacity), r.GetValue(depth),
            r.GetValue(fanOut), PythonOf(r, python), r.GetValue(name), r.GetValue(json))).Run());
        return command;
    }

    /// <summary>The consumer process of the demo, started by <c>xmem demo</c> (not for people).</summary>
    internal static Command CreateConsumer()
    {
        var name = new Option<string>("--name") { Required = true };
        var depth = new Option<int>("--depth") { Required = true };
        var fanOut = new Option<bool>("--fanout");
        var command = new Command("__consumer", "The demo's consumer process (started by xmem demo)") { name, depth, fanOut };
        command.Hidden = true;
        command.SetAction(r => DemoConsumer.Run(r.GetValue(name)!, r.GetValue(fanOut) ? ChannelMode.FanOut : ChannelMode.Queue, r.GetValue(depth)));
        return command;
    }

    /// <summary>--python alone means one; absent, none (a value-less option gets neither the parser nor the default).</summary>
    private static PythonConsumers PythonOf(ParseResult r, Option<PythonConsumers> python) =>
        r.GetResult(python) is not { Implicit: false } given ? PythonConsumers.None
        : given.Tokens.Count == 0 ? PythonConsumers.One
        : r.GetValue(python);

    private static PythonConsumers ParsePython(ArgumentResult result)
    {
        if (result.Tokens.Count == 0)
        {
            return PythonConsumers.One;
        }

        string text = result.Tokens[0].Value;
        switch (text.ToLowerInvariant())
        {
            case "one":
                return PythonConsumers.One;
            case "all":
                return PythonConsumers.All;
            default:
                result.AddError($"--python takes 'one' or 'all', not '{text}'.");
                return PythonConsumers.None;
        }
    }

    private static FrameShape ParseSize(ArgumentResult result)
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        FrameShape? shape = FrameShape.Parse(text);
        if (shape is null)
        {
            result.AddError($"--size '{text}' is not a frame: give WxHxC (1920x1080x3), bytes (6220800) or bytes with a suffix (6M), at most 2 GiB.");
            return FrameShape.FullHd;
        }

        return shape;
    }

    private static void Positive(Option<int> option, int min, int max) =>
        option.Validators.Add(r =>
        {
            int v = r.GetValueOrDefault<int>();
            if (v < min || v > max)
            {
                r.AddError($"{option.Name} must be {min}..{max:N0}, not {v}.");
            }
        });
}
