using System.Globalization;

namespace Xmem.Cli.Demo;

/// <summary>The shape of the demo's frames, as the tensor description states it (uint8, row-major): <c>WxHxC</c> on
/// the command line is the tensor [H, W, C] (an image's rows first), <c>WxH</c> is [H, W], a byte count is [n].</summary>
internal sealed record FrameShape(long[] Dims)
{
    /// <summary>The default frame: 1920×1080 RGB, [1080, 1920, 3].</summary>
    internal static FrameShape FullHd { get; } = new([1080, 1920, 3]);

    /// <summary>Bytes of one frame.</summary>
    internal long Bytes => Dims.Aggregate(1L, (a, d) => checked(a * d));

    /// <summary>The tensor description of a frame.</summary>
    internal TensorSpec Spec => new(ElementType.UInt8, Dims);

    /// <summary>What the frame is (its description's content type).</summary>
    internal string ContentType => DemoProtocol.ContentTypeOf(Dims);

    /// <summary>The shape as Python prints a tuple: (1080, 1920, 3).</summary>
    internal string Tuple => Dims.Length == 1 ? $"({Dims[0]},)" : "(" + string.Join(", ", Dims) + ")";

    /// <summary>"1920×1080×3 (6,220,800 bytes)" for an image, "65,536 bytes" for a flat frame.</summary>
    internal string Describe() => Dims.Length >= 2
        ? string.Join('×', new[] { Dims[1], Dims[0] }.Concat(Dims.Skip(2))) + $" ({Bytes.ToString("N0", CultureInfo.InvariantCulture)} bytes)"
        : $"{Bytes.ToString("N0", CultureInfo.InvariantCulture)} bytes";

    /// <summary>Parses <c>--size</c>: <c>WxHxC</c>, <c>WxH</c>, or bytes with an optional K/M/G suffix. Null when
    /// malformed.</summary>
    internal static FrameShape? Parse(string text)
    {
        string t = text.Trim();
        if (t.Contains('x', StringComparison.OrdinalIgnoreCase) || t.Contains('×'))
        {
            string[] parts = t.Split(['x', 'X', '×']);
            var dims = new long[parts.Length];
            for (int i = 0; i < parts.Length; i++)
            {
                if (!long.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]) || dims[i] < 1)
                {
                    return null;
                }
            }

            if (dims.Length > TensorSpec.MaxDimensions)
            {
                return null;
            }

            (dims[0], dims[1]) = (dims[1], dims[0]); // W×H → rows first
            return Checked(new FrameShape(dims));
        }

        return Units.ParseSize(t) is { } n ? Checked(new FrameShape([n])) : null;
    }

    private static FrameShape? Checked(FrameShape s)
    {
        try
        {
            return s.Bytes is >= 1 and <= int.MaxValue ? s : null;
        }
        catch (OverflowException)
        {
            return null;
        }
    }
}
