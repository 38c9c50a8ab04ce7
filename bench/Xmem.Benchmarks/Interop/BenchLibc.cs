using System.Runtime.InteropServices;

namespace Xmem.Benchmarks.Interop;

/// <summary>
/// The few libc calls the benchmarks need that the core does not bind (pipes, raw read/write, CPU affinity).
/// The core's <c>Xmem.Interop.Libc</c> (open, mmap, futex) is used for everything else, so the floors go through
/// exactly the same entry points as the pool.
/// </summary>
internal static unsafe partial class BenchLibc
{
    private const string Libc = "libc";

    /// <summary>pipe(2). 0, or -1 with errno set. The descriptors are inheritable (no O_CLOEXEC) on purpose:
    /// the consumer process inherits its ends across exec.</summary>
    [LibraryImport(Libc, EntryPoint = "pipe", SetLastError = true)]
    internal static partial int Pipe(int* fds);

    /// <summary>read(2). Bytes read, 0 at end of file, or -1 with errno set.</summary>
    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    internal static partial nint Read(int fd, void* buf, nuint count);

    /// <summary>write(2). Bytes written, or -1 with errno set.</summary>
    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    internal static partial nint Write(int fd, void* buf, nuint count);

    [LibraryImport(Libc, EntryPoint = "getrusage", SetLastError = true)]
    private static partial int GetRusage(int who, long* usage);

    /// <summary>The calling thread's minor page faults so far (getrusage(RUSAGE_THREAD): ru_minflt).</summary>
    internal static long ThreadMinorFaults()
    {
        long* u = stackalloc long[18]; // struct rusage: two timevals, then 14 longs; ru_minflt is the 5th long
        return GetRusage(1, u) == 0 ? u[8] : -1;
    }

    /// <summary>close(2).</summary>
    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);

    /// <summary>sched_setaffinity(2). pid 0 is the calling thread (Linux affinity is per thread). 0, or -1 with errno.</summary>
    [LibraryImport(Libc, EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nuint cpusetsize, ulong* mask);

    /// <summary>Pins the calling thread to one CPU (CPUs 0..63). False when the kernel refuses (CPU offline, cgroup).</summary>
    internal static bool PinCurrentThread(int cpu)
    {
        if (cpu is < 0 or > 63)
        {
            return false;
        }

        ulong mask = 1UL << cpu;
        return SchedSetAffinity(0, sizeof(ulong), &mask) == 0;
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes (pipes may split reads). Throws at end of file: the
    /// other process is gone, and waiting further would hang the benchmark.</summary>
    internal static void ReadExactly(int fd, void* buf, int count)
    {
        byte* p = (byte*)buf;
        int done = 0;
        while (done < count)
        {
            nint n = Read(fd, p + done, (nuint)(count - done));
            if (n > 0)
            {
                done += (int)n;
                continue;
            }

            if (n == 0)
            {
                throw new EndOfStreamException($"pipe fd {fd} closed: the other benchmark process exited");
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno != 4 /* EINTR */)
            {
                throw new IOException($"read(fd {fd}) failed with errno {errno}");
            }
        }
    }

    /// <summary>Writes exactly <paramref name="count"/> bytes (at most PIPE_BUF, so one atomic write in practice).</summary>
    internal static void WriteExactly(int fd, void* buf, int count)
    {
        byte* p = (byte*)buf;
        int done = 0;
        while (done < count)
        {
            nint n = Write(fd, p + done, (nuint)(count - done));
            if (n > 0)
            {
                done += (int)n;
                continue;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno != 4 /* EINTR */)
            {
                throw new IOException($"write(fd {fd}) failed with errno {errno}");
            }
        }
    }
}
