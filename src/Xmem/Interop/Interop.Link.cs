using System.Runtime.InteropServices;

namespace Xmem.Interop;

internal static partial class Libc
{
    /// <summary>link(2): gives the file at <paramref name="existing"/> the second name <paramref name="newPath"/>, which
    /// must not exist (EEXIST otherwise) — an atomic "publish under this name if nobody has". 0, or -1 with errno.</summary>
    [LibraryImport(Libraries.Libc, EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int Link(string existing, string newPath);
}
