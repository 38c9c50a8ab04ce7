using Xmem.Core;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Version and last-error exports (xmem.h, "errors").</summary>
internal static unsafe class ErrorExports
{
    /// <summary>XMEM_ABI_VERSION in xmem.h; bump both together.</summary>
    internal const uint AbiVersion = 1;

    /// <summary>Static, NUL-terminated names of every status, built once and pinned for the life of the process.</summary>
    private static readonly Dictionary<int, byte[]> s_statusNames = BuildStatusNames();
    private static readonly byte[] s_unknownStatus = Pinned("XMEM_E_UNKNOWN");
    private static readonly byte[] s_version = Pinned("0.1.0");

    [UnmanagedCallersOnly(EntryPoint = "xmemi_abi_version")]
    internal static uint XmemAbiVersion() => AbiVersion;

    [UnmanagedCallersOnly(EntryPoint = "xmemi_version")]
    internal static byte* XmemVersion() => AddressOf(s_version);

    [UnmanagedCallersOnly(EntryPoint = "xmemi_last_error")]
    internal static byte* XmemLastError() => LastError.Message;

    [UnmanagedCallersOnly(EntryPoint = "xmemi_last_status")]
    internal static int XmemLastStatus() => LastError.Status;

    [UnmanagedCallersOnly(EntryPoint = "xmemi_last_native_error")]
    internal static int XmemLastNativeError() => LastError.Native;

    [UnmanagedCallersOnly(EntryPoint = "xmemi_status_name")]
    internal static byte* XmemStatusName(int status) => AddressOf(s_statusNames.TryGetValue(status, out byte[]? name) ? name : s_unknownStatus);

    /// <summary>"InvalidArgument" → "XMEM_E_INVALID_ARGUMENT", "Ok" → "XMEM_OK": the header's spelling.</summary>
    internal static string HeaderName(XmemStatus status)
    {
        if (status == XmemStatus.Ok)
        {
            return "XMEM_OK";
        }

        var sb = new StringBuilder("XMEM_E_");
        string s = status.ToString();
        for (int i = 0; i < s.Length; i++)
        {
            if (i > 0 && char.IsUpper(s[i]))
            {
                sb.Append('_');
            }

            sb.Append(char.ToUpperInvariant(s[i]));
        }

        return sb.ToString();
    }

    private static Dictionary<int, byte[]> BuildStatusNames()
    {
        var d = new Dictionary<int, byte[]>();
        foreach (XmemStatus s in Enum.GetValues<XmemStatus>())
        {
            d[(int)s] = Pinned(HeaderName(s));
        }

        return d;
    }

    private static byte[] Pinned(string s)
    {
        byte[] b = GC.AllocateArray<byte>(Encoding.UTF8.GetByteCount(s) + 1, pinned: true);
        Encoding.UTF8.GetBytes(s, b);
        return b;
    }

    // Safe: the arrays are on the pinned object heap and referenced from static fields, so they never move or die.
    private static byte* AddressOf(byte[] pinned) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
}
