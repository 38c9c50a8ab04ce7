using System.CommandLine;
using Xmem.Cli.Output;
using Xmem.Inspection;

namespace Xmem.Cli.Commands;

/// <summary>One thing <c>xmem gc</c> did (or, with --dry-run, would do).</summary>
/// <param name="Pool">The pool concerned.</param>
/// <param name="Action">"removed-stale-pool", "removed-corrupt-pool", "recovered-dead-processes", "removed-orphan-segment" or "skipped".</param>
/// <param name="Detail">A sentence for people.</param>
/// <param name="Bytes">Shared memory given back.</param>
internal sealed record GcAction(string Pool, string Action, string Detail, long Bytes);

/// <summary><c>xmem gc --json</c>.</summary>
internal sealed record GcReport(bool DryRun, IReadOnlyList<GcAction> Actions, long BytesFreed);

/// <summary><c>xmem gc</c>: removes what crashed processes left behind.</summary>
internal static class GcCommand
{
    /// <summary>A corrupt control segment younger than this may be a pool that is being created right now.</summary>
    private static readonly TimeSpan CorruptMinAge = TimeSpan.FromSeconds(5);

    internal static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var dryRun = new Option<bool>("--dry-run", "-n") { Description = "Only say what would be done" };
        var command = new Command("gc", "Remove stale pools (no live process, not persistent) and orphaned segments, and reclaim the references of dead processes in pools still in use") { json, dryRun };
        command.SetAction(r => Run(r.GetValue(json), r.GetValue(dryRun)));
        return command;
    }

    private static int Run(bool json, bool dryRun)
    {
        var actions = new List<GcAction>();
        foreach (PoolSummary p in PoolInspector.ListPools())
        {
            GcAction? a = p.Status switch
            {
                PoolStatus.Stale when !p.Persistent => RemovePool(p, "removed-stale-pool", "no live process is attached", dryRun),
                PoolStatus.Corrupt when DateTime.UtcNow - Created(p.Path) >= CorruptMinAge => RemovePool(p, "removed-corrupt-pool", p.Problem ?? "corrupt", dryRun),
                PoolStatus.Live or PoolStatus.Stale when p.DeadProcesses > 0 => Recover(p, dryRun),
                _ => null,
            };
            if (a is not null)
            {
                actions.Add(a);
            }
        }

        foreach (OrphanSegment o in PoolInspector.FindOrphanSegments())
        {
            string? why = dryRun ? null : TryDelete(o.Path);
            actions.Add(why is null
                ? new GcAction(o.PoolName, "removed-orphan-segment", $"segment {o.Name} belongs to no existing pool", o.Bytes)
                : new GcAction(o.PoolName, "skipped", $"could not delete orphaned segment {o.Name}: {why}", 0));
        }

        long freed = actions.Sum(a => a.Bytes);
        if (json)
        {
            CommonOptions.WriteJson(new GcReport(dryRun, actions, freed), CliJsonContext.Default.GcReport);
            return ExitCodes.Ok;
        }

        string would = dryRun ? "would be " : "";
        foreach (GcAction a in actions)
        {
            string verb = a.Action switch
            {
                "removed-stale-pool" => $"{(dryRun ? "would remove" : "removed")} stale pool '{a.Pool}'",
                "removed-corrupt-pool" => $"{(dryRun ? "would remove" : "removed")} corrupt pool '{a.Pool}'",
                "recovered-dead-processes" => $"{(dryRun ? "would recover" : "recovered")} pool '{a.Pool}'",
                "removed-orphan-segment" => $"{(dryRun ? "would remove" : "removed")} orphan of '{a.Pool}'",
                _ => $"skipped '{a.Pool}'",
            };
            Console.WriteLine($"{verb}: {a.Detail}{(a.Bytes > 0 ? $" ({Units.Bytes(a.Bytes)})" : "")}");
        }

        if (actions.Count == 0)
        {
            Console.WriteLine("gc: nothing to collect");
        }
        else
        {
            int pools = actions.Count(a => a.Action is "removed-stale-pool" or "removed-corrupt-pool");
            int recovered = actions.Count(a => a.Action == "recovered-dead-processes");
            int orphans = actions.Count(a => a.Action == "removed-orphan-segment");
            Console.WriteLine($"gc: {pools} pool(s) {would}removed, {recovered} pool(s) {would}recovered, {orphans} orphaned segment(s) {would}removed; {Units.Bytes(freed)} of shared memory {would}given back");
        }
        return ExitCodes.Ok;
    }

    private static GcAction RemovePool(PoolSummary p, string action, string why, bool dryRun)
    {
        if (dryRun)
        {
            return new GcAction(p.Name, action, why, p.MemoryBytes);
        }

        // TryRemoveStale decides again under the pool's removal lock: a process may have attached meanwhile.
        return BufferPool.RemoveIfStale(p.Name)
            ? new GcAction(p.Name, action, why, p.MemoryBytes)
            : new GcAction(p.Name, "skipped", "a process attached to it meanwhile (or it is persistent)", 0);
    }

    private static GcAction Recover(PoolSummary p, bool dryRun)
    {
        string what = $"{p.DeadProcesses} dead process{(p.DeadProcesses == 1 ? "" : "es")}";
        if (dryRun)
        {
            return new GcAction(p.Name, "recovered-dead-processes", $"{what} would have their references released", 0);
        }

        // Attaching recovers the entry it takes over; RecoverDeadProcesses the others. Detaching leaves a live pool alone
        // (and removes a non-persistent one whose processes are all gone).
        using (BufferPool pool = BufferPool.Open(p.Name))
        {
            _ = pool.RecoverDeadProcesses();
        }

        PoolSummary after;
        try
        {
            after = PoolInspector.Summarize(p.Name);
        }
        catch (PoolNotFoundException)
        {
            return new GcAction(p.Name, "removed-stale-pool", $"{what} recovered; no live process was left", p.MemoryBytes);
        }

        long freed = Math.Max(0, p.MemoryBytes - after.MemoryBytes);
        int recovered = p.DeadProcesses - after.DeadProcesses;
        return new GcAction(p.Name, "recovered-dead-processes", $"{recovered} of {what} recovered, {p.SlotsInUse - after.SlotsInUse} slot(s) freed", freed);
    }

    private static DateTime Created(string path)
    {
        try
        {
            return File.GetLastWriteTimeUtc(path);
        }
        catch (IOException)
        {
            return DateTime.UtcNow;
        }
    }

    /// <summary>Deletes a file; null when done, else why not (and what to do).</summary>
    private static string? TryDelete(string path)
    {
        try
        {
            File.Delete(path);
            return null;
        }
        catch (IOException e)
        {
            return e.Message;
        }
        catch (UnauthorizedAccessException)
        {
            // A sticky directory (/dev/shm) lets only a file's owner or root remove it: another member made it.
            return "permission denied (it belongs to another user); run `xmem gc` as its owner or as root";
        }
    }
}
