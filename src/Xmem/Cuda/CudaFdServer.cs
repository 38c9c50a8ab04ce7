using System.Runtime.InteropServices;
using Xmem.Interop;
using Xmem.SharedMemory;

namespace Xmem.Cuda;

/// <summary>
/// This process's server of VMM file descriptors (docs/cuda.md, "Buffers that outlive their producer"): a
/// <c>SOCK_SEQPACKET</c> socket in the abstract namespace (nothing in the file system to clean up: the name goes with
/// the last descriptor of the socket), served by one background thread. Started by the first VMM export of any pool of
/// the process, stopped at a pool's detach once the process exports no VMM memory any more (own allocations of live
/// slots outlive detach, and so does the server that hands them out), and otherwise at exit.
/// <para>Each connection carries one request (<see cref="CudaFdProtocol"/>), answered only when the peer's kernel
/// credentials pass the pool's access rule and the (pool instance, slot, memory generation) is one of this process's
/// live VMM exports; the descriptor is made for the reply (<c>cuMemExportToShareableHandle</c>) and closed after it is
/// sent. Requests are served one at a time, each bounded by the socket timeouts, so a silent client delays others by
/// at most <see cref="CudaFdProtocol.IoTimeoutSeconds"/>.</para>
/// <para>fork(): the child has no server thread and cannot use CUDA; its copy of the listening descriptor is closed
/// by the child hook (<see cref="CloseInheritedListener"/>), or importers could connect to a socket nobody serves
/// after the parent died.</para>
/// </summary>
internal sealed unsafe class CudaFdServer
{
    private static int s_listener = -1; // the fork child hook's only way to the inherited descriptor

    private readonly int _fd;
    private readonly Func<ulong, int, uint, CudaMemory?> _find;
    private readonly Func<ulong, SegmentAccess?> _access;
    private readonly Thread _thread;
    private volatile bool _stopping;

    private CudaFdServer(int fd, int pid, ulong token, Func<ulong, int, uint, CudaMemory?> find, Func<ulong, SegmentAccess?> access)
    {
        _fd = fd;
        Pid = pid;
        Token = token;
        _find = find;
        _access = access;
        _thread = new Thread(Serve) { IsBackground = true, Name = "xmem CUDA fd server" };
    }

    /// <summary>The pid in this server's name.</summary>
    internal int Pid { get; }

    /// <summary>The random token in this server's name (never 0).</summary>
    internal ulong Token { get; }

    /// <summary>Binds and starts the server. <paramref name="find"/> names a live VMM export (or null);
    /// <paramref name="access"/> a pool instance's access rule (or null for a pool this process does not export
    /// from).</summary>
    internal static CudaFdServer Start(Func<ulong, int, uint, CudaMemory?> find, Func<ulong, SegmentAccess?> access)
    {
        int pid = Libc.GetPid();
        Span<byte> t = stackalloc byte[8];
        ulong token;
        do
        {
            System.Security.Cryptography.RandomNumberGenerator.Fill(t);
            token = BitConverter.ToUInt64(t);
        }
        while (token == 0);

        int fd = Libc.Socket(Libc.AF_UNIX, Libc.SOCK_SEQPACKET | Libc.SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw Errors.ThrowHelper.OsError("socket(AF_UNIX) for the CUDA file-descriptor server", Marshal.GetLastPInvokeError(), null);
        }

        uint len = Libc.AbstractAddress(CudaFdProtocol.SocketName(pid, token), out Libc.SockaddrUn addr);
        if (Libc.Bind(fd, &addr, len) != 0 || Libc.Listen(fd, 64) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _ = Libc.Close(fd);
            throw Errors.ThrowHelper.OsError("bind/listen of the CUDA file-descriptor server's abstract socket", errno, null);
        }

        var server = new CudaFdServer(fd, pid, token, find, access);
        Volatile.Write(ref s_listener, fd);
        server._thread.Start();
        return server;
    }

    /// <summary>Stops serving: wakes the thread (shutdown makes accept fail), waits for it, closes the socket (its
    /// abstract name goes with it). Importers asking later are told the exporter is gone.</summary>
    internal void Stop()
    {
        _stopping = true;
        _ = Libc.Shutdown(_fd, Libc.SHUT_RDWR);
        _thread.Join();
        _ = Interlocked.CompareExchange(ref s_listener, -1, _fd);
        _ = Libc.Close(_fd);
    }

