using System.Diagnostics;
using System.Text;

namespace Xmem.Tests.Cli;

/// <summary>Runs the built <c>xmem</c> command (src/Xmem.Cli, same configuration as the tests) as a real process, with
/// a watchdog: a command that does not finish in time is killed and fails the test with its output.</summary>
internal static class XmemCli
{
    public static string Dll => Path.Combine(BuildPaths.OutputOf("src/Xmem.Cli"), "Xmem.Cli.dll");

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
    }

    /// <summary>A CLI process started by a test: disposing it kills it, and its children, if it still runs.</summary>
    public sealed class Running(Process process) : IDisposable
    {
        public Process Process { get; } = process;

        public void Dispose()
        {
            if (!Process.HasExited)
            {
                Process.Kill(entireProcessTree: true);
                Process.WaitForExit();
            }

            Process.Dispose();
        }
    }

    /// <summary>Starts <c>dotnet Xmem.Cli.dll args...</c> in the background; its output is drained and dropped.</summary>
    public static Running Start(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        Process p = StartProcess(args, environment);
        p.OutputDataReceived += static (_, _) => { };
        p.ErrorDataReceived += static (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return new Running(p);
    }

    private static Process StartProcess(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        if (!File.Exists(Dll))
        {
            throw new FileNotFoundException($"the CLI is not built: {Dll} (build the solution, or src/Xmem.Cli, with the same configuration as the tests).", Dll);
        }

        var psi = new ProcessStartInfo
        {
            FileName = BuildPaths.DotnetHost,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Dll);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment.Remove("DOTNET_DiagnosticPorts");
        psi.Environment["NO_COLOR"] = "1";
        if (environment is not null)
        {
            foreach ((string key, string value) in environment)
            {
                psi.Environment[key] = value;
            }
        }

        return Process.Start(psi) ?? throw new InvalidOperationException("could not start the CLI");
    }

    /// <summary>Runs the CLI to completion.</summary>
    public static Result Run(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, TimeSpan? watchdog = null)
    {
        using Process p = StartProcess(args, environment);
        p.StandardInput.Close();
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        Task outTask = Task.Run(() => stdout.Append(p.StandardOutput.ReadToEnd()));
        Task errTask = Task.Run(() => stderr.Append(p.StandardError.ReadToEnd()));
        TimeSpan limit = watchdog ?? TestChild.Watchdog;
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            Task.WaitAll([outTask, errTask], TimeSpan.FromSeconds(5));
            throw new TimeoutException($"watchdog: `xmem {string.Join(' ', args)}` did not finish within {limit.TotalSeconds:0} s\n{stdout}\n{stderr}");
        }

        Task.WaitAll([outTask, errTask], TimeSpan.FromSeconds(10));
        return new Result(p.ExitCode, stdout.ToString(), stderr.ToString());
    }

    public static Result Run(params string[] args) => Run(args, null, null);
}
