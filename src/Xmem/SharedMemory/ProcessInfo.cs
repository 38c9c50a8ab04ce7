namespace Xmem.SharedMemory;

/// <summary>Facts about the current process recorded in its process-table entry (for `xmem stat`).</summary>
internal static class ProcessInfo
{
    /// <summary>Start time of this process in clock ticks since boot (/proc/self/stat field 22); 0 if unreadable.</summary>
    private static ulong s_ownStartTime;
    private static string? s_ownComm;
    private static int s_ownPid;

    /// <summary>This process's id, read once (and again after a fork: Environment.ProcessId would keep the parent's).</summary>
    internal static int OwnPid => s_ownPid != 0 ? s_ownPid : s_ownPid = Interop.Libc.GetPid();

    /// <summary>This process's start time, read once.</summary>
    internal static ulong OwnStartTime => s_ownStartTime != 0 ? s_ownStartTime : s_ownStartTime = StartTime(OwnPid);

    /// <summary>This process's command name, read once.</summary>
    internal static string OwnComm => s_ownComm ??= Comm(OwnPid);

    /// <summary>In a child made by fork(): forgets the parent's facts, to be read again for this process.</summary>
    internal static void ResetAfterFork()
    {
        s_ownPid = 0;
        s_ownStartTime = 0;
        s_ownComm = null;
    }

    internal static ulong StartTime(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            string[] fields = stat[(close + 2)..].Split(' ');
            return ulong.Parse(fields[19], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
        catch (FormatException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }

    /// <summary>The process's command name (/proc/self/comm), at most 15 bytes.</summary>
    internal static string Comm(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").Trim();
        }
        catch (IOException)
        {
            return "?";
        }
        catch (UnauthorizedAccessException)
        {
            return "?";
        }
    }
}
