using System.Globalization;

namespace Xmem.Cli;

/// <summary>Human-readable sizes, and the parser of size arguments ("6220800", "64K", "6MiB", "1920x1080x3").</summary>
internal static class Units
{
    internal static string Bytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        int u = 0;
        while (Math.Abs(v) >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }

        return u == 0 ? $"{bytes} B" : $"{v:0.#} {units[u]}";
    }

    /// <summary>Parses a byte count: a number with an optional K/M/G (KiB/MiB/GiB, powers of 1024) suffix, or a
    /// product such as 1920x1080x3. Null when malformed or not positive.</summary>
    internal static long? ParseSize(string text)
    {
        string t = text.Trim();
        if (t.Contains('x', StringComparison.OrdinalIgnoreCase) || t.Contains('×'))
        {
            long product = 1;
            foreach (string part in t.Split(['x', 'X', '×']))
            {
                if (!long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out long f) || f < 1)
                {
                    return null;
                }

                product = checked(product * f);
            }

            return product;
        }

        long multiplier = 1;
        string[] suffixes = ["KiB", "MiB", "GiB", "KB", "MB", "GB", "K", "M", "G"];
        foreach (string s in suffixes)
        {
            if (t.EndsWith(s, StringComparison.OrdinalIgnoreCase))
            {
                multiplier = char.ToUpperInvariant(s[0]) switch { 'K' => 1L << 10, 'M' => 1L << 20, _ => 1L << 30 };
                t = t[..^s.Length];
                break;
            }
        }

        return long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n >= 1 && n <= long.MaxValue / multiplier
            ? n * multiplier
            : null;
    }

    internal static string Age(DateTimeOffset? created)
    {
        if (created is not { } c)
        {
            return "?";
        }

        TimeSpan age = DateTimeOffset.UtcNow - c;
        return age.TotalSeconds < 0 ? "?"
            : age.TotalMinutes < 1 ? $"{age.TotalSeconds:0}s"
            : age.TotalHours < 1 ? $"{age.TotalMinutes:0}m"
            : age.TotalDays < 1 ? $"{age.TotalHours:0}h"
            : $"{age.TotalDays:0}d";
    }
}
