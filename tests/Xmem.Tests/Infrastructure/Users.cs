using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Xmem.Tests.Infrastructure;

/// <summary>The other user that permission tests run a child as (created by scripts/test.sh, or here when root).</summary>
internal static partial class Users
{
    public const string OtherUser = "xmemtest";

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();

    public static bool IsRoot => GetEuid() == 0;

    /// <summary>Makes sure <see cref="OtherUser"/> exists (useradd, root only).</summary>
    public static void EnsureOtherUser()
    {
        if (Run("id", "-u", OtherUser) == 0)
        {
            return;
        }

        int rc = Run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OtherUser);
        if (rc != 0 && Run("id", "-u", OtherUser) != 0)
        {
            throw new InvalidOperationException($"could not create the test user {OtherUser} (useradd exit code {rc}); scripts/test.sh creates it when run as root.");
        }
    }

    private static int Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using Process p = Process.Start(psi)!;
        p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        if (!p.WaitForExit(60_000))
        {
            p.Kill();
            return -1;
        }

        return p.ExitCode;
    }
}

/// <summary>A fact that needs root (to run a child as another user); skipped with the reason otherwise.</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (!Users.IsRoot)
        {
            Skip = "needs root: it runs a test child as another user (xmemtest) to check the pool's file permissions; run scripts/test.sh as root.";
        }
    }
}
