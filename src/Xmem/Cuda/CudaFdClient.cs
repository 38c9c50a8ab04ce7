using System.Runtime.InteropServices;
using Xmem.Interop;
using Xmem.SharedMemory;

namespace Xmem.Cuda;

/// <summary>
/// The importer's side of <see cref="CudaFdProtocol"/>: asks a VMM slot's exporter for its allocation's file
/// descriptor. Everything the exporter's side says is checked: the socket must be held by the exporter the slot
/// names (SO_PEERCRED pid) with credentials that pass the pool's access rule, the reply must echo the request and
/// carry exactly one descriptor, and every descriptor received on a bad reply is closed. Failures throw
/// <see cref="CudaException"/> saying what happened; a dead exporter is told apart (its socket is gone).
/// </summary>
internal static unsafe class CudaFdClient
{
    private const int MaxFds = 8; // room to receive (and close) descriptors a bad reply attaches beyond the one

    /// <summary>A new descriptor of slot <paramref name="slot"/>'s VMM allocation for <paramref name="info"/>'s
    /// generation, from its exporter; the caller closes it.</summary>
    internal static int RequestFd(ulong instance, int slot, in CudaSlotInfo info, SegmentAccess access)
    {
        int pid = info.ExporterPid;
        int c = Connect(pid, info.ExporterToken, out int errno);
        if (c < 0)
        {
            if (errno is Errno.ECONNREFUSED or Errno.ENOENT)
            {
                throw new CudaException(ExporterGone(slot, pid), CudaResult.InvalidHandle);
            }

            throw new CudaException($"cannot reach process {pid}, the exporter of slot {slot}'s CUDA memory, over its file-descriptor socket: errno {errno}", CudaResult.Unknown);
        }

        try
        {
            if (!Libc.PeerCredentials(c, out Libc.Ucred peer) || peer.Pid != pid)
            {
                throw new CudaException($"the file-descriptor socket named by slot {slot} is held by process {peer.Pid}, not by its exporter {pid}: refused (another process took the name, or the slot record is damaged)", CudaResult.NotPermitted);
            }

            if (CudaFdProtocol.Refusal(peer, access) is { } why)
            {
                throw new CudaException($"slot {slot}'s exporter is not allowed to share this pool's memory: {why}", CudaResult.NotPermitted);
            }

            var req = new CudaFdProtocol.Request { Magic = CudaFdProtocol.RequestMagic, Version = CudaFdProtocol.Version, Instance = instance, Slot = slot, MemGen = info.MemGen };
            Libc.IoVec siov = new() { Base = &req, Length = (nuint)sizeof(CudaFdProtocol.Request) };
            Libc.MsgHdr smsg = new() { Iov = &siov, IovLength = 1 };
            if (Libc.SendMsg(c, &smsg, Libc.MSG_NOSIGNAL) != sizeof(CudaFdProtocol.Request))
            {
                throw new CudaException($"process {pid} (the exporter of slot {slot}) closed its file-descriptor socket before the request went: it may just have exited (errno {Marshal.GetLastPInvokeError()})", CudaResult.InvalidHandle);
            }

            return Receive(c, instance, slot, pid, info);
        }
        finally
        {
            _ = Libc.Close(c);
        }
    }

    /// <summary>True when the exporter named by pid and token is gone (nothing listens on its socket any more).
    /// A failure to tell counts as alive.</summary>
    internal static bool IsGone(int pid, ulong token)
    {
        int c = Connect(pid, token, out int errno);
        if (c >= 0)
        {
            _ = Libc.Close(c);
            return false;
        }

        return errno is Errno.ECONNREFUSED or Errno.ENOENT;
    }

    internal static string ExporterGone(int slot, int pid) =>
        $"slot {slot}'s CUDA memory was exported by process {pid}, which has exited: processes that held the buffer when it died keep their own copy of the allocation, but no process can open it any more. Copy a buffer that must outlive its producer (CopyToCuda) while you hold it";

    private static int Connect(int pid, ulong token, out int errno)
    {
        errno = 0;
        int c = Libc.Socket(Libc.AF_UNIX, Libc.SOCK_SEQPACKET | Libc.SOCK_CLOEXEC, 0);
        if (c < 0)
        {
            errno = Marshal.GetLastPInvokeError();
            throw Errors.ThrowHelper.OsError("socket(AF_UNIX) to reach a CUDA exporter", errno, null);
        }

        uint len = Libc.AbstractAddress(CudaFdProtocol.SocketName(pid, token), out Libc.SockaddrUn addr);
        if (!Libc.SetTimeouts(c, CudaFdProtocol.IoTimeoutSeconds) || Libc.Connect(c, &addr, len) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            _ = Libc.Close(c);
            return -1;
        }

        return c;
    }

