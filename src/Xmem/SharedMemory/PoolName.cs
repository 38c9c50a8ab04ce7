using Xmem.Errors;

namespace Xmem.SharedMemory;

/// <summary>Validates pool names and derives the object names of a pool's segments (docs/layout.md, "Object names").</summary>
internal static class PoolName
{
    /// <summary>Strips the optional leading '/' and checks the rest: 1–200 of [A-Za-z0-9._-], not "." or "..".
    /// A bad name is an <see cref="InvalidNameException"/> (XMEM_E_INVALID_NAME); a null one an ArgumentNullException.</summary>
    internal static string Normalize(string name, string paramName = "name")
    {
        ArgumentNullException.ThrowIfNull(name, paramName);
        string bare = name.StartsWith('/') ? name[1..] : name;
        if (bare.Length is 0 or > SegmentNames.MaxPoolNameLength)
        {
            ThrowHelper.ThrowInvalidName($"pool name '{Printable(name)}' must be an optional '/' followed by 1 to {SegmentNames.MaxPoolNameLength} characters of [A-Za-z0-9._-].", paramName);
        }

        foreach (char c in bare)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            {
                ThrowHelper.ThrowInvalidName($"pool name '{Printable(name)}' has the character {DescribeChar(c)}; use only [A-Za-z0-9._-] after an optional leading '/'.", paramName);
            }
        }

        if (bare is "." or ".." || bare.StartsWith('.'))
        {
            ThrowHelper.ThrowInvalidName($"pool name '{Printable(name)}' must not start with '.'; use a name such as 'cam0'.", paramName);
        }

        return bare;
    }

    private static string DescribeChar(char c) => c switch
    {
        '\0' => "NUL",
        '/' => "'/' inside the name",
        _ when char.IsControl(c) => $"U+{(int)c:X4}",
        _ => $"'{c}'",
    };

    private static string Printable(string s) => s.Length > 60 ? string.Concat(s.AsSpan(0, 60), "…").Replace("\0", "\\0") : s.Replace("\0", "\\0");

    // The names themselves are built by SegmentNames (the one grammar of segment names); these keep the pool's
    // callers short.
    internal static string ControlObject(string bare) => SegmentNames.Control(bare);

    internal static string DataObject(string bare, ulong instance, int slot, uint memGen) => SegmentNames.Data(bare, instance, slot, memGen);

    internal static string HoldingsObject(string bare, ulong instance, int entry) => SegmentNames.Holdings(bare, instance, entry);

    /// <summary>Prefix shared by every segment of one pool instance other than its control segment.</summary>
    internal static string InstancePrefix(string bare, ulong instance) => SegmentNames.InstancePrefix(bare, instance);

    internal static string PathOf(string objectName) => System.IO.Path.Combine(SharedMemoryDirectory.Path, objectName);
}
