using System.Runtime.InteropServices;

namespace Xmem.Interop;

internal static partial class Libc
{
    // Linux x86-64 / aarch64 values (asm-generic and x86 agree on these).
    internal const int AF_UNIX = 1;
    internal const int SOCK_SEQPACKET = 5;
    internal const int SOCK_CLOEXEC = 0x80000;
    internal const int SOL_SOCKET = 1;
    internal const int SO_PEERCRED = 17;
    internal const int SO_RCVTIMEO = 20;
    internal const int SO_SNDTIMEO = 21;
    internal const int SCM_RIGHTS = 1;
    internal const int MSG_TRUNC = 0x20;
    internal const int MSG_CTRUNC = 0x8;
    internal const int MSG_NOSIGNAL = 0x4000;
    internal const int MSG_CMSG_CLOEXEC = 0x40000000;
    internal const int SHUT_RDWR = 2;

    /// <summary>struct sockaddr_un: a 2-byte family, then 108 bytes of path. An abstract name starts with a NUL
    /// and its length is given by the address length, not by a terminator.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct SockaddrUn
    {
        internal const int PathSize = 108;
        internal ushort Family;
        internal fixed byte Path[PathSize];
    }

    /// <summary>struct ucred (SO_PEERCRED): the peer's pid, uid and gid as the kernel recorded them at connect or
    /// listen time.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Ucred
    {
        internal int Pid;
        internal uint Uid;
        internal uint Gid;
    }

    /// <summary>struct iovec.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct IoVec
    {
        internal void* Base;
        internal nuint Length;
    }

    /// <summary>struct msghdr (64-bit glibc layout: 56 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct MsgHdr
    {
        internal void* Name;
        internal uint NameLength;
        internal IoVec* Iov;
        internal nuint IovLength;
        internal void* Control;
        internal nuint ControlLength;
        internal int Flags;
    }

    /// <summary>struct cmsghdr's header (64-bit: a size_t length, level, type; data at 16, 8-byte aligned).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct CmsgHdr
    {
        internal nuint Length;
        internal int Level;
        internal int Type;
    }

    /// <summary>CMSG_LEN / CMSG_SPACE for the 64-bit layout.</summary>
    internal static int CmsgLength(int dataBytes) => 16 + dataBytes;

    internal static int CmsgSpace(int dataBytes) => 16 + ((dataBytes + 7) & ~7);

    /// <summary>struct timeval (SO_RCVTIMEO, SO_SNDTIMEO).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct TimeVal
    {
        internal long Seconds;
        internal long Microseconds;
    }

    /// <summary>socket(2): a descriptor, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "socket", SetLastError = true)]
    internal static partial int Socket(int domain, int type, int protocol);

    /// <summary>bind(2): 0, or -1 with errno set (EADDRINUSE: the name is taken).</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "bind", SetLastError = true)]
    internal static unsafe partial int Bind(int fd, SockaddrUn* address, uint length);

    /// <summary>listen(2): 0, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "listen", SetLastError = true)]
    internal static partial int Listen(int fd, int backlog);

    /// <summary>accept4(2) without the peer's address: a descriptor, or -1 with errno set (EINVAL once the socket
    /// was shut down, which is how a server thread is woken to stop).</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "accept4", SetLastError = true)]
    internal static partial int Accept4(int fd, nint address, nint length, int flags);

    /// <summary>connect(2): 0, or -1 with errno set (ECONNREFUSED: nothing listens on an abstract name).</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "connect", SetLastError = true)]
    internal static unsafe partial int Connect(int fd, SockaddrUn* address, uint length);

    /// <summary>sendmsg(2): bytes sent, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "sendmsg", SetLastError = true)]
    internal static unsafe partial nint SendMsg(int fd, MsgHdr* message, int flags);

    /// <summary>recvmsg(2): bytes received (0: the peer closed), or -1 with errno set (EAGAIN: the receive timeout
    /// passed).</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "recvmsg", SetLastError = true)]
    internal static unsafe partial nint RecvMsg(int fd, MsgHdr* message, int flags);

    /// <summary>getsockopt(2): 0, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "getsockopt", SetLastError = true)]
    internal static unsafe partial int GetSockOpt(int fd, int level, int name, void* value, uint* length);

    /// <summary>setsockopt(2): 0, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "setsockopt", SetLastError = true)]
    internal static unsafe partial int SetSockOpt(int fd, int level, int name, void* value, uint length);

    /// <summary>shutdown(2): 0, or -1 with errno set.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "shutdown", SetLastError = true)]
    internal static partial int Shutdown(int fd, int how);

    /// <summary>Fills an abstract-namespace address for <paramref name="name"/> (ASCII, without the leading NUL);
    /// returns the address length to pass.</summary>
    internal static unsafe uint AbstractAddress(string name, out SockaddrUn address)
    {
        if (name.Length + 1 > SockaddrUn.PathSize)
        {
            throw new ArgumentException("an abstract socket name is at most 107 bytes", nameof(name));
        }

        address = default;
        address.Family = AF_UNIX;
        address.Path[0] = 0;
        for (int i = 0; i < name.Length; i++)
        {
            address.Path[i + 1] = (byte)name[i];
        }

        return (uint)(2 + 1 + name.Length);
    }

    /// <summary>Sets both socket timeouts, so that neither side of a request can make the other wait forever.</summary>
    internal static unsafe bool SetTimeouts(int fd, int seconds)
    {
        TimeVal tv = new() { Seconds = seconds };
        return SetSockOpt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, (uint)sizeof(TimeVal)) == 0 &&
               SetSockOpt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, (uint)sizeof(TimeVal)) == 0;
    }

    /// <summary>The connected peer's credentials (SO_PEERCRED), or false.</summary>
    internal static unsafe bool PeerCredentials(int fd, out Ucred cred)
    {
        Ucred c;
        uint len = (uint)sizeof(Ucred);
        bool ok = GetSockOpt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) == 0 && len == (uint)sizeof(Ucred);
        cred = ok ? c : default;
        return ok;
    }
}
