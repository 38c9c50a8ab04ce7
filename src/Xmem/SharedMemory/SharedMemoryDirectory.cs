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

    /// <summary>The names of the files in <see cref="Path"/> that start with <see cref="SharedMemory.SegmentNames.Prefix"/>
    /// (read them with <see cref="SharedMemory.SegmentNames"/>); empty when the directory does not exist.</summary>
    internal static HashSet<string> ListObjects()
    {
        var files = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            foreach (string path in Directory.EnumerateFiles(Path, SharedMemory.SegmentNames.Prefix + "*"))
            {
                files.Add(System.IO.Path.GetFileName(path));
            }
        }
        catch (DirectoryNotFoundException)
        {
        }

        return files;
    }
}