    /// <summary>In a fork() child (only the forking thread exists): closes the inherited listening descriptor, so
    /// the socket dies with the parent.</summary>
    internal static void CloseInheritedListener()
    {
        int fd = Volatile.Read(ref s_listener);
        if (fd >= 0)
        {
            s_listener = -1;
            _ = Libc.Close(fd);
        }
    }

    private void Serve()
    {
        while (!_stopping)
        {
            int c = Libc.Accept4(_fd, 0, 0, Libc.SOCK_CLOEXEC);
            if (c < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (_stopping || errno is Errno.EINVAL or Errno.EBADF)
                {
                    return;
                }

                if (errno is Errno.EMFILE or Errno.ENFILE or Errno.ENOMEM)
                {
                    Thread.Sleep(50); // out of descriptors: the pending client gets its turn once some are closed
                }

                continue;
            }

            try
            {
                Answer(c);
            }
            catch (XmemException)
            {
                // A driver failure outside ExportFd's own handling: this request gets no reply (the client reports it).
            }
            finally
            {
                _ = Libc.Close(c);
            }
        }
    }

    private void Answer(int c)
    {
        if (!Libc.SetTimeouts(c, CudaFdProtocol.IoTimeoutSeconds) || !Libc.PeerCredentials(c, out Libc.Ucred peer))
        {
            return;
        }

        // One byte more than a request, so that a longer message shows as such (a datagram is never split).
        byte* buf = stackalloc byte[sizeof(CudaFdProtocol.Request) + 1];
        Libc.IoVec iov = new() { Base = buf, Length = (nuint)(sizeof(CudaFdProtocol.Request) + 1) };
        // No control buffer: descriptors a client attaches are closed by the kernel, never installed here.
        Libc.MsgHdr msg = new() { Iov = &iov, IovLength = 1 };
        nint n = Libc.RecvMsg(c, &msg, Libc.MSG_CMSG_CLOEXEC);
        var req = *(CudaFdProtocol.Request*)buf;
        var reply = new CudaFdProtocol.Reply { Magic = CudaFdProtocol.ReplyMagic, Instance = req.Instance, Slot = req.Slot, MemGen = req.MemGen };
        int fd = -1;
        if (n != sizeof(CudaFdProtocol.Request) || (msg.Flags & (Libc.MSG_TRUNC | Libc.MSG_CTRUNC)) != 0 ||
            req.Magic != CudaFdProtocol.RequestMagic || req.Version != CudaFdProtocol.Version || req.Slot < 0)
        {
            reply.Status = CudaFdProtocol.BadRequest;
        }
        else if (_access(req.Instance) is not { } access)
        {
            reply.Status = CudaFdProtocol.UnknownExport;
        }
        else if (CudaFdProtocol.Refusal(peer, access) is not null)
        {
            reply.Status = CudaFdProtocol.Denied;
        }
        else if (_find(req.Instance, req.Slot, req.MemGen) is not { } mem)
        {
            reply.Status = CudaFdProtocol.UnknownExport;
        }
        else
        {
            try
            {
                fd = mem.ExportFd();
                reply.Status = fd >= 0 ? CudaFdProtocol.Ok : CudaFdProtocol.UnknownExport;
                reply.AllocSize = mem.AllocSize;
            }
            catch (XmemException)
            {
                reply.Status = CudaFdProtocol.ExportFailed;
            }
        }

        try
        {
            Send(c, reply, fd);
        }
        finally
        {
            if (fd >= 0)
            {
                _ = Libc.Close(fd); // the receiver has its own copy once sent
            }
        }
    }

    private static void Send(int c, CudaFdProtocol.Reply reply, int fd)
    {
        int space = Libc.CmsgSpace(sizeof(int));
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        Libc.IoVec iov = new() { Base = &reply, Length = (nuint)sizeof(CudaFdProtocol.Reply) };
        Libc.MsgHdr msg = new() { Iov = &iov, IovLength = 1 };
        if (fd >= 0)
        {
            var h = (Libc.CmsgHdr*)control;
            h->Length = (nuint)Libc.CmsgLength(sizeof(int));
            h->Level = Libc.SOL_SOCKET;
            h->Type = Libc.SCM_RIGHTS;
            *(int*)(control + 16) = fd;
            msg.Control = control;
            msg.ControlLength = (nuint)space;
        }

        _ = Libc.SendMsg(c, &msg, Libc.MSG_NOSIGNAL); // a client gone meanwhile: nothing to do
    }
}