    private static int Receive(int c, ulong instance, int slot, int pid, in CudaSlotInfo info)
    {
        CudaFdProtocol.Reply reply = default;
        int space = Libc.CmsgSpace(MaxFds * sizeof(int));
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        byte* buf = stackalloc byte[sizeof(CudaFdProtocol.Reply) + 1];
        Libc.IoVec iov = new() { Base = buf, Length = (nuint)(sizeof(CudaFdProtocol.Reply) + 1) };
        Libc.MsgHdr msg = new() { Iov = &iov, IovLength = 1, Control = control, ControlLength = (nuint)space };
        nint n = Libc.RecvMsg(c, &msg, Libc.MSG_CMSG_CLOEXEC);
        int errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
        List<int> fds = ReceivedFds(control, n >= 0 ? (long)msg.ControlLength : 0);
        try
        {
            if (n < 0)
            {
                throw new CudaException(errno == Errno.EAGAIN
                    ? $"process {pid} (the exporter of slot {slot}) did not answer within {CudaFdProtocol.IoTimeoutSeconds} s"
                    : $"receiving slot {slot}'s file descriptor from process {pid} failed: errno {errno}", CudaResult.Unknown);
            }

            if (n == 0)
            {
                throw new CudaException($"process {pid} (the exporter of slot {slot}) closed the connection without answering: it may just have exited", CudaResult.InvalidHandle);
            }

            if (n != sizeof(CudaFdProtocol.Reply) || (msg.Flags & (Libc.MSG_TRUNC | Libc.MSG_CTRUNC)) != 0)
            {
                throw new CudaException($"process {pid} answered the request for slot {slot}'s file descriptor with a malformed reply ({n} bytes): refused", CudaResult.Unknown);
            }

            reply = *(CudaFdProtocol.Reply*)buf;
            if (reply.Magic != CudaFdProtocol.ReplyMagic || reply.Instance != instance || reply.Slot != slot || reply.MemGen != info.MemGen)
            {
                throw new CudaException($"process {pid} answered the request for slot {slot} generation {info.MemGen} with a reply for another request: refused", CudaResult.Unknown);
            }

            switch (reply.Status)
            {
                case CudaFdProtocol.Ok:
                    break;
                case CudaFdProtocol.UnknownExport:
                    throw new CudaException($"process {pid} no longer exports slot {slot} generation {info.MemGen} (its memory was replaced or freed meanwhile; take the slot again)", CudaResult.InvalidHandle);
                case CudaFdProtocol.Denied:
                    throw new CudaException($"process {pid} refused slot {slot}'s file descriptor to this process: its user and groups do not pass the pool's access rule (same user, root, or the pool's group with group access)", CudaResult.NotPermitted);
                default:
                    throw new CudaException($"process {pid} could not export slot {slot}'s allocation (status {reply.Status})", CudaResult.Unknown);
            }

            if (fds.Count != 1 || reply.AllocSize != info.AllocSize)
            {
                throw new CudaException($"process {pid} answered with {fds.Count} descriptor(s) for a {reply.AllocSize}-byte allocation; slot {slot} records {info.AllocSize} bytes: refused", CudaResult.Unknown);
            }

            int fd = fds[0];
            fds.Clear();
            return fd;
        }
        finally
        {
            foreach (int f in fds)
            {
                _ = Libc.Close(f);
            }
        }
    }

    /// <summary>Every descriptor in the SCM_RIGHTS messages of a received control buffer (each is this process's
    /// now, and must be kept or closed).</summary>
    private static List<int> ReceivedFds(byte* control, long length)
    {
        var fds = new List<int>();
        long at = 0;
        while (at + 16 <= length)
        {
            var h = (Libc.CmsgHdr*)(control + at);
            long len = (long)h->Length;
            if (len < 16 || at + len > length)
            {
                break;
            }

            if (h->Level == Libc.SOL_SOCKET && h->Type == Libc.SCM_RIGHTS)
            {
                for (long k = 16; k + sizeof(int) <= len; k += sizeof(int))
                {
                    fds.Add(*(int*)(control + at + k));
                }
            }

            at += (len + 7) & ~7L;
        }

        return fds;
    }
}
