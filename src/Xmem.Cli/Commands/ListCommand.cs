using System.CommandLine;
using Spectre.Console;
using Xmem.Cli.Output;
using Xmem.Inspection;

namespace Xmem.Cli.Commands;

/// <summary><c>xmem ls --json</c>: the pools and the orphaned segments in the shared-memory directory.</summary>
internal sealed record LsReport(string Directory, IReadOnlyList<PoolSummary> Pools, IReadOnlyList<OrphanSegment> Orphans);

/// <summary><c>xmem ls</c>: the pools on this machine.</summary>
internal static class ListCommand
{
    internal static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var command = new Command("ls", "List the pools on this machine: capacity, slots in use, memory, attached processes, live or stale") { json };
        command.SetAction(r => Run(r.GetValue(json)));
        return command;
    }

    private static int Run(bool json)
    {
        IReadOnlyList<PoolSummary> pools = PoolInspector.ListPools();
        IReadOnlyList<OrphanSegment> orphans = PoolInspector.FindOrphanSegments();
        if (json)
        {
            CommonOptions.WriteJson(new LsReport(SharedMemoryDirectory.Path, pools, orphans), CliJsonContext.Default.LsReport);
            return ExitCodes.Ok;
        }

        if (pools.Count == 0)
        {
            AnsiConsole.MarkupLine($"[grey]no xmem pools in {Markup.Escape(SharedMemoryDirectory.Path)}[/]");
        }
        else
        {
            Table table = Tables.Create("NAME", "STATUS", "SLOTS USED", "LIVE", "MEMORY", "PROCS", "PERSISTENT", "AGE");
            foreach (PoolSummary p in pools)
            {
                string procs = p.DeadProcesses > 0 ? $"{p.AttachedProcesses} [red]+{p.DeadProcesses} dead[/]" : $"{p.AttachedProcesses}";
                table.AddRow(
                    Markup.Escape(p.Name),
                    Tables.Status(p.Status),
                    p.Capacity > 0 ? $"{p.SlotsInUse}/{p.Capacity}" : "-",
                    p.Capacity > 0 ? Units.Bytes(p.LiveBytes) : "-",
                    p.Capacity > 0 ? Units.Bytes(p.MemoryBytes) : "-",
                    p.Capacity > 0 ? procs : "-",
                    p.Persistent ? "yes" : "no",
                    Units.Age(p.Created));
            }

            AnsiConsole.Write(table);
            foreach (PoolSummary p in pools)
            {
                if (p.Problem is not null)
                {
                    AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(p.Name)}:[/] {Markup.Escape(p.Problem)}");
                }
            }
        }

        if (orphans.Count > 0)
        {
            long bytes = orphans.Sum(o => o.Bytes);
            AnsiConsole.MarkupLine($"[yellow]{orphans.Count} orphaned segment{(orphans.Count == 1 ? "" : "s")} ({Units.Bytes(bytes)}) of removed pools: `xmem gc` removes them.[/]");
        }

        return ExitCodes.Ok;
    }
}
