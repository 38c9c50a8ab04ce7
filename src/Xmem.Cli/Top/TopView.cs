using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;
using Xmem.Cli.Output;
using Xmem.Inspection;

namespace Xmem.Cli.Top;

/// <summary>Renders a <see cref="TopSample"/> for the terminal: per pool a line of slots, bytes and acquires, its
/// attached processes, and a table of its channels, the bottleneck (a channel whose depth stays at its maximum: its
/// receivers are the slowest stage) in red.</summary>
internal static class TopView
{
    internal static IRenderable Render(TopSample sample, bool live)
    {
        var rows = new List<IRenderable>
        {
            new Markup($"[bold]xmem top[/] — {sample.Time.ToLocalTime():HH:mm:ss}, {sample.Pools.Count} pool{(sample.Pools.Count == 1 ? "" : "s")} in {Markup.Escape(sample.Directory)}"
                + (live ? "   [grey](q or Ctrl+C quits)[/]" : "")),
        };
        if (sample.Pools.Count == 0)
        {
            rows.Add(new Markup("[grey]no xmem pools[/]"));
        }

        foreach (TopPool p in sample.Pools)
        {
            rows.Add(Text.Empty);
            rows.Add(new Markup(PoolLine(p)));
            if (p.Capacity == 0)
            {
                continue;
            }

            string procs = p.Processes.Count == 0 ? "[grey]none[/]" : string.Join(", ", p.Processes.Select(e => e.Alive ? $"{e.Pid} {Markup.Escape(e.Command)}" : $"[red]{e.Pid} {Markup.Escape(e.Command)} (dead)[/]"));
            rows.Add(new Markup($"  processes: {procs}"));
            if (p.Channels.Count > 0)
            {
                rows.Add(ChannelTable(p));
            }
        }

        return new Rows(rows);
    }

    private static string PoolLine(TopPool p)
    {
        string head = $"[bold]{Markup.Escape(p.Name)}[/] {Tables.Status(p.Status)}";
        if (p.Capacity == 0)
        {
            return head + (p.Problem is null ? "" : " " + Markup.Escape(p.Problem));
        }

        string waits = p.AcquireWaits > 0 ? $"[yellow]{p.AcquireWaits} waited (pool full)[/]" : "0 waited";
        return $"{head}  slots {p.SlotsInUse}/{p.Capacity}  live {Units.Bytes(p.LiveBytes)}  memory {Units.Bytes(p.MemoryBytes)}  acquires {Rate(p.AcquiresPerSecond)}/s ({waits})  recovered {p.Recoveries}";
    }

    private static Table ChannelTable(TopPool p)
    {
        Table t = Tables.Create("CHANNEL", "MODE", "DEPTH", "SENDS/S", "RECVS/S", "BLOCKED SEND", "BLOCKED RECV", "SEND WAIT", "SENT", "RECEIVED", "");
        foreach (TopChannel c in p.Channels)
        {
            if (c.Problem is not null)
            {
                t.AddRow(Markup.Escape(c.Name), "-", "-", "-", "-", "-", "-", "-", "-", "-", $"[red]{Markup.Escape(c.Problem)}[/]");
                continue;
            }

            string depth = $"{c.Depth}/{c.Capacity}";
            string mode = c.Mode == "fanOut" ? $"fan-out×{c.Subscribers}" : "queue";
            string note = c.Bottleneck ? "[bold red]◀ full: slowest stage is its receivers[/]" : c.Full ? "[yellow]full[/]" : "";
            string Cell(string s) => c.Bottleneck ? $"[bold red]{s}[/]" : s;
            t.AddRow(
                Cell(Markup.Escape(c.Name)),
                mode,
                Cell(depth),
                Rate(c.SendsPerSecond),
                Rate(c.ReceivesPerSecond),
                c.BlockedSenders.ToString(CultureInfo.InvariantCulture),
                c.BlockedReceivers.ToString(CultureInfo.InvariantCulture),
                $"{c.SendBlockedPerSecond * 100:0}%",
                c.Sent.ToString(CultureInfo.InvariantCulture),
                c.Received.ToString(CultureInfo.InvariantCulture),
                note);
        }

        return t;
    }

    private static string Rate(double perSecond) => perSecond.ToString(perSecond >= 100 ? "0" : "0.0", CultureInfo.InvariantCulture);
}
