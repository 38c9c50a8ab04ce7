using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Xmem.Cli.Output;
using Xmem.Cli.Top;

namespace Xmem.Cli.Commands;

/// <summary><c>xmem top</c>: a live view of every pool on the machine, refreshed every interval; <c>--once</c> prints
/// one sample (rates over one interval) and exits, as JSON with <c>--json</c>.</summary>
internal static class TopCommand
{
    internal static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var once = new Option<bool>("--once") { Description = "Print one sample (rates over one interval) and exit, for scripts" };
        var interval = new Option<double>("--interval") { Description = "Seconds between samples (default 1)", DefaultValueFactory = _ => 1.0 };
        var command = new Command("top", "Live view of every pool: slots, bytes, attached processes, and per channel sends/s, receives/s, depth, blocked senders and receivers, the bottleneck highlighted (q or Ctrl+C quits)") { once, json, interval };
        command.SetAction(r => Run(r.GetValue(once), r.GetValue(json), r.GetValue(interval)));
        return command;
    }

    private static int Run(bool once, bool json, double intervalSeconds)
    {
        if (!(intervalSeconds is >= 0.05 and <= 3600))
        {
            throw new ArgumentException($"--interval must be between 0.05 and 3600 seconds, not {intervalSeconds.ToString(CultureInfo.InvariantCulture)}.");
        }

        if (json && !once)
        {
            throw new ArgumentException("--json prints one sample: use it with --once (xmem top --once --json).");
        }

        var interval = TimeSpan.FromSeconds(intervalSeconds);
        var sampler = new TopSampler();
        if (once)
        {
            _ = sampler.Sample(); // the first reading: rates need two
            Thread.Sleep(interval);
            TopSample sample = sampler.Sample();
            if (json)
            {
                CommonOptions.WriteJson(sample, CliJsonContext.Default.TopSample);
            }
            else
            {
                AnsiConsole.Write(TopView.Render(sample, live: false));
            }

            return ExitCodes.Ok;
        }

        if (Console.IsInputRedirected || Console.IsOutputRedirected)
        {
            throw new ArgumentException("xmem top needs a terminal (stdin and stdout); for scripts use xmem top --once --json.");
        }

        return RunLive(sampler, interval);
    }

    /// <summary>The live view: the alternate screen (so the terminal's contents come back on exit), redrawn every
    /// interval until q, Q, Esc or Ctrl+C.</summary>
    private static int RunLive(TopSampler sampler, TimeSpan interval)
    {
        using var quit = new ManualResetEventSlim();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true; // quit through the loop, so that the terminal is restored
            quit.Set();
        };
        Console.CancelKeyPress += onCancel;
        var keys = new Thread(() => ReadKeys(quit)) { IsBackground = true, Name = "xmem top keys" };
        keys.Start();
        try
        {
            void Loop()
            {
                TopSample first = sampler.Sample();
                AnsiConsole.Live(TopView.Render(first, live: true)).AutoClear(false).Overflow(VerticalOverflow.Ellipsis).Start(ctx =>
                {
                    while (!quit.Wait(interval))
                    {
                        ctx.UpdateTarget(TopView.Render(sampler.Sample(), live: true));
                    }
                });
            }

            if (AnsiConsole.Profile.Capabilities.AlternateBuffer)
            {
                AnsiConsole.AlternateScreen(Loop);
            }
            else
            {
                Loop();
            }
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }

        return ExitCodes.Ok;
    }

    private static void ReadKeys(ManualResetEventSlim quit)
    {
        while (!quit.IsSet)
        {
            ConsoleKeyInfo key = Console.ReadKey(intercept: true);
            if (key.Key is ConsoleKey.Q or ConsoleKey.Escape || (key.Key == ConsoleKey.C && key.Modifiers.HasFlag(ConsoleModifiers.Control)))
            {
                quit.Set();
            }
        }
    }
}
