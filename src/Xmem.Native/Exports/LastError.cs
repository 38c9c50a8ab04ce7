using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Xmem.Native.Exports;

/// <summary>
/// The thread-local last error of the C ABI, and the one table that turns an exception into a status. Every export
/// catches everything: no exception crosses the boundary. The message lives in a pinned per-thread buffer, so the
/// pointer <c>xmem_last_error()</c> returns stays valid until the next failing call on the same thread.
/// </summary>
internal static unsafe class LastError
{
    [ThreadStatic] private static byte[]? t_message;
    [ThreadStatic] private static int t_status;
    [ThreadStatic] private static int t_native;

    /// <summary>The status of the last failure on this thread (0 when none yet).</summary>
    internal static int Status => t_status;

    /// <summary>The errno or CUresult of the last failure on this thread (0 when none).</summary>
    internal static int Native => t_native;

    /// <summary>The UTF-8, NUL-terminated message of the last failure on this thread ("" when none).</summary>
    internal static byte* Message
    {
        get
        {
            t_message ??= NewBuffer(1);
            return (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(t_message));
        }
    }

    /// <summary>Records a failure and returns its status, for <c>return LastError.Set(...)</c>.</summary>
    internal static int Set(XmemStatus status, string message, int native = 0)
    {
        int n = Encoding.UTF8.GetByteCount(message);
        byte[] buf = t_message is { } b && b.Length > n ? b : (t_message = NewBuffer(Math.Max(n + 1, 256)));
        Encoding.UTF8.GetBytes(message, buf);
        buf[n] = 0;
        t_status = (int)status;
        t_native = native;
        return (int)status;
    }

    /// <summary>Records <paramref name="e"/> and returns its status: the single exception → status table.</summary>
    internal static int Fail(Exception e)
    {
        (XmemStatus status, int native) = e switch
        {
            IXmemError x => (x.Status, x.NativeError),
            ArgumentOutOfRangeException => (XmemStatus.InvalidArgument, 0),
            ArgumentException a when a.ParamName == "name" => (XmemStatus.InvalidName, 0),
            ArgumentException => (XmemStatus.InvalidArgument, 0),
            ObjectDisposedException => (XmemStatus.Disposed, 0),
            OperationCanceledException => (XmemStatus.Canceled, 0),
            OutOfMemoryException => (XmemStatus.OutOfMemory, 0),
            FileNotFoundException or DirectoryNotFoundException => (XmemStatus.NotFound, 0),
            UnauthorizedAccessException => (XmemStatus.PermissionDenied, 0),
            IOException => (XmemStatus.OsError, 0),
            _ => (XmemStatus.Internal, 0),
        };
        string message = status == XmemStatus.Internal ? $"internal error in xmem ({e.GetType().Name}): {e.Message} Please report it with this message." : Clean(e);
        return Set(status, message, native);
    }

    /// <summary>A handle that is null, stale (already destroyed) or of another kind.</summary>
    internal static int InvalidHandle(string what, ulong handle) =>
        Set(XmemStatus.InvalidHandle, handle == 0
            ? $"the {what} handle is null; pass a handle returned by xmem and not yet destroyed."
            : $"the {what} handle 0x{handle:x16} is not live: it was already destroyed (closed, released or forgotten), never created, or is a handle of another kind.");

    /// <summary>A required pointer argument is null.</summary>
    internal static int NullArgument(string name) =>
        Set(XmemStatus.InvalidArgument, $"'{name}' must not be NULL.");

    private static byte[] NewBuffer(int length) => GC.AllocateArray<byte>(length, pinned: true);

    /// <summary>The exception's message without .NET's "(Parameter 'x')" and "Actual value was" decorations, which
    /// name C# parameters rather than the C or Python ones.</summary>
    private static string Clean(Exception e)
    {
        string m = e.Message;
        if (e is ArgumentException)
        {
            int cut = m.IndexOf(" (Parameter '", StringComparison.Ordinal);
            if (cut >= 0)
            {
                m = m[..cut];
            }
        }

        return m;
    }
}
