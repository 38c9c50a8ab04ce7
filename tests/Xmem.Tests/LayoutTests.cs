using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Xmem.Layout;
using Xunit;

namespace Xmem.Tests;

/// <summary>Pins the structs of SegmentLayout.cs to the normative tables of docs/layout.md.</summary>
public sealed partial class LayoutTests
{
    private static string LayoutDoc()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string path = Path.Combine(dir.FullName, "docs", "layout.md");
            if (File.Exists(path))
            {
                return File.ReadAllText(path);
            }
        }

        throw new FileNotFoundException("docs/layout.md not found above the test assembly");
    }

    /// <summary>Rows "| offset | size | Field |" of the table under the heading that starts with <paramref name="heading"/>.</summary>
    private static List<(int Offset, int Size, string Field)> Table(string heading)
    {
        string doc = LayoutDoc();
        int at = doc.IndexOf("### " + heading, StringComparison.Ordinal);
        Assert.True(at >= 0, $"heading '### {heading}' missing from docs/layout.md");
        int end = doc.IndexOf("\n### ", at + 4, StringComparison.Ordinal);
        string section = end < 0 ? doc[at..] : doc[at..end];
        var rows = new List<(int, int, string)>();
        foreach (Match m in Row().Matches(section))
        {
            rows.Add((int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value), m.Groups[3].Value));
        }

        Assert.NotEmpty(rows);
        return rows;
    }

    [GeneratedRegex(@"^\| (\d+) \| (\d+) \| (\w+) \|", RegexOptions.Multiline)]
    private static partial Regex Row();

    private static void AssertMatches<T>(string heading, int structSize) where T : struct
    {
        Assert.Equal(structSize, Marshal.SizeOf<T>());
        var fields = typeof(T).GetFields().ToDictionary(f => f.Name);
        var rows = Table(heading);
        foreach (var (offset, size, field) in rows)
        {
            Assert.True(fields.TryGetValue(field, out var fi), $"{typeof(T).Name} has no field {field} (docs/layout.md, {heading})");
            Assert.Equal(offset, (int)Marshal.OffsetOf<T>(field));
            var fixedAttr = fi!.GetCustomAttributes(typeof(System.Runtime.CompilerServices.FixedBufferAttribute), false).OfType<System.Runtime.CompilerServices.FixedBufferAttribute>().FirstOrDefault();
            int actual = fixedAttr is null ? Marshal.SizeOf(fi.FieldType) : fixedAttr.Length * Marshal.SizeOf(fixedAttr.ElementType);
            Assert.True(size == actual, $"{typeof(T).Name}.{field}: document says {size} bytes, struct has {actual}");
        }

        // Every field of the struct is documented.
        Assert.Equal(fields.Keys.OrderBy(k => k), rows.Select(r => r.Field).OrderBy(k => k));
    }

    [Fact]
    public void PoolHeader_offsets_match_the_document() => AssertMatches<PoolHeader>("PoolHeader", LayoutConstants.HeaderSize);

    [Fact]
    public void ProcessEntry_offsets_match_the_document() => AssertMatches<ProcessEntry>("ProcessEntry", LayoutConstants.ProcessEntrySize);

    [Fact]
    public void SlotRecord_offsets_match_the_document() => AssertMatches<SlotRecord>("SlotRecord", LayoutConstants.SlotSize);

    [Theory]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(1024)]
    [InlineData(1 << 20)]
    public void Segment_offsets_follow_the_documented_formulas(int capacity)
    {
        Assert.Equal(4096, LayoutConstants.ProcessTableOffset);
        Assert.Equal(20480, LayoutConstants.FreeHintsOffset);
        long hints = ((((capacity + 63) / 64) * 8) + 63) / 64 * 64;
        long slots = (20480 + hints + 4095) / 4096 * 4096;
        Assert.Equal(slots, LayoutConstants.SlotTableOffset(capacity));
        Assert.Equal(slots + (capacity * 512L), LayoutConstants.SegmentSize(capacity));
        Assert.Equal(0, LayoutConstants.SlotTableOffset(capacity) % 4096);
    }

    [Fact]
    public void Magic_is_XMEMPOOL_in_little_endian_bytes()
    {
        Assert.Equal("XMEMPOOL", System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(LayoutConstants.Magic)));
        Assert.Contains("0x4C4F4F504D454D58", LayoutDoc());
    }

    [Fact]
    public void Slot_word_fields_round_trip_at_the_documented_bits()
    {
        ulong w = SlotWord.Make(count: 0xABCDEF, state: SlotWord.Live, owner: 0xFFF, gen: 0x123456);
        Assert.Equal(0xABCDEF, SlotWord.Count(w));
        Assert.Equal(SlotWord.Live, SlotWord.State(w));
        Assert.Equal(0xFFF, SlotWord.Owner(w));
        Assert.Equal(0x123456u, SlotWord.Gen(w));
        Assert.Equal(0xABCDEFUL, w & 0xFFFFFF);
        Assert.Equal((ulong)SlotWord.Live, (w >> 24) & 0xF);
        Assert.Equal(0xFFFUL, (w >> 28) & 0xFFF);
        Assert.Equal(0x123456UL, w >> 40);
        Assert.Contains("bits 40..63  Generation", LayoutDoc());
    }
}
