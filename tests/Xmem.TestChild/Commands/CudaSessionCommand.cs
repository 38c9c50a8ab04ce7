using System.Globalization;
using Xmem.Cuda;
using Xmem.Tests.Shared;

namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>cuda-session [--create] POOL [CAPACITY]</c>: like <c>session</c>, for CUDA buffers over whatever driver
/// <c>XMEM_LIBCUDA</c> names (the tests' stand-in driver, tests/cuda-standin). Replies <c>ready PID</c>, then one
/// answer per instruction: <c>ok [values...]</c> or <c>error TYPE: message</c>. Device bytes are written and read
/// with the driver's own copies, so the driver sees every access. Instructions:
/// <code>
/// acquire SIZE DEVICE          ok GUARD INDEX        acquirecpu SIZE        ok GUARD INDEX
/// get INDEX | getmut INDEX     ok GUARD
/// fill GUARD SEED              ok                    (BytePattern over the buffer, host to device)
/// verify GUARD SEED            ok | mismatch POS     (device to host)
/// fillcpu / verifycpu GUARD SEED                     (a CPU buffer)
/// ptr GUARD                    ok POINTER DEVICE SIZE
/// verifyptr DEVICE PTR SIZE SEED  ok | mismatch POS  (raw device pointer, e.g. after the guard or pool went)
/// copycpu GUARD | copycuda GUARD DEVICE   ok GUARD
/// dispose GUARD | forget GUARD ok                    release INDEX | refcount INDEX   ok COUNT
/// send CHANNEL GUARD           ok                    recv CHANNEL [w]       ok GUARD
/// waits on|off                 ok                    trim                   ok BYTES
/// recover                      ok N                  (RecoverDeadProcesses)
/// fds                          ok N                  (open descriptors of this process, /proc/self/fd)
/// close                        ok                    (disposes the pool; guards stay in the table)
/// exit                         ok
/// </code>
/// </summary>
internal static class CudaSessionCommand
{
    [ChildCommand("cuda-session", "[--create] POOL [CAPACITY]")]
    internal static int Run(ChildContext ctx)
    {
        bool create = ctx.Arg(0) == "--create";
        int at = create ? 1 : 0;
        string name = ctx.Arg(at);
        BufferPool pool = create ? BufferPool.Create(name, int.Parse(ctx.ArgOr(at + 1, "8"), CultureInfo.InvariantCulture)) : BufferPool.Open(name);
        var guards = new Dictionary<string, BufferGuard>(StringComparer.Ordinal);
        var channels = new Dictionary<string, BufferChannel>(StringComparer.Ordinal);
        int nextGuard = 0;
        string Keep(BufferGuard g)
        {
            string id = "g" + (++nextGuard).ToString(CultureInfo.InvariantCulture);
            guards[id] = g;
            return id;
        }

        ctx.Reply($"ready {Environment.ProcessId}");
        try
        {
            while (ctx.ReadInstruction() is { } line)
            {
                string[] w = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (w.Length == 0)
                {
                    continue;
                }

                if (w[0] == "exit")
                {
                    ctx.Reply("ok");
                    break;
                }

                try
                {
                    ctx.Reply(Execute(pool, w, guards, channels, Keep));
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    ctx.Reply(ChildContext.DescribeError(e));
                }
            }
        }
        finally
        {
            foreach (BufferChannel c in channels.Values)
            {
                c.Dispose();
            }

            pool.Dispose();
        }

        return 0;
    }

