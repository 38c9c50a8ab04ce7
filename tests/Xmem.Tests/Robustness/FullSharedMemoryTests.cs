using System.Diagnostics;
using Xunit.Abstractions;

namespace Xmem.Tests.Robustness;

/// <summary>
/// A full shared-memory file system (docs/layout.md, "Acquire": pages are reserved when a data segment is made, so a
/// full file system fails the acquire with an out-of-space error, never a SIGBUS on first touch). The pool lives on a
/// 16 MiB tmpfs mounted for the test; only the children see it (XMEM_SHM_DIR in their own environment).
/// (Pool/AcquireTests covers one buffer larger than the whole directory; this fills it with many.)
/// </summary>
public sealed class FullSharedMemoryTests(ITestOutputHelper output) : PoolTest
{
    [SmallTmpfsFact]
    public void Filling_the_shared_memory_file_system_fails_with_out_of_memory_and_the_pool_stays_usable()
    {
        string name = NewName("fullshm");
        using var tmpfs = SmallTmpfs.Mount();
        string dir = tmpfs.Path;

        using TestChild filler = TestChild.Start("robust-fillshm", dir, name);
        string full = filler.Expect("full");
        Assert.True(full.Contains("error=Xmem.XmemOutOfMemoryException", StringComparison.Ordinal),
            $"filling the file system must end with XmemOutOfMemoryException: '{full}'. stderr:\n{filler.StandardError}");
        Assert.DoesNotContain("acquired=0 ", full, StringComparison.Ordinal);

        // Another process, meanwhile: attaching needs a page for its holdings; either it gets none (out of memory)
        // or its first acquire does — never a signal.
        string answer;
        using (TestChild probe = TestChild.Start("robust-shmprobe", dir, name))
        {
            answer = probe.ReadLine();
            int exit = probe.WaitForExit();
            Assert.True(exit == 0, $"the probe exited {exit} (a signal is 128+N): '{answer}'. stderr:\n{probe.StandardError}");
            Assert.True(
                answer is "open=Xmem.XmemOutOfMemoryException acquire=-" or "open=ok acquire=Xmem.XmemOutOfMemoryException",
                $"a process attaching to a pool on a full file system must get XmemOutOfMemoryException: '{answer}'");
        }

        filler.Send("go");
        string usable = filler.Expect("usable");
        Assert.Matches(@"^reattach=(ok|Xmem\.XmemOutOfMemoryException) reacquired=\d+ big=ok$", usable);
        _ = filler.Expect("done");
        int code = filler.WaitForExit();
        Assert.True(code == 0, $"the filler exited {code} (a signal is 128+N). stderr:\n{filler.StandardError}");
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir));
        output.WriteLine(RobustnessFigures.Record("fullshm", ("filled", full.Replace(' ', ',')), ("probe", answer.Replace(' ', ',')), ("after", usable.Replace(' ', ','))));
    }
}

/// <summary>A 16 MiB tmpfs mounted on a fresh directory (root only), unmounted and removed on Dispose.</summary>
internal sealed class SmallTmpfs : IDisposable
{
    private SmallTmpfs(string path) => Path = path;

    public string Path { get; }

    public static SmallTmpfs Mount()
    {
        string dir = Directory.CreateTempSubdirectory("xmem-fullshm-").FullName;
        (int rc, string err) = Run("mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", dir);
        if (rc != 0)
        {
            Directory.Delete(dir);
            throw new InvalidOperationException($"mount -t tmpfs failed (exit {rc}): {err}");
        }

        return new SmallTmpfs(dir);
    }

    public void Dispose()
    {
        (int rc, _) = Run("umount", Path);
        if (rc != 0)
        {
            _ = Run("umount", "-l", Path); // a child still holding a file: detach it now, freed when it lets go
        }

        try
        {
            Directory.Delete(Path);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Null when a small tmpfs can be mounted here, else why not.</summary>
    public static string? WhyNot()
    {
        if (!Users.IsRoot)
        {
            return "needs root: it mounts a 16 MiB tmpfs to fill (mount -t tmpfs); run scripts/test.sh as root.";
        }

        try
        {
            using SmallTmpfs probe = Mount();
            return null;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or System.ComponentModel.Win32Exception)
        {
            return $"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {e.Message}";
        }
    }

    internal static (int Code, string Error) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using Process p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        _ = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(30_000))
        {
            p.Kill();
            return (-1, $"{file} did not finish within 30 s");
        }

        return (p.ExitCode, err.Trim());
    }
}

/// <summary>A fact that mounts a small tmpfs: skipped, with the reason, when that cannot be done here.</summary>
public sealed class SmallTmpfsFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> s_whyNot = new(SmallTmpfs.WhyNot);

    public SmallTmpfsFactAttribute()
    {
        if (s_whyNot.Value is { } reason)
        {
            Skip = reason;
        }
    }
}
