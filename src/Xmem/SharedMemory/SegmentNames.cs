using System.Buffers;
using System.Globalization;

namespace Xmem.SharedMemory;

/// <summary>What a segment name names (docs/layout.md, "Object names" and "Channels, Object name").</summary>
internal enum SegmentKind
{
    /// <summary><c>xmem.v1.&lt;pool&gt;</c>.</summary>
    Control,

    /// <summary><c>xmem.v1.&lt;pool&gt;.&lt;instance&gt;.s&lt;slot&gt;.g&lt;memgen&gt;</c>.</summary>
    Data,

    /// <summary><c>xmem.v1.&lt;pool&gt;.&lt;instance&gt;.p&lt;entry&gt;</c>.</summary>
    Holdings,

    /// <summary><c>xmem.v1.&lt;pool&gt;.&lt;instance&gt;.c&lt;channel&gt;</c>.</summary>
    Channel,

    /// <summary><c>xmem.v1.&lt;pool&gt;.&lt;instance&gt;.n&lt;channel&gt;.&lt;16 hex&gt;</c>: a channel under
    /// construction, under its creator's private name.</summary>
    ChannelDraft,

    /// <summary><c>xmem.v1.&lt;pool&gt;.&lt;instance&gt;.&lt;anything else&gt;</c>: no name this xmem builds, but an
    /// object of the instance all the same (removed with the pool).</summary>
    OtherOfInstance,
}

/// <summary>One reading of a segment name. <see cref="Instance"/> is 0 for a control segment; <see cref="Slot"/>
/// and <see cref="MemGen"/> are set for data segments, <see cref="Entry"/> for holdings, <see cref="Channel"/> for
/// channels and their drafts (-1, 0 or null otherwise).</summary>
internal readonly record struct SegmentName(SegmentKind Kind, string Pool, ulong Instance, int Slot = -1, uint MemGen = 0, int Entry = -1, string? Channel = null);

/// <summary>
/// Builds and parses the name of every kind of segment (docs/layout.md, "Object names"): the one place that knows the
/// grammar. Parsing is strict — a name is read as data, holdings or a channel only in the exact form this class
/// builds (decimal numbers without sign or leading zeros, lower-case hex) — because the directory is shared with
/// anyone who can write to it and a name is an input like any other.
/// <para>A name can have several readings: a pool name may itself contain <c>.&lt;16 hex&gt;.</c>, and so may a
/// channel's, so <c>xmem.v1.a.&lt;hex&gt;.p0</c> is holdings of pool <c>a</c> or the control segment of pool
/// <c>a.&lt;hex&gt;.p0</c>. <see cref="TryParse(string, string, out SegmentName)"/> reads a name as an object of a
/// known pool, which is unambiguous; <see cref="Readings"/> lists every reading and <see cref="Resolve"/> picks one
/// with the help of the directory listing.</para>
/// </summary>
internal static class SegmentNames
{
    /// <summary>The prefix of every object of layout version 1.</summary>
    internal const string Prefix = "xmem.v1.";

    /// <summary>Longest pool name (without the optional leading '/').</summary>
    internal const int MaxPoolNameLength = 200;

    /// <summary>Longest channel name.</summary>
    internal const int MaxChannelNameLength = 48;

    private const int HexDigits = 16;

    private static readonly SearchValues<char> NameChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");

    private static readonly SearchValues<char> LowerHex = SearchValues.Create("0123456789abcdef");

    /// <summary><c>xmem.v1.&lt;pool&gt;</c>.</summary>
    internal static string Control(string pool) => Prefix + pool;

    /// <summary><c>xmem.v1.&lt;pool&gt;.</c>: the start of every name of the pool's instances (and of other pools
    /// whose names start with <c>&lt;pool&gt;.</c>: use <see cref="TryParse(string, string, out SegmentName)"/> to tell).</summary>
    internal static string PoolPrefix(string pool) => Prefix + pool + ".";

    /// <summary><c>xmem.v1.&lt;pool&gt;.&lt;instance&gt;.</c>: the start of every object of one instance.</summary>
    internal static string InstancePrefix(string pool, ulong instance) =>
        string.Create(CultureInfo.InvariantCulture, $"{Prefix}{pool}.{instance:x16}.");

    /// <summary>The data segment of slot <paramref name="slot"/>, memory generation <paramref name="memGen"/>.</summary>
    internal static string Data(string pool, ulong instance, int slot, uint memGen) =>
        string.Create(CultureInfo.InvariantCulture, $"{Prefix}{pool}.{instance:x16}.s{slot}.g{memGen}");

