using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Xmem.Channels;
using Xmem.Layout;
using Xunit;

namespace Xmem.Tests;

/// <summary>Pins the structs of SegmentLayout.cs, ChannelLayout.cs and HandoverRecord.cs to the normative tables
/// of docs/layout.md.</summary>
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

    [Fact]
    public void CudaVmmExport_offsets_match_the_document_and_fit_in_CudaIpcMemHandle()
    {
        AssertMatches<CudaVmmExport>("CudaVmmExport", 16);
        Assert.Equal(64, (int)Marshal.OffsetOf<SlotRecord>(nameof(SlotRecord.CudaIpcMemHandle)));
        Assert.True(Marshal.SizeOf<CudaVmmExport>() <= 64);
        Assert.Equal(3, LayoutConstants.KindCudaVmm);
    }

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

    [Fact]
    public void ChannelHeader_offsets_match_the_document() => AssertMatches<ChannelHeader>("ChannelHeader", ChannelLayout.HeaderSize);

    [Fact]
    public void RingHeader_offsets_match_the_document() => AssertMatches<RingHeader>("RingHeader", ChannelLayout.RingHeaderSize);

    [Fact]
    public void Cell_offsets_match_the_document() => AssertMatches<RingCell>("Cell", ChannelLayout.CellSize);

    [Fact]
    public void Handover_record_offsets_match_the_document() => AssertMatches<HandoverRecord>("Handover record", LayoutConstants.SlotSize);

    [Fact]
    public void Handover_record_shares_the_aligned_word_at_40_with_JournalOwner_and_overlays_only_reserved_bytes()
    {
        Assert.Equal(HandoverRecord.JournalOwnerWordOffset, (int)Marshal.OffsetOf<SlotRecord>(nameof(SlotRecord.JournalOwner)));
        Assert.Equal(0, HandoverRecord.JournalOwnerWordOffset % 8);
        Assert.Equal(HandoverRecord.JournalOwnerWordOffset + 4, (int)Marshal.OffsetOf<HandoverRecord>(nameof(HandoverRecord.HandoverState)));
        Assert.Equal(0x0000_0002_0000_0007UL, HandoverRecord.JournalOwnerAndState(7, HandoverRecord.StateCommitted));

        // The record's bytes (44..47, 416..499) are no field of the core's SlotRecord: the core never writes them.
        var core = typeof(SlotRecord).GetFields().Select(f => (int)Marshal.OffsetOf<SlotRecord>(f.Name)).ToHashSet();
        Assert.DoesNotContain(44, core);
        Assert.True(core.Max() < 416, "a SlotRecord field lies in the handover record's bytes 416..511");
        Assert.Equal(500, (int)Marshal.OffsetOf<HandoverRecord>(nameof(HandoverRecord.HandoverName)) + HandoverRecord.MaxNameLength);
        Assert.Equal(ChannelLayout.MaxNameLength, HandoverRecord.MaxNameLength);
        Assert.Contains("1. Write 416..499", LayoutDoc());
    }

    [Fact]
    public void Handover_record_values_are_the_documented_ones()
    {
        string doc = LayoutDoc();
        Assert.Contains("| 44 | 4 | HandoverState | 0 none, 1 Pending, 2 Committed.", doc);
        Assert.Contains("| 420 | 4 | HandoverKind | 1 send, 2 receive |", doc);
        Assert.Equal((0u, 1u, 2u), (HandoverRecord.StateNone, HandoverRecord.StatePending, HandoverRecord.StateCommitted));
        Assert.Equal((1u, 2u), (HandoverRecord.KindSend, HandoverRecord.KindReceive));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(8, 1)]
    [InlineData(5, 16)]
    [InlineData(1 << 16, 16)]
    public void Channel_segment_follows_the_documented_formulas(int depth, int rings)
    {
        long stride = (128 + (16L * depth) + 63) / 64 * 64;
        Assert.Equal(stride, ChannelLayout.RingStride(depth));
        Assert.Equal(256 + (rings * stride), ChannelLayout.SegmentSize(depth, rings));
        string doc = LayoutDoc();
        Assert.Contains("`RingStride(depth) = align64(128 + 16 × depth)`; ring `k` is at `256 + k × RingStride`.", doc);
        Assert.Contains("`256 + RingCount × RingStride(Depth)`", doc);
        Assert.Contains("Depth a power of two in 1..65536, RingCount = 1", doc);
        Assert.Contains("(queue) or 16 (fan-out", doc);
        Assert.Equal((1 << 16, 16), (ChannelLayout.MaxDepth, ChannelLayout.MaxSubscribers));
    }

    [Fact]
    public void Channel_magic_is_XMEMCHAN_in_little_endian_bytes_and_words_pack_at_the_documented_bits()
    {
        Assert.Equal("XMEMCHAN", System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(ChannelLayout.Magic)));
        Assert.Contains("0x4E4148434D454D58", LayoutDoc());

        // Cell word: lap(32) | phase(4) << 32 | tag(12) << 36 | incarnation(16) << 48.
        ulong c = CellWord.Make(0x89AB_CDEF, CellWord.Void, 0xFFF, 0xBEEF);
        Assert.Equal(0x89AB_CDEFUL, c & 0xFFFF_FFFF);
        Assert.Equal((ulong)CellWord.Void, (c >> 32) & 0xF);
        Assert.Equal(0xFFFUL, (c >> 36) & 0xFFF);
        Assert.Equal(0xBEEFUL, c >> 48);
        Assert.Equal((0u, 1u, 2u, 3u, 4u), (CellWord.Empty, CellWord.Writing, CellWord.Full, CellWord.Reading, CellWord.Void));
        Assert.Contains(@"`lap(32) \| phase(4) << 32 \| tag(12) << 36 \| incarnation(16) << 48`", LayoutDoc());

        // Subscriber word: state(4) | tag(12) << 4 | incarnation(16) << 16.
        uint s = SubscriberWord.Make(SubscriberWord.Active, 0xABC, 0x1234);
        Assert.Equal(0x1234_ABC1u, s);
    }
}
