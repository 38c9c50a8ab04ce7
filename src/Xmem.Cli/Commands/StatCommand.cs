using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Xmem.Cli.Output;
using Xmem.Inspection;

namespace Xmem.Cli.Commands;

/// <summary><c>xmem stat NAME</c>: one pool's slots and process table.</summary>
internal static class StatCommand
{
    internal static Command Create()
    {
        Argument<string> name = CommonOptions.PoolName();
        Option<bool> json = CommonOptions.Json();
        var all = new Option<bool>("--all") { Description = "List every slot, also free ones that keep no memory" };
        var command = new Command("stat", "Show a pool's slots (state, size, count, generation, holders, in flight), its attached processes, its counters and its channels (depth, sent, received, blocked senders and receivers)") { name, json, all };
        command.SetAction(r => Run(r.GetValue(name)!, r.GetValue(json), r.GetValue(all)));
        return command;
    }

    private static int Run(string name, bool json, bool all)
    {
        PoolDetails d = PoolInspector.Inspect(name, all);
        if (json)
        {
            CommonOptions.WriteJson(d, CliJsonContext.Default.PoolDetails);
            return ExitCodes.Ok;
        }

        PoolSummary p = d.Summary;
        var grid = new Grid().AddColumn().AddColumn();
        grid.AddRow("[bold]pool[/]", Markup.Escape(p.Name));
        grid.AddRow("[bold]status[/]", Tables.Status(p.Status) + (p.Problem is null ? "" : " " + Markup.Escape(p.Problem)));
        grid.AddRow("[bold]segment[/]", Markup.Escape(p.Path));
        if (p.Capacity > 0)
        {
            grid.AddRow("[bold]slots[/]", $"{p.SlotsInUse} of {p.Capacity} in use, {Units.Bytes(p.LiveBytes)} live, {Units.Bytes(p.MemoryBytes)} of shared memory");
            grid.AddRow("[bold]processes[/]", $"{p.AttachedProcesses} attached" + (p.DeadProcesses > 0 ? $", [red]{p.DeadProcesses} dead[/] (`xmem gc` reclaims their references)" : ""));
            grid.AddRow("[bold]persistent[/]", p.Persistent ? "yes" : "no");
            grid.AddRow("[bold]mode[/]", "0" + Convert.ToString(p.Mode, 8));
            grid.AddRow("[bold]instance[/]", p.InstanceId.ToString("x16", CultureInfo.InvariantCulture));
            grid.AddRow("[bold]counters[/]", $"{p.Acquires} acquires, {p.AcquireWaits} waited for a free slot, {p.Recoveries} dead processes recovered, {p.OrphansRemoved} orphaned segments removed");
            grid.AddRow("[bold]created[/]", p.Created is { } c ? $"{c.ToLocalTime():yyyy-MM-dd HH:mm:ss} by pid {p.CreatorPid} ({Units.Age(c)} ago)" : $"by pid {p.CreatorPid}");
        }

        AnsiConsole.Write(grid);
        if (p.Capacity == 0)
        {
            return ExitCodes.Ok;
        }

        AnsiConsole.WriteLine();
        if (d.Slots.Count == 0)
        {
            AnsiConsole.MarkupLine(all ? "[grey]no slots[/]" : "[grey]every slot is free and keeps no memory (--all lists them)[/]");
        }
        else
        {
            Table slots = Tables.Create("SLOT", "STATE", "SIZE", "MEMORY", "COUNT", "GEN", "HELD BY (pid×refs)", "IN FLIGHT", "LOCKED BY");
            foreach (SlotInfo s in d.Slots)
            {
                string holders = s.Holders.Count == 0 ? "-" : string.Join(", ", s.Holders.Select(h => h.Alive ? $"{h.Pid}×{h.Count}" : $"[red]{h.Pid}×{h.Count} (dead)[/]"));
                slots.AddRow(
                    s.Index.ToString(CultureInfo.InvariantCulture),
                    SlotState(s),
                    s.State == Inspection.SlotState.Live ? Units.Bytes(s.Size) : "-",
                    s.MemoryBytes > 0 ? Units.Bytes(s.MemoryBytes) : "-",
                    s.Count.ToString(CultureInfo.InvariantCulture),
                    s.Generation.ToString(CultureInfo.InvariantCulture),
                    holders,
                    s.InFlight.ToString(CultureInfo.InvariantCulture),
                    s.LockedByEntry is { } e ? $"entry {e}" : "-");
            }

            AnsiConsole.Write(slots);
            foreach (SlotInfo s in d.Slots)
            {
                if (s.Problem is not null)
                {
                    AnsiConsole.MarkupLine($"[yellow]slot {s.Index}:[/] {Markup.Escape(s.Problem)}");
                }
            }
        }

        AnsiConsole.WriteLine();
        Table procs = Tables.Create("ENTRY", "PID", "COMMAND", "ALIVE", "REFS", "WAITING");
        foreach (ProcessEntryInfo e in d.Processes)
        {
            procs.AddRow(
                e.Entry.ToString(CultureInfo.InvariantCulture),
                e.Pid.ToString(CultureInfo.InvariantCulture),
                Markup.Escape(e.Command),
                e.Alive ? (e.State == "active" ? "[green]yes[/]" : "yes (attaching)") : "[red]no (dead)[/]",
                e.References.ToString(CultureInfo.InvariantCulture),
                e.Waiters.ToString(CultureInfo.InvariantCulture));
        }

        AnsiConsole.Write(procs);
        if (d.Channels.Count > 0)
        {
            AnsiConsole.WriteLine();
            AnsiConsole.Write(ChannelTable(d.Channels));
        }

        return ExitCodes.Ok;
    }

    /// <summary>The per-channel figures of <c>xmem top</c> as totals (rates need two readings: <c>xmem top</c>).</summary>
    private static Table ChannelTable(IReadOnlyList<ChannelInfo> channels)
    {
        Table t = Tables.Create("CHANNEL", "MODE", "DEPTH", "SENT", "RECEIVED", "BLOCKED SEND", "BLOCKED RECV", "SEND WAITS", "RECV WAITS", "SENDERS WAITED");
        foreach (ChannelInfo c in channels)
        {
            if (c.Problem is not null)
            {
                t.AddRow(Markup.Escape(c.Name), $"[red]{Markup.Escape(c.Problem)}[/]", "", "", "", "", "", "", "", "");
                continue;
            }

            bool full = c.Capacity > 0 && c.Depth >= c.Capacity;
            t.AddRow(
                Markup.Escape(c.Name),
                c.Mode == "fanOut" ? $"fan-out×{c.Subscribers}" : "queue",
                full ? $"[yellow]{c.Depth}/{c.Capacity}[/]" : $"{c.Depth}/{c.Capacity}",
                c.Sent.ToString(CultureInfo.InvariantCulture),
                c.Received.ToString(CultureInfo.InvariantCulture),
                c.BlockedSenders.ToString(CultureInfo.InvariantCulture),
                c.BlockedReceivers.ToString(CultureInfo.InvariantCulture),
                c.SendWaits.ToString(CultureInfo.InvariantCulture),
                c.ReceiveWaits.ToString(CultureInfo.InvariantCulture),
                $"{c.SendBlockedNs / 1e9:0.###} s");
        }

        return t;
    }

    private static string SlotState(SlotInfo s) => s.State switch
    {
        Inspection.SlotState.Live => "[green]live[/]",
        Inspection.SlotState.Free => "free",
        Inspection.SlotState.Acquiring => "acquiring",
        _ => "[red]invalid[/]",
    };
}
