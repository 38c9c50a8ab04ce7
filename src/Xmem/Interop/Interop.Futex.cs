using System.Runtime.InteropServices;

namespace Xmem.Interop;

internal static partial class Libc
{
    private const long SYS_futex = 202; // x86-64
    internal const int FUTEX_WAIT = 0;  // shared (not FUTEX_PRIVATE_FLAG): the word lives in memory shared between processes
    internal const int FUTEX_WAKE = 1;

    [StructLayout(LayoutKind.Sequential)]
    internal struct Timespec
    {
        internal long Seconds;
        internal long Nanoseconds;
    }

    /// <summary>syscall(2) for futex(2): glibc has no wrapper. Returns the syscall's result, or -1 with errno set
    /// (EAGAIN when the word no longer holds the expected value, ETIMEDOUT, EINTR).</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
    private static unsafe partial long Syscall6(long number, nint uaddr, long op, long val, Timespec* timeout, nint uaddr2, long val3);

    /// <summary>Sleeps while <c>*word == expected</c>, at most <paramref name="timeoutNs"/> (negative: no limit).</summary>
    internal static unsafe long FutexWait(nint word, uint expected, long timeoutNs)
    {
        if (timeoutNs < 0)
        {
            return Syscall6(SYS_futex, word, FUTEX_WAIT, unchecked((int)expected), null, 0, 0);
        }

        Timespec ts = new() { Seconds = timeoutNs / 1_000_000_000, Nanoseconds = timeoutNs % 1_000_000_000 };
        return Syscall6(SYS_futex, word, FUTEX_WAIT, unchecked((int)expected), &ts, 0, 0);
    }

    /// <summary>Wakes every waiter on <paramref name="word"/>.</summary>
    internal static unsafe long FutexWakeAll(nint word) => Syscall6(SYS_futex, word, FUTEX_WAKE, int.MaxValue, null, 0, 0);
}
