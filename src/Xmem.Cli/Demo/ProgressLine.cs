using System.Diagnostics;

namespace Xmem.Cli.Demo;

/// <summary>The live progress line of the demo (only on a terminal), redrawn at most ten times a second.</summary>
internal sealed class ProgressLine(bool enabled)
{
    private long _lastDraw;
    private int _width;

    internal void Update(long done, long total, long startTimestamp)
    {
        long now = Stopwatch.GetTimestamp();
        if (!enabled || (done != total && Stopwatch.GetElapsedTime(_lastDraw, now).TotalMilliseconds < 100))
        {
            return;
        }

        _lastDraw = now;
        double seconds = Stopwatch.GetElapsedTime(startTimestamp, now).TotalSeconds;
        double fps = seconds > 0 ? done / seconds : 0;
        int barWidth = 24;
        int filled = (int)(barWidth * done / Math.Max(1, total));
        string line = $"  [{new string('#', filled)}{new string('.', barWidth - filled)}] frame {done}/{total}  {fps:N0} frames/s";
        _width = Math.Max(_width, line.Length);
        Console.Write("\r" + line.PadRight(_width));
    }

    internal void Clear()
    {
        if (enabled && _width > 0)
        {
            Console.Write("\r" + new string(' ', _width) + "\r");
        }
    }
}