    /// <summary>The holdings segment of process entry <paramref name="entry"/>.</summary>
    internal static string Holdings(string pool, ulong instance, int entry) =>
        string.Create(CultureInfo.InvariantCulture, $"{Prefix}{pool}.{instance:x16}.p{entry}");

    /// <summary>The segment of channel <paramref name="channel"/>.</summary>
    internal static string Channel(string pool, ulong instance, string channel) => InstancePrefix(pool, instance) + "c" + channel;

    /// <summary>The private name a creator builds channel <paramref name="channel"/> under, before linking it;
    /// <paramref name="random"/> makes it its own.</summary>
    internal static string ChannelDraft(string pool, ulong instance, string channel, ulong random) =>
        string.Create(CultureInfo.InvariantCulture, $"{Prefix}{pool}.{instance:x16}.n{channel}.{random:x16}");

    /// <summary>A pool name without its optional '/': 1–200 of [A-Za-z0-9._-], not starting with '.'.</summary>
    internal static bool IsValidPoolName(ReadOnlySpan<char> pool) => IsValidName(pool, MaxPoolNameLength);

    /// <summary>A channel name: 1–48 of [A-Za-z0-9._-], not starting with '.'.</summary>
    internal static bool IsValidChannelName(ReadOnlySpan<char> channel) => IsValidName(channel, MaxChannelNameLength);

    private static bool IsValidName(ReadOnlySpan<char> s, int max) =>
        s.Length >= 1 && s.Length <= max && s[0] != '.' && !s.ContainsAnyExcept(NameChars);

