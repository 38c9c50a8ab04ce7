using System.Globalization;
using Xmem.Cuda;
using Xmem.Interop;

namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>fd-request PID TOKEN HEX</c>: sends the bytes HEX as one message to the VMM fd server named by PID and TOKEN
/// (hex) — a request a test built, well-formed or not — and replies <c>status S fds N</c> (the reply's status and the
/// descriptors that came with it, each closed at once) or <c>noreply fds N</c>; then <c>open D</c>, the descriptors
/// this process has open. Needs no CUDA: what an arbitrary local process (any user can connect to an abstract
/// socket) can get from the server.
/// </summary>
internal static unsafe class FdRequestCommand
{
    [ChildCommand("fd-request", "PID TOKEN HEX")]
    internal static int Run(ChildContext ctx)
    {
        int pid = int.Parse(ctx.Arg(0), CultureInfo.InvariantCulture);
        ulong token = ulong.Parse(ctx.Arg(1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        byte[] message = Convert.FromHexString(ctx.Arg(2));
        int c = Libc.Socket(Libc.AF_UNIX, Libc.SOCK_SEQPACKET | Libc.SOCK_CLOEXEC, 0);
        if (c < 0 || !Libc.SetTimeouts(c, 30))
        {
            ctx.Reply("error socket");
            return 1;
        }

        try
        {
            uint len = Libc.AbstractAddress(CudaFdProtocol.SocketName(pid, token), out Libc.SockaddrUn addr);
            if (Libc.Connect(c, &addr, len) != 0)
            {
                ctx.Reply("error connect");
                return 1;
            }

            fixed (byte* m = message)
            {
                Libc.IoVec siov = new() { Base = m, Length = (nuint)message.Length };
                Libc.MsgHdr smsg = new() { Iov = &siov, IovLength = 1 };
                _ = Libc.SendMsg(c, &smsg, Libc.MSG_NOSIGNAL);
            }

            CudaFdProtocol.Reply reply;
            int space = Libc.CmsgSpace(8 * sizeof(int));
            byte* control = stackalloc byte[space];
            new Span<byte>(control, space).Clear();
            Libc.IoVec iov = new() { Base = &reply, Length = (nuint)sizeof(CudaFdProtocol.Reply) };
            Libc.MsgHdr msg = new() { Iov = &iov, IovLength = 1, Control = control, ControlLength = (nuint)space };
            nint n = Libc.RecvMsg(c, &msg, Libc.MSG_CMSG_CLOEXEC);
            int fds = 0;
            if (n >= 0 && msg.ControlLength >= 16)
            {
                var h = (Libc.CmsgHdr*)control;
                for (long k = 16; k + sizeof(int) <= (long)h->Length; k += sizeof(int))
                {
                    _ = Libc.Close(*(int*)(control + k));
                    fds++;
                }
            }

            string open = Directory.GetFiles("/proc/self/fd").Length.ToString(CultureInfo.InvariantCulture);
            ctx.Reply(n == sizeof(CudaFdProtocol.Reply) ? $"status {reply.Status} fds {fds} open {open}" : $"noreply fds {fds} open {open}");
            return 0;
        }
        finally
        {
            _ = Libc.Close(c);
        }
    }
}
