using System.Diagnostics;

namespace Xmem.Cli.Demo;

/// <summary>Starts this very program again as a child process (for the demo's hidden subcommands), whether it runs
/// as an apphost or NativeAOT binary (<c>xmem ...</c>) or through the muxer (<c>dotnet xmem.dll ...</c>).</summary>
internal static class SelfProcess
{
    /// <summary>A start info for <c>xmem</c> with <paramref name="args"/>; stdin and stdout piped, stderr shared.</summary>
    internal static ProcessStartInfo StartInfo(IEnumerable<string> args)
    {
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell this program's path (Environment.ProcessPath is null) to start the demo's consumers.");
        var psi = new ProcessStartInfo
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = false,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(exe).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            // Run by the muxer: start the same assembly the same way. AppContext.BaseDirectory (not
            // Assembly.Location) stays valid under single-file and trimming.
            psi.FileName = exe;
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, typeof(SelfProcess).Assembly.GetName().Name + ".dll"));
        }
        else
        {
            psi.FileName = exe;
        }

        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        return psi;
    }
}