    /// <summary>Reads <paramref name="file"/> (a file name, no directory) as an object of pool <paramref name="pool"/>:
    /// its control segment or an object of one of its instances. False when it is neither — another pool's, or no
    /// name of this layout.</summary>
    internal static bool TryParse(string file, string pool, out SegmentName name)
    {
        name = default;
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(pool);
        if (!IsValidPoolName(pool) || !file.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        ReadOnlySpan<char> rest = file.AsSpan(Prefix.Length);
        if (!rest.StartsWith(pool, StringComparison.Ordinal))
        {
            return false;
        }

        if (rest.Length == pool.Length)
        {
            name = new SegmentName(SegmentKind.Control, pool, 0);
            return true;
        }

        return rest[pool.Length] == '.' && TryParseInstanceObject(pool, rest[(pool.Length + 1)..], out name);
    }

    /// <summary>Every reading of <paramref name="file"/>: instance objects first, the one with the longest pool name
    /// first, then the control segment if the whole name after the prefix is a valid pool name. Empty for a name that
    /// is none of this layout's.</summary>
    internal static List<SegmentName> Readings(string file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var readings = new List<SegmentName>();
        if (!file.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return readings;
        }

        ReadOnlySpan<char> rest = file.AsSpan(Prefix.Length);
        // A split ".<16 hex>." after a pool name of at least one character; from the right.
        for (int dot = rest.Length - HexDigits - 2; dot >= 1; dot--)
        {
            if (rest[dot] == '.' && rest[dot + HexDigits + 1] == '.' && IsValidPoolName(rest[..dot])
                && TryParseInstanceObject(rest[..dot].ToString(), rest[(dot + 1)..], out SegmentName n))
            {
                readings.Add(n);
            }
        }

        if (IsValidPoolName(rest))
        {
            readings.Add(new SegmentName(SegmentKind.Control, rest.ToString(), 0));
        }

        return readings;
    }

    /// <summary>
    /// The reading of <paramref name="file"/> that the directory <paramref name="listing"/> (the names of the files in
    /// it) supports, or null when the name is none of this layout's. An instance object whose pool's control segment
    /// is listed wins over one whose pool has none; an instance object wins over the control-segment reading (almost
    /// every object's name is also a valid pool name). <paramref name="mayBeControl"/> is set when no reading's pool
    /// is listed and the file may be the control segment of a pool whose name looks like an object's: only its
    /// contents can tell (a pool header). A pool named like an object of a pool that exists is taken for that
    /// object, so that a directory of many segments is read by their names alone.
    /// </summary>
    internal static SegmentName? Resolve(string file, IReadOnlySet<string> listing, out bool mayBeControl)
    {
        ArgumentNullException.ThrowIfNull(listing);
        List<SegmentName> readings = Readings(file);
        mayBeControl = false;
        if (readings.Count == 0)
        {
            return null;
        }

        SegmentName last = readings[^1];
        bool hasControl = last.Kind == SegmentKind.Control;
        int instanceReadings = hasControl ? readings.Count - 1 : readings.Count;
        if (instanceReadings == 0)
        {
            return last;
        }

        for (int i = 0; i < instanceReadings; i++)
        {
            if (listing.Contains(Control(readings[i].Pool)))
            {
                return readings[i];
            }
        }

        // No reading's pool is there: an object of a removed pool, or a pool whose name looks like one.
        mayBeControl = hasControl;
        return readings[0];
    }

    /// <summary>
    /// Sorts a directory <paramref name="listing"/> into the pools it holds (their names, from their control segments)
    /// and, when <paramref name="objects"/> is given, the objects of pool instances (each by its <see cref="Resolve"/>
    /// reading). A name that may be either is asked of <paramref name="isControlSegment"/>, which looks at the file.
    /// </summary>
    internal static List<string> Pools(IReadOnlySet<string> listing, Func<string, bool> isControlSegment, List<(string File, SegmentName Name)>? objects)
    {
        ArgumentNullException.ThrowIfNull(isControlSegment);
        var pools = new List<string>();
        foreach (string file in listing)
        {
            if (Resolve(file, listing, out bool mayBeControl) is not { } name)
            {
                continue;
            }

            if (name.Kind == SegmentKind.Control || (mayBeControl && isControlSegment(file)))
            {
                pools.Add(file[Prefix.Length..]);
            }
            else
            {
                objects?.Add((file, name));
            }
        }

        return pools;
    }

    /// <summary>Reads <paramref name="rest"/> as <c>&lt;16 hex&gt;.&lt;kind&gt;</c> of pool <paramref name="pool"/>.</summary>
    private static bool TryParseInstanceObject(string pool, ReadOnlySpan<char> rest, out SegmentName name)
    {
        name = default;
        if (rest.Length < HexDigits + 2 || rest[HexDigits] != '.' || rest[..HexDigits].ContainsAnyExcept(LowerHex))
        {
            return false;
        }

        ulong instance = ulong.Parse(rest[..HexDigits], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        ReadOnlySpan<char> kind = rest[(HexDigits + 1)..];
        // Whatever follows the instance is the instance's (docs/layout.md: removal unlinks xmem.v1.<name>.<instance>.*),
        // as long as it is a file name.
        if (kind.IsEmpty || kind.ContainsAny('/', '\0'))
        {
            return false;
        }

        name = new SegmentName(SegmentKind.OtherOfInstance, pool, instance);
        switch (kind[0])
        {
            case 's':
                int g = kind.IndexOf(".g", StringComparison.Ordinal);
                if (g > 0 && TryParseDecimal(kind[1..g], out ulong slot) && slot < int.MaxValue
                    && TryParseDecimal(kind[(g + 2)..], out ulong memGen) && memGen <= uint.MaxValue)
                {
                    name = name with { Kind = SegmentKind.Data, Slot = (int)slot, MemGen = (uint)memGen };
                }

                break;
            case 'p':
                if (TryParseDecimal(kind[1..], out ulong entry) && entry < int.MaxValue)
                {
                    name = name with { Kind = SegmentKind.Holdings, Entry = (int)entry };
                }

                break;
            case 'c':
                if (IsValidChannelName(kind[1..]))
                {
                    name = name with { Kind = SegmentKind.Channel, Channel = kind[1..].ToString() };
                }

                break;
            case 'n':
                int end = kind.Length - HexDigits - 1;
                if (end > 1 && kind[end] == '.' && !kind[(end + 1)..].ContainsAnyExcept(LowerHex) && IsValidChannelName(kind[1..end]))
                {
                    name = name with { Kind = SegmentKind.ChannelDraft, Channel = kind[1..end].ToString() };
                }

                break;
        }

        return true;
    }

    /// <summary>A decimal number as this class writes one: digits only, no sign, no leading zero (but "0"), at most
    /// 10 digits.</summary>
    private static bool TryParseDecimal(ReadOnlySpan<char> s, out ulong value)
    {
        value = 0;
        if (s.Length is 0 or > 10 || (s[0] == '0' && s.Length > 1))
        {
            return false;
        }

        foreach (char c in s)
        {
            if (!char.IsAsciiDigit(c))
            {
                return false;
            }

            value = (value * 10) + (ulong)(c - '0');
        }

        return true;
    }
}
