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
        var consumers = new Option<int>("--consumers", "-c") { Description = "Consumer processes, each checking every frame (default: cores - 1, at least 1)", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount - 1) };
        var size = new Option<long>("--size", "-s") { Description = "Frame size in bytes: a number with an optional K/M/G suffix, or WxHxC (default 1920x1080x3)", DefaultValueFactory = _ => Units.FullHdFrame, CustomParser = ParseSize };
        var capacity = new Option<int>("--capacity") { Description = "Slots in the demo's pool", DefaultValueFactory = _ => 8 };
        var window = new Option<int>("--window") { Description = "Frames in flight per consumer at most", DefaultValueFactory = _ => 4 };
        var name = new Option<string?>("--name") { Description = "The pool's name (default: xmem-demo-<pid>)" };
        Option<bool> json = CommonOptions.Json();
        Positive(frames, 1, 100_000_000);
        Positive(consumers, 1, 64);
        Positive(capacity, 1, 4096);
        Positive(window, 1, 1024);
        var command = new Command("demo", "Run a producer and consumer processes that hand 1920×1080×3 frames over through a pool, check every byte, and print frames/s, µs per handoff and GB/s")
        {
            frames, consumers, size, capacity, window, name, json,
        };
        command.SetAction(r => new DemoRunner(new DemoOptions(
            r.GetValue(frames), r.GetValue(consumers), r.GetValue(size), r.GetValue(capacity), r.GetValue(window), r.GetValue(name), r.GetValue(json))).Run());
        return command;
    }

    /// <summary>The consumer process of the demo, started by <c>xmem demo</c> (not for people).</summary>
    internal static Command CreateConsumer()
    {
        var name = new Option<string>("--name") { Required = true };
        var size = new Option<long>("--size") { Required = true };
        var command = new Command("__consumer", "The demo's consumer process (started by xmem demo)") { name, size };
        command.Hidden = true;
        command.SetAction(r => DemoConsumer.Run(r.GetValue(name)!, r.GetValue(size)));
        return command;
    }

    private static long ParseSize(ArgumentResult result)
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        long? size = Units.ParseSize(text);
        if (size is null or > int.MaxValue)
        {
            result.AddError($"--size '{text}' is not a frame size: give bytes (6220800), with a suffix (6M), or WxHxC (1920x1080x3), at most 2 GiB.");
            return 0;
        }

        return size.Value;
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
