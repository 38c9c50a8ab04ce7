using System.Text.Json.Serialization;
using Xmem.Cli.Commands;
using Xmem.Cli.Demo;
using Xmem.Cli.Top;
using Xmem.Inspection;

namespace Xmem.Cli.Output;

/// <summary>Source-generated JSON for <c>--json</c> (no reflection: the CLI stays trim and AOT clean).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true,
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    Converters = [typeof(CamelCaseEnumConverter<PoolStatus>), typeof(CamelCaseEnumConverter<SlotState>), typeof(HexUInt64Converter)])]
[JsonSerializable(typeof(LsReport))]
[JsonSerializable(typeof(PoolDetails))]
[JsonSerializable(typeof(GcReport))]
[JsonSerializable(typeof(RmReport))]
[JsonSerializable(typeof(DemoResult))]
[JsonSerializable(typeof(TopSample))]
internal sealed partial class CliJsonContext : JsonSerializerContext;

/// <summary>Enum values as camelCase strings ("live", "stale"), which scripts compare more easily.</summary>
internal sealed class CamelCaseEnumConverter<T>() : JsonStringEnumConverter<T>(System.Text.Json.JsonNamingPolicy.CamelCase)
    where T : struct, Enum;

/// <summary>64-bit values (pool instance ids) as 16 hex digits, as in the segments' names; JSON numbers beyond 2^53
/// lose precision in many readers.</summary>
internal sealed class HexUInt64Converter : JsonConverter<ulong>
{
    public override ulong Read(ref System.Text.Json.Utf8JsonReader reader, Type typeToConvert, System.Text.Json.JsonSerializerOptions options) =>
        ulong.Parse(reader.GetString()!, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);

    public override void Write(System.Text.Json.Utf8JsonWriter writer, ulong value, System.Text.Json.JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ToString("x16", System.Globalization.CultureInfo.InvariantCulture));
}
