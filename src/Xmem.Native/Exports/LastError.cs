using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Unicode;

namespace Xmem.Native.Exports;

/// <summary>
/// The thread-local last error of the C ABI, and the one table that turns an exception into a status. Every export
/// catches everything: no exception crosses the boundary. The message lives in a pinned per-thread buffer, so the
/// pointer <c>xmem_last_error()</c> returns stays valid until the next failing call on the same thread.
/// Recording an error never throws, out of memory included (an export's error path runs outside its try, and a
/// process at its memory or mapping limit must get a status, not an abort): an interpolated message is formatted by
/// <see cref="ErrorMessage"/> straight into a per-thread buffer, with no allocation once the thread has its buffers;
/// a message that cannot be kept is replaced by a fixed one, and the status is recorded first, always.
/// </summary>
internal static unsafe class LastError
{
    private const int MessageChars = 2048;

    [ThreadStatic] private static byte[]? t_message;
    [ThreadStatic] private static char[]? t_chars;
    [ThreadStatic] private static bool t_messageLost;
    [ThreadStatic] private static int t_status;
    [ThreadStatic] private static int t_native;

    // Allocated with the class, before any failure: what a thread gets when its own buffers cannot be had.
    private static readonly byte[] s_empty = GC.AllocateArray<byte>(1, pinned: true);
    private static readonly byte[] s_lost = Pinned("xmem could not record this error's message (out of memory); xmem_last_status() has its cause.");

    /// <summary>The status of the last failure on this thread (0 when none yet).</summary>
    internal static int Status => t_status;

    /// <summary>The errno or CUresult of the last failure on this thread (0 when none).</summary>
    internal static int Native => t_native;

    /// <summary>The UTF-8, NUL-terminated message of the last failure on this thread ("" when none).</summary>
    internal static byte* Message => AddressOf(t_messageLost ? s_lost : t_message ?? s_empty);

    /// <summary>Records a failure and returns its status, for <c>return LastError.Set(...)</c>.</summary>
    internal static int Set(XmemStatus status, string message, int native = 0) => Record(status, message.AsSpan(), native);

    /// <summary>Records a failure whose message is formatted without allocating (see <see cref="ErrorMessage"/>).</summary>
    internal static int Set(XmemStatus status, ref ErrorMessage message) => Record(status, message.Text, 0);

    /// <summary>Records <paramref name="e"/> and returns its status: the single exception → status table. A cause
    /// that needs its own status gets an exception type of its own in the core (src/Xmem/Errors); nothing here
    /// looks at where an exception came from or which parameter it names.</summary>
    internal static int Fail(Exception e)
    {
        (XmemStatus status, int native) = e switch
        {
            IXmemError x => (x.Status, x.NativeError), // the core's own errors (bad names, bad indexes, ...) carry their cause
            ArgumentException => (XmemStatus.InvalidArgument, 0),
            ObjectDisposedException => (XmemStatus.Disposed, 0),
            OperationCanceledException => (XmemStatus.Canceled, 0),
            OutOfMemoryException => (XmemStatus.OutOfMemory, 0),
            FileNotFoundException or DirectoryNotFoundException => (XmemStatus.NotFound, 0),
            UnauthorizedAccessException => (XmemStatus.PermissionDenied, 0),
            IOException => (XmemStatus.OsError, 0),
            _ => (XmemStatus.Internal, 0),
        };
        try
        {
            return status switch
            {
                XmemStatus.Internal => Set(status, $"internal error in xmem ({e.GetType().Name}): {e.Message} Please report it with this message."),
                XmemStatus.OutOfMemory when e is OutOfMemoryException => Set(status, $"out of memory in this process ({e.Message}): release buffers, views and handles, or raise the process's memory limits."),
                _ => Record(status, Clean(e), native),
            };
        }
        catch (Exception)
        {
            return Lost(status, native); // e.Message itself could not be had
        }
    }

    /// <summary>A handle that is null, stale (already destroyed) or of another kind.</summary>
    internal static int InvalidHandle(string what, ulong handle)
    {
        if (handle == 0)
        {
            return Set(XmemStatus.InvalidHandle, $"the {what} handle is null; pass a handle returned by xmem and not yet destroyed.");
        }

        return Set(XmemStatus.InvalidHandle, $"the {what} handle 0x{handle:x16} is not live: it was already destroyed (closed, released or forgotten), never created, or is a handle of another kind.");
    }

    /// <summary>A required pointer argument is null.</summary>
    internal static int NullArgument(string name) =>
        Set(XmemStatus.InvalidArgument, $"'{name}' must not be NULL.");

    /// <summary>This thread's buffer for formatting messages; null when it cannot be had (out of memory).</summary>
    internal static char[]? CharBuffer()
    {
        if (t_chars is null)
        {
            try
            {
                t_chars = new char[MessageChars];
            }
            catch (OutOfMemoryException)
            {
                return null;
            }
        }

        return t_chars;
    }

    /// <summary>Stores the status, then the message as UTF-8 (truncated to the buffer when it cannot grow).</summary>
    private static int Record(XmemStatus status, ReadOnlySpan<char> message, int native)
    {
        t_status = (int)status;
        t_native = native;
        byte[]? buf = t_message;
        int need = (message.Length * 3) + 1;
        if (buf is null || buf.Length < need)
        {
            try
            {
                buf = t_message = GC.AllocateArray<byte>(Math.Max(need, 256), pinned: true);
            }
            catch (OutOfMemoryException)
            {
                if (buf is null)
                {
                    return Lost(status, native);
                }
            }
        }

        // Stops at a character boundary when the buffer is short; leaves room for the NUL.
        _ = Utf8.FromUtf16(message, buf.AsSpan(0, buf.Length - 1), out _, out int written);
        buf[written] = 0;
        t_messageLost = false;
        return (int)status;
    }

    private static int Lost(XmemStatus status, int native)
    {
        t_status = (int)status;
        t_native = native;
        t_messageLost = true;
        return (int)status;
    }

    private static byte[] Pinned(string s)
    {
        byte[] b = GC.AllocateArray<byte>(System.Text.Encoding.UTF8.GetByteCount(s) + 1, pinned: true);
        System.Text.Encoding.UTF8.GetBytes(s, b);
        return b;
    }

    // Safe: pinned-heap arrays (per-thread ones referenced from thread statics, the rest from static fields) never move.
    private static byte* AddressOf(byte[] pinned) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));

    /// <summary>The exception's message without .NET's "(Parameter 'x')" and "Actual value was" decorations, which
    /// name C# parameters rather than the C or Python ones.</summary>
    private static ReadOnlySpan<char> Clean(Exception e)
    {
        string m = e.Message;
        if (e is ArgumentException)
        {
            int cut = m.IndexOf(" (Parameter '", StringComparison.Ordinal);
            if (cut >= 0)
            {
                return m.AsSpan(0, cut);
            }
        }

        return m;
    }
}
