using System.Text.Json.Serialization;
using Xmem.Cli.Commands;
using Xmem.Cli.Demo;
using Xmem.Inspection;

namespace Xmem.Cli.Output;

/// <summary>Source-generated JSON for <c>--json</c> (no reflection: the CLI stays trim and AOT clean).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true,
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    Converters = [typeof(CamelCaseEnumConverter<PoolStatus>), typeof(CamelCaseEnumConverter<SlotState>)])]
[JsonSerializable(typeof(LsReport))]
[JsonSerializable(typeof(PoolDetails))]
[JsonSerializable(typeof(GcReport))]
[JsonSerializable(typeof(RmReport))]
[JsonSerializable(typeof(DemoResult))]
internal sealed partial class CliJsonContext : JsonSerializerContext;

/// <summary>Enum values as camelCase strings ("live", "stale"), which scripts compare more easily.</summary>
internal sealed class CamelCaseEnumConverter<T>() : JsonStringEnumConverter<T>(System.Text.Json.JsonNamingPolicy.CamelCase)
    where T : struct, Enum;
