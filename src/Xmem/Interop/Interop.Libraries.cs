namespace Xmem.Interop;

/// <summary>Names of the native libraries xmem binds to, in one place.</summary>
internal static class Libraries
{
    /// <summary>glibc. Every libc entry point is bound through this name.</summary>
    internal const string Libc = "libc";
}
