using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using Xmem.Layout;

namespace Xmem.Tests.Infrastructure;

/// <summary>
/// The suite's view of the shared-memory directory: unique pool names, the entries each pool has there, and raw reads
/// of a control segment (as another process would see it, through the file rather than the pool's own mapping).
/// </summary>
internal static class Shm
{
    private static int s_counter;

    /// <summary>Every pool this test process makes is named with this prefix: "xmt" + the process id + "-".</summary>
    public static readonly string SuitePrefix = $"xmt{Environment.ProcessId}-";

    public static string Directory => SharedMemoryDirectory.Path;

    /// <summary>A pool name no other test (of this or any other run) uses: suite prefix, counter, a short tag.</summary>
    public static string UniqueName(string tag = "p")
    {
        string safe = new(tag.Where(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_').Take(40).ToArray());
        return $"{SuitePrefix}{Interlocked.Increment(ref s_counter)}-{safe}";
    }

    /// <summary>The file names (not paths) of every segment of the pool <paramref name="bare"/>: its control segment
    /// and the segments of any of its instances.</summary>
    public static string[] EntriesOf(string bare)
    {
        string control = LayoutConstants.ObjectPrefix + bare;
        return System.IO.Directory.EnumerateFiles(Directory, control + "*")
            .Select(p => Path.GetFileName(p)!)
            .Where(f => f == control || f.StartsWith(control + ".", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToArray();
    }

    /// <summary>The data segments of the pool <paramref name="bare"/> (one per slot with kept memory).</summary>
    public static string[] DataSegmentsOf(string bare) =>
        EntriesOf(bare).Where(f => System.Text.RegularExpressions.Regex.IsMatch(f, @"\.[0-9a-f]{16}\.s\d+\.g\d+$")).ToArray();

    /// <summary>Every entry this test process's pools left.</summary>
    public static string[] SuiteEntries() =>
        System.IO.Directory.EnumerateFiles(Directory, LayoutConstants.ObjectPrefix + SuitePrefix + "*")
            .Select(p => Path.GetFileName(p)!).Order(StringComparer.Ordinal).ToArray();

    /// <summary>Removes whatever the pool left (after a failed test), so that one failure does not cascade.</summary>
    public static void ForceRemove(string bare)
    {
        try
        {
            _ = BufferPool.Remove(bare);
        }
        catch (Exception)
        {
            // A forged or damaged segment may defeat Remove; the files go below anyway.
        }

        foreach (string f in EntriesOf(bare))
        {
            File.Delete(Path.Combine(Directory, f));
        }
    }

    public static string ControlPath(string bare) => Path.Combine(Directory, LayoutConstants.ObjectPrefix + bare);

    /// <summary>The permission bits of the pool's control segment.</summary>
    public static UnixFileMode ModeOf(string bare) => File.GetUnixFileMode(ControlPath(bare)) & (UnixFileMode)0x1FF;

    /// <summary>Reads a 32- or 64-bit field of the control segment through the file (pread sees the shared pages).</summary>
    public static ulong ReadControl(string bare, long offset, int bytes)
    {
        using SafeFileHandle h = File.OpenHandle(ControlPath(bare), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        Span<byte> buf = stackalloc byte[8];
        int n = RandomAccess.Read(h, buf[..bytes], offset);
        if (n != bytes)
        {
            throw new IOException($"short read of {bare} at {offset}");
        }

        return bytes == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(buf) : BinaryPrimitives.ReadUInt64LittleEndian(buf);
    }

    /// <summary>The pool-wide count of threads waiting for a free slot (header field Waiters).</summary>
    public static int Waiters(string bare)
    {
        // Each process entry's own count of waiting threads (docs/layout.md, ProcessEntry.Waiters).
        int total = 0;
        for (int i = 0; i < LayoutConstants.MaxProcesses; i++)
        {
            total += (int)(uint)ReadControl(bare, LayoutConstants.ProcessTableOffset + ((long)i * LayoutConstants.ProcessEntrySize) + 16, 4);
        }

        return total;
    }

    /// <summary>Slot <paramref name="s"/>'s word (state, count, lock owner, generation).</summary>
    public static ulong SlotWordOf(string bare, int capacity, int s) =>
        ReadControl(bare, LayoutConstants.SlotTableOffset(capacity) + ((long)s * LayoutConstants.SlotSize), 8);

    /// <summary>Waits until <paramref name="condition"/> holds; fails after the watchdog (never a timing assert).</summary>
    public static void WaitUntil(Func<bool> condition, string what, TimeSpan? watchdog = null)
    {
        TimeSpan limit = watchdog ?? TestChild.Watchdog;
        long end = Environment.TickCount64 + (long)limit.TotalMilliseconds;
        while (!condition())
        {
            if (Environment.TickCount64 > end)
            {
                throw new TimeoutException($"watchdog: {what} did not happen within {limit.TotalSeconds:0} s");
            }

            Thread.Sleep(5);
        }
    }
}
