using System.CommandLine;
using Xmem.Cli.Output;
using Xmem.Inspection;

namespace Xmem.Cli.Commands;

/// <summary><c>xmem rm --json</c>: what was removed.</summary>
internal sealed record RmReport(IReadOnlyList<RemovedPool> Removed);

/// <summary>One pool removed by <c>xmem rm</c>.</summary>
internal sealed record RemovedPool(string Name, long MemoryBytes, int AttachedProcesses);

/// <summary><c>xmem rm NAME...</c>: removes pools and all their segments.</summary>
internal static class RemoveCommand
{
    internal static Command Create()
    {
        var names = new Argument<string[]>("name") { Description = "The pools to remove", Arity = ArgumentArity.OneOrMore };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("rm", "Remove pools and all their segments (attached processes keep their mappings until they detach)") { names, json };
        command.SetAction(r => Run(r.GetValue(names)!, r.GetValue(json)));
        return command;
    }

    private static int Run(string[] names, bool json)
    {
        var removed = new List<RemovedPool>();
        foreach (string name in names)
        {
            PoolSummary p = PoolInspector.Summarize(name); // throws PoolNotFoundException with what to do
            if (!BufferPool.Remove(name))
            {
                throw new PoolNotFoundException($"pool '{p.Name}' was removed by someone else meanwhile.", p.Path);
            }

            removed.Add(new RemovedPool(p.Name, p.MemoryBytes, p.AttachedProcesses));
            if (!json)
            {
                string attached = p.AttachedProcesses > 0
                    ? $"; {p.AttachedProcesses} attached process{(p.AttachedProcesses == 1 ? "" : "es")} keep{(p.AttachedProcesses == 1 ? "s" : "")} its memory until detaching"
                    : "";
                Console.WriteLine($"removed pool '{p.Name}' ({Units.Bytes(p.MemoryBytes)}){attached}");
            }
        }

        if (json)
        {
            CommonOptions.WriteJson(new RmReport(removed), CliJsonContext.Default.RmReport);
        }

        return ExitCodes.Ok;
    }
}