    private static string Execute(BufferPool pool, string[] w, Dictionary<string, BufferGuard> guards, Dictionary<string, BufferChannel> channels, Func<BufferGuard, string> keep)
    {
        int I(int k) => int.Parse(w[k], CultureInfo.InvariantCulture);
        long L(int k) => long.Parse(w[k], CultureInfo.InvariantCulture);
        BufferGuard G(int k) => guards.TryGetValue(w[k], out BufferGuard? g) ? g : throw new ArgumentException($"no guard '{w[k]}' in this session");
        BufferChannel C(int k)
        {
            if (!channels.TryGetValue(w[k], out BufferChannel? c))
            {
                c = channels[w[k]] = pool.Channel(w[k], depth: 8);
            }

            return c;
        }

        ICudaDriver driver = CudaRuntime.Shared.Driver;
        switch (w[0])
        {
            case "acquire":
            {
                BufferGuard g = pool.AcquireCuda(L(1), I(2));
                return $"ok {keep(g)} {g.MetaIndex}";
            }

            case "acquirecpu":
            {
                BufferGuard g = pool.AcquireCpu(L(1));
                return $"ok {keep(g)} {g.MetaIndex}";
            }

            case "get":
                return $"ok {keep(pool.Get(I(1)))}";
            case "getmut":
                return $"ok {keep(pool.GetMut(I(1)))}";
            case "fill":
            {
                BufferGuard g = G(1);
                byte[] bytes = new byte[g.Size];
                BytePattern.Fill(bytes, I(2));
                CopyIn(driver, g.DeviceId, g.CudaPointer, bytes);
                return "ok";
            }

            case "verify":
            {
                BufferGuard g = G(1);
                return Verify(driver, g.DeviceId, g.CudaPointer, g.Size, I(2));
            }

            case "fillcpu":
                BytePattern.Fill(G(1).Span, I(2));
                return "ok";
            case "verifycpu":
            {
                long pos = BytePattern.FirstMismatch(G(1).ReadOnlySpan, I(2));
                return pos < 0 ? "ok" : $"mismatch {pos}";
            }

            case "ptr":
            {
                BufferGuard g = G(1);
                return $"ok {g.CudaPointer} {g.DeviceId} {g.Size}";
            }

            case "verifyptr":
                return Verify(driver, I(1), ulong.Parse(w[2], CultureInfo.InvariantCulture), L(3), I(4));
            case "copycpu":
                return $"ok {keep(G(1).CopyToCpu())}";
            case "copycuda":
                return $"ok {keep(G(1).CopyToCuda(I(2)))}";
            case "dispose":
                G(1).Dispose();
                return "ok";
            case "forget":
                G(1).Forget();
                return "ok";
            case "release":
                return $"ok {pool.Release(I(1))}";
            case "refcount":
                return $"ok {pool.RefCount(I(1))}";
            case "send":
                C(1).Send(G(2));
                return "ok";
            case "recv":
                return $"ok {keep(C(1).Receive(writable: w.Length > 2 && w[2] == "w"))}";
            case "waits":
                pool.CudaGetWaitsForWrites = w[1] == "on";
                return "ok";
            case "fds":
                return $"ok {Directory.GetFiles("/proc/self/fd").Length}";
            case "recover":
                return $"ok {pool.RecoverDeadProcesses()}";
            case "trim":
                return $"ok {pool.TrimCuda()}";
            case "close":
                foreach (BufferChannel c in channels.Values)
                {
                    c.Dispose();
                }

                channels.Clear();
                pool.Dispose();
                return "ok";
            default:
                throw new ArgumentException($"unknown instruction '{w[0]}'");
        }
    }

    private static unsafe void CopyIn(ICudaDriver driver, int device, ulong pointer, byte[] bytes)
    {
        fixed (byte* p = bytes)
        {
            driver.CopyHostToDevice(device, pointer, (nint)p, bytes.Length);
        }
    }

    private static unsafe string Verify(ICudaDriver driver, int device, ulong pointer, long size, int seed)
    {
        byte[] bytes = new byte[size];
        fixed (byte* p = bytes)
        {
            driver.CopyDeviceToHost(device, (nint)p, pointer, size);
        }

        long pos = BytePattern.FirstMismatch(bytes, seed);
        return pos < 0 ? "ok" : $"mismatch {pos}";
    }
}
