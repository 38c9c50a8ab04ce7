using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;

namespace Xmem.Tests.Infrastructure;

/// <summary>
/// A running Xmem.TestChild process (a real process, not a thread). Every wait has a watchdog: a child that does not
/// answer in time fails the test with what it wrote on stderr, never hangs it. Dispose kills it if still running.
/// </summary>
internal sealed class TestChild : IDisposable
{
    /// <summary>How long any single answer may take. Generous: the machine is small and shared.</summary>
    public static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(60);

    /// <summary>Children started and not yet disposed (the suite-end check kills and reports any left running).</summary>
    private static readonly ConcurrentDictionary<TestChild, byte> s_live = new();

    private readonly Process _process;
    private readonly BlockingCollection<string?> _lines = new();
    private readonly StringBuilder _stderr = new();
    private readonly string _description;

    private TestChild(Process process, string description)
    {
        _process = process;
        _description = description;
    }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Starts <c>dotnet Xmem.TestChild.dll command args...</c>, as <paramref name="runAsUser"/> (through
    /// runuser, with primary group <paramref name="runAsGroup"/>) when given, with the test host's environment changed
    /// by <paramref name="environment"/> (a null value removes the variable).</summary>
    public static TestChild Start(string command, IEnumerable<string> args, string? runAsUser = null, string? runAsGroup = null, IReadOnlyDictionary<string, string?>? environment = null)
    {
        string dll = BuildPaths.TestChildDll;
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"the test child is not built: {dll} (build the solution, or tests/Xmem.TestChild, with the same configuration).", dll);
        }

        var psi = new ProcessStartInfo
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (runAsUser is null)
        {
            psi.FileName = BuildPaths.DotnetHost;
        }
        else
        {
            // runuser forks and waits for the program, so kill the whole tree when killing such a child.
            psi.FileName = "runuser";
            psi.ArgumentList.Add("-u");
            psi.ArgumentList.Add(runAsUser);
            if (runAsGroup is not null)
            {
                psi.ArgumentList.Add("-g");
                psi.ArgumentList.Add(runAsGroup);
            }

            psi.ArgumentList.Add("--");
            psi.ArgumentList.Add(BuildPaths.DotnetHost);
        }

        psi.ArgumentList.Add(dll);
        psi.ArgumentList.Add(command);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        // The child must not inherit the test host's diagnostics settings that would make it wait for a debugger.
        psi.Environment.Remove("DOTNET_DiagnosticPorts");
        foreach ((string key, string? value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                psi.Environment.Remove(key);
            }
            else
            {
                psi.Environment[key] = value;
            }
        }

        var process = new Process { StartInfo = psi };
        string description = $"test child '{command} {string.Join(' ', args)}'" + (runAsUser is null ? "" : $" as {runAsUser}");
        var child = new TestChild(process, description);
        process.OutputDataReceived += (_, e) => child.AddLine(e.Data); // null: end of stream
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (child._stderr)
                {
                    child._stderr.AppendLine(e.Data);
                }
            }
        };
        process.Start();
        s_live[child] = 0;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    public static TestChild Start(string command, params string[] args) => Start(command, (IEnumerable<string>)args);

    /// <summary>What the child wrote on stderr so far.</summary>
    public string StandardError
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>The child's next stdout line; fails the test when none comes within the watchdog or stdout ends.</summary>
    public string ReadLine(TimeSpan? timeout = null)
    {
        TimeSpan t = timeout ?? Watchdog;
        if (!_lines.TryTake(out string? line, t))
        {
            throw new TimeoutException($"{_description} wrote no line within {t.TotalSeconds:0} s (watchdog). stderr:\n{StandardError}");
        }

        if (line is null)
        {
            _lines.Add(null); // keep reporting the end
            _process.WaitForExit(5000);
            string code = _process.HasExited ? _process.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?";
            throw new InvalidOperationException($"{_description} closed stdout (exit code {code}). stderr:\n{StandardError}");
        }

        return line;
    }

    /// <summary>Reads a line and checks it starts with <paramref name="prefix"/>; returns the rest (trimmed).</summary>
    public string Expect(string prefix)
    {
        string line = ReadLine();
        if (!line.StartsWith(prefix, StringComparison.Ordinal))
        {
            throw new Xunit.Sdk.XunitException($"{_description} answered '{line}', expected '{prefix}...'. stderr:\n{StandardError}");
        }

        return line[prefix.Length..].Trim();
    }

    /// <summary>Sends one instruction line.</summary>
    public void Send(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    /// <summary>Sends an instruction and returns the answer.</summary>
    public string Ask(string instruction)
    {
        Send(instruction);
        return ReadLine();
    }

    /// <summary>Sends an instruction whose answer must be <c>ok ...</c>; returns what follows "ok".</summary>
    public string AskOk(string instruction)
    {
        Send(instruction);
        string line = ReadLine();
        if (line != "ok" && !line.StartsWith("ok ", StringComparison.Ordinal))
        {
            throw new Xunit.Sdk.XunitException($"{_description}: '{instruction}' answered '{line}'. stderr:\n{StandardError}");
        }

        return line.Length > 2 ? line[3..] : "";
    }

    /// <summary>Waits for the child to exit and returns its exit code; fails the test after the watchdog.</summary>
    public int WaitForExit(TimeSpan? timeout = null)
    {
        TimeSpan t = timeout ?? Watchdog;
        if (!_process.WaitForExit(t))
        {
            throw new TimeoutException($"{_description} did not exit within {t.TotalSeconds:0} s (watchdog). stderr:\n{StandardError}");
        }

        _process.WaitForExit(); // drains the redirected streams
        return _process.ExitCode;
    }

    /// <summary>Kills the child with SIGKILL (no cleanup of any kind runs in it) and waits until it is gone.</summary>
    public void KillHard()
    {
        _process.Kill(entireProcessTree: false);
        if (!_process.WaitForExit(Watchdog))
        {
            throw new TimeoutException($"{_description} survived SIGKILL for {Watchdog.TotalSeconds:0} s");
        }
    }

    /// <summary>Kills every child that a test started and never disposed; returns their descriptions.</summary>
    public static List<string> KillForgottenChildren()
    {
        var forgotten = new List<string>();
        foreach (TestChild c in s_live.Keys)
        {
            forgotten.Add($"{c._description} (pid {c._process.Id})");
            try
            {
                c._process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }

            c.Dispose();
        }

        return forgotten;
    }

    /// <summary>Queues a stdout line. The reader thread may deliver the last lines after Dispose (a killed child's
    /// grandchild can hold the pipe open past WaitForExit's timeout): those are dropped, never thrown on a
    /// thread-pool thread, where an exception would take the whole test host down.</summary>
    private void AddLine(string? line)
    {
        try
        {
            _lines.Add(line);
        }
        catch (ObjectDisposedException)
        {
        }
        catch (InvalidOperationException)
        {
        }
    }

    public void Dispose()
    {
        s_live.TryRemove(this, out _);
        try
        {
            if (!_process.HasExited)
            {
                try
                {
                    _process.StandardInput.Close();
                }
                catch (IOException)
                {
                }

                if (!_process.WaitForExit(10_000))
                {
                    _process.Kill(entireProcessTree: true);
                    _process.WaitForExit(10_000);
                }
            }
        }
        catch (InvalidOperationException)
        {
        }

        try
        {
            _process.CancelOutputRead();
            _process.CancelErrorRead();
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
        _lines.Dispose();
    }
}
