using System.CommandLine;

namespace Xmem.Cli.Commands;

/// <summary>Options and helpers shared by the commands.</summary>
internal static class CommonOptions
{
    internal static Option<bool> Json() => new("--json") { Description = "Write JSON (for scripts) instead of a table" };

    internal static Argument<string> PoolName() => new("name") { Description = "The pool's name (with or without the leading '/')" };

    /// <summary>Writes <paramref name="value"/> as JSON to stdout.</summary>
    internal static void WriteJson<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info) =>
        Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(value, info));
}
