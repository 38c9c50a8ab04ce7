namespace Xmem;

/// <summary>Where xmem keeps its segments: <c>$XMEM_SHM_DIR</c> when set (a test's small tmpfs, say), else /dev/shm.</summary>
public static class SharedMemoryDirectory
{
    /// <summary>The directory of the segments, read from the environment on each call.</summary>
    public static string Path
    {
        get
        {
            string? dir = Environment.GetEnvironmentVariable("XMEM_SHM_DIR");
            return string.IsNullOrEmpty(dir) ? "/dev/shm" : dir.TrimEnd('/');
        }
    }
}
