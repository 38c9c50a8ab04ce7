using System.Diagnostics;
using System.Text.Json;

namespace Xmem.Cli.Demo;

/// <summary>One consumer process: its stdin (the lifeline) and a thread that reads its stdout.</summary>
internal sealed class ConsumerProcess(int index, bool isPython, Process process)
{
    private readonly Lock _stdinLock = new();
    private bool _stopped;
    private volatile ConsumerReport? _report;
    private volatile bool _outputEnded;

    internal int Index { get; } = index;
    internal bool IsPython { get; } = isPython;
    internal Process Process { get; } = process;
    internal ManualResetEventSlim Ready { get; } = new();
    internal ManualResetEventSlim Reported { get; } = new();
    internal ConsumerReport? Report => _report;
    internal List<string> OtherLines { get; } = [];
    internal bool OutputEnded => _outputEnded;

    internal void StartReading()
    {
        var t = new Thread(Read) { IsBackground = true, Name = $"xmem demo consumer {Index} output" };
        t.Start();
    }

    private void Read()
    {
        try
        {
            while (Process.StandardOutput.ReadLine() is { } line)
            {
                if (line == DemoProtocol.ReadyLine)
                {
                    Ready.Set();
                }
                else if (line.StartsWith(DemoProtocol.ResultPrefix, StringComparison.Ordinal))
                {
                    _report = JsonSerializer.Deserialize(line.AsSpan(DemoProtocol.ResultPrefix.Length), DemoJsonContext.Default.ConsumerReport)
                        ?? throw new InvalidDataException("an empty report");
                    Reported.Set();
                }
                else
                {
                    lock (OtherLines)
                    {
                        OtherLines.Add(line);
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or JsonException or InvalidDataException)
        {
            _report ??= new ConsumerReport { Error = $"unreadable output: {e.Message}" };
            Reported.Set();
        }
        finally
        {
            _outputEnded = true;
        }
    }

    /// <summary>Writes the stop line and closes stdin (end of file), once.</summary>
    internal void Stop()
    {
        lock (_stdinLock)
        {
            if (_stopped)
            {
                return;
            }

            _stopped = true;
            try
            {
                Process.StandardInput.WriteLine(DemoProtocol.StopLine);
                Process.StandardInput.Close();
            }
            catch (IOException)
            {
                // it is gone already
            }
        }
    }
}
