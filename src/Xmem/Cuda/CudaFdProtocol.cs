using System.Runtime.InteropServices;
using Xmem.Interop;
using Xmem.SharedMemory;

namespace Xmem.Cuda;

/// <summary>
/// The request and reply by which an importer gets a VMM allocation's POSIX file descriptor from its exporter
/// (docs/cuda.md, "Buffers that outlive their producer"). One <c>SOCK_SEQPACKET</c> connection per request, to the
/// exporter's abstract socket <c>xmem.v1.cuda-fd.&lt;pid&gt;.&lt;token&gt;</c> (pid and token from the slot's
/// <see cref="Layout.CudaVmmExport"/>): the importer sends one <see cref="Request"/>, the exporter answers one
/// <see cref="Reply"/>, with the descriptor attached (SCM_RIGHTS) only when Status is <see cref="Ok"/>, and closes.
/// Neither side trusts the other: each message must be exactly its size with the magic, version and echoed fields,
/// and each side checks the other's kernel-reported credentials (SO_PEERCRED) with <see cref="Refusal"/>.
/// </summary>
internal static class CudaFdProtocol
{
    internal const uint RequestMagic = 0x52564d58; // "XMVR"
    internal const uint ReplyMagic = 0x41564d58;   // "XMVA"
    internal const uint Version = 1;

    internal const int Ok = 0;
    internal const int UnknownExport = 1;
    internal const int Denied = 2;
    internal const int BadRequest = 3;
    internal const int ExportFailed = 4;

    /// <summary>How long either side waits for the other's message: a peer that stops answering costs this much,
    /// never a hang. Both sides answer at once when alive.</summary>
    internal const int IoTimeoutSeconds = 10;

    [StructLayout(LayoutKind.Sequential)]
    internal struct Request
    {
        internal uint Magic;
        internal uint Version;
        internal ulong Instance;
        internal int Slot;
        internal uint MemGen;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct Reply
    {
        internal uint Magic;
        internal int Status;
        internal ulong Instance;
        internal int Slot;
        internal uint MemGen;
        internal long AllocSize;
    }

    /// <summary>The exporter's abstract socket name (no leading NUL). The token is random per process, so a pid
    /// reused after the exporter died never answers for it.</summary>
    internal static string SocketName(int pid, ulong token) =>
        $"xmem.v1.cuda-fd.{pid.ToString(System.Globalization.CultureInfo.InvariantCulture)}.{token:x16}";

    /// <summary>Null when a peer with these kernel-reported credentials may exchange a pool's device memory with
    /// this process, else why not. The pool's access rule, with the control segment's group and mode as the kernel
    /// reports them (never a field of shared memory): the same user, root, a user in the pool's group when the mode
    /// shares with the group (g+rw), or anyone when it shares with everyone (o+rw).</summary>
    internal static string? Refusal(in Libc.Ucred peer, SegmentAccess access)
    {
        uint me = Libc.GetEUid();
        if (peer.Uid == me || peer.Uid == 0 || (access.WorldShared))
        {
            return null;
        }

        if ((access.Mode & 0x30) == 0x30 && InGroup(peer, access.Gid))
        {
            return null;
        }

        return $"process {peer.Pid} (user {peer.Uid}, group {peer.Gid}) is not the pool's user, root, or a member of its group {access.Gid} with group access (mode {Convert.ToString(access.Mode, 8)})";
    }

    /// <summary>The peer's primary group, or one of its supplementary groups (the kernel reports only the primary
    /// one with SO_PEERCRED; the others are read from /proc while the connection holds the peer).</summary>
    private static bool InGroup(in Libc.Ucred peer, uint gid)
    {
        if (peer.Gid == gid)
        {
            return true;
        }

        try
        {
            foreach (string line in File.ReadLines($"/proc/{peer.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)}/status"))
            {
                if (line.StartsWith("Groups:", StringComparison.Ordinal))
                {
                    foreach (string g in line[7..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries))
                    {
                        if (uint.TryParse(g, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out uint v) && v == gid)
                        {
                            return true;
                        }
                    }

                    return false;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return false; // cannot tell: refused
    }
}
