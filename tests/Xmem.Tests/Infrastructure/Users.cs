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

    /// <summary>The pools' group in the permission tests; <see cref="MemberA"/> and <see cref="MemberB"/> are in it.</summary>
    public const string PoolGroup = "xmemtest-pool";

    /// <summary>A member of <see cref="PoolGroup"/> whose primary group is its own (xmemtest-a).</summary>
    public const string MemberA = "xmemtest-a";

    /// <summary>A member of <see cref="PoolGroup"/> whose primary group is its own (xmemtest-b), not A's.</summary>
    public const string MemberB = "xmemtest-b";

    /// <summary>A user with no access to the pools: in none of their groups.</summary>
    public const string Outsider = "xmemtest-out";

    /// <summary>Makes sure the users and group above exist (scripts/create-test-users.sh, root only; idempotent).</summary>
    public static void EnsurePermissionUsers()
    {
        string script = Path.Combine(BuildPaths.RepoRoot, "scripts", "create-test-users.sh");
        int rc = Run("bash", script);
        if (rc != 0 || Run("id", "-u", Outsider) != 0)
        {
            throw new InvalidOperationException($"could not create the test users (scripts/create-test-users.sh exit code {rc}); run it as root.");
        }
    }

    /// <summary>The numeric id of a group (getent).</summary>
    public static uint GroupId(string group) => uint.Parse(Output("getent", "group", group).Split(':')[2], System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The numeric id of a user.</summary>
    public static uint UserId(string user) => uint.Parse(Output("id", "-u", user).Trim(), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Creates an empty file as <paramref name="user"/> (runuser touch): the file gets that user's owner,
    /// primary group and umask, exactly as one the user made by hand.</summary>
    public static void TouchAs(string user, string path)
    {
        int rc = Run("runuser", "-u", user, "--", "touch", path);
        if (rc != 0)
        {
            throw new InvalidOperationException($"runuser -u {user} -- touch {path} failed with exit code {rc}");
        }
    }

    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct StatX
    {
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public uint Gid;
        [FieldOffset(28)] public ushort Mode;
    }

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, out StatX buf);

    /// <summary>Owner, group and permission bits (07777) of a file, without following a link (statx).</summary>
    public static (uint Uid, uint Gid, uint Mode) StatOf(string path)
    {
        if (Statx(-100 /* AT_FDCWD */, path, 0x100 /* AT_SYMLINK_NOFOLLOW */, 0x1B /* type, mode, uid, gid */, out StatX st) != 0)
        {
            throw new IOException($"statx {path}: errno {Marshal.GetLastPInvokeError()}");
        }

        return (st.Uid, st.Gid, st.Mode & 0xFFFu);
    }

    private static string Output(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using Process p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        if (!p.WaitForExit(60_000) || p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed");
        }

        return output;
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
