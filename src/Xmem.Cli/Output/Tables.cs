using Spectre.Console;
using Xmem.Inspection;

namespace Xmem.Cli.Output;

/// <summary>The CLI's table style.</summary>
internal static class Tables
{
    internal static Table Create(params string[] headers)
    {
        var table = new Table { Border = TableBorder.Simple };
        foreach (string h in headers)
        {
            table.AddColumn(new TableColumn($"[bold]{Markup.Escape(h)}[/]"));
        }

        return table;
    }

    internal static string Status(PoolStatus status) => status switch
    {
        PoolStatus.Live => "[green]live[/]",
        PoolStatus.Stale => "[yellow]stale[/]",
        PoolStatus.Initializing => "initializing",
        PoolStatus.Removing => "removing",
        PoolStatus.Corrupt => "[red]corrupt[/]",
        PoolStatus.Incompatible => "[red]incompatible[/]",
        PoolStatus.Inaccessible => "[grey]no access[/]",
        _ => status.ToString(),
    };

    /// <summary>Makes tables readable when stdout is a file or a pipe, where Spectre would otherwise assume 80 columns.</summary>
    internal static void ConfigureConsole()
    {
        if (Console.IsOutputRedirected)
        {
            AnsiConsole.Profile.Width = 200;
        }
    }
}
