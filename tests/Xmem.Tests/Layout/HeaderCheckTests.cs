using Xmem.Layout;

namespace Xmem.Tests.Layout;

/// <summary>HeaderCheck is the one check of a control segment's header: for every header BufferPool.Open's own check
/// refuses, it refuses with the same exception type and message, and its non-throwing form (used by xmem ls/stat)
/// reports the same cause and message.</summary>
public sealed unsafe class HeaderCheckTests
{
    private const string Pool = "hc-pool";

    private static PoolHeader Valid(int capacity)
    {
        PoolHeader h = default;
        h.Magic = LayoutConstants.Magic;
        h.LayoutVersion = LayoutConstants.LayoutVersion;
        h.State = LayoutConstants.PoolStateReady;
        h.Capacity = capacity;
        h.MaxProcesses = LayoutConstants.MaxProcesses;
        h.SegmentSize = LayoutConstants.SegmentSize(capacity);
        h.InstanceId = 0x1234_5678_9ABC_DEF1;
        h.HeaderSize = LayoutConstants.HeaderSize;
        h.SlotSize = LayoutConstants.SlotSize;
        h.ProcessTableOffset = LayoutConstants.ProcessTableOffset;
        h.FreeHintsOffset = LayoutConstants.FreeHintsOffset;
        h.SlotTableOffset = LayoutConstants.SlotTableOffset(capacity);
        return h;
    }

    public static TheoryData<string> Cases() =>
    [
        "valid", "file-larger", "magic", "version", "capacity-0", "capacity-negative", "capacity-too-large", "header-size", "slot-size",
        "max-processes", "process-table", "free-hints", "slot-table", "segment-size", "file-short", "file-empty",
    ];

    private static (PoolHeader Header, long FileSize) Make(string @case)
    {
        PoolHeader h = Valid(64);
        long file = LayoutConstants.SegmentSize(64);
        switch (@case)
        {
            case "file-larger": file += 4096; break;
            case "magic": h.Magic ^= 1; break;
            case "version": h.LayoutVersion = 2; break;
            case "capacity-0": h.Capacity = 0; break;
            case "capacity-negative": h.Capacity = -5; break;
            case "capacity-too-large": h.Capacity = LayoutConstants.MaxCapacity + 1; break;
            case "header-size": h.HeaderSize = 8192; break;
            case "slot-size": h.SlotSize = 256; break;
            case "max-processes": h.MaxProcesses = 255; break;
            case "process-table": h.ProcessTableOffset = 0; break;
            case "free-hints": h.FreeHintsOffset += 64; break;
            case "slot-table": h.SlotTableOffset += 4096; break;
            case "segment-size": h.SegmentSize += 512; break;
            case "file-short": file -= 1; break;
            case "file-empty": file = 0; break;
        }

        return (h, file);
    }

    private static Exception? Catch(Action a)
    {
        try
        {
            a();
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void HeaderCheck_refuses_what_Open_refuses_with_the_same_exception_and_message(string @case)
    {
        (PoolHeader h, long file) = Make(@case);
        // Open checks through the pointer form (ControlSegment.Open); inspection through the copy and the no-throw form.
        Exception? open = Catch(() => { PoolHeader c = h; _ = HeaderCheck.Validate(&c, file, Pool); });
        Exception? fromPointer = open;
        Exception? fromCopy = Catch(() => HeaderCheck.Validate(in h, file, Pool));
        HeaderFault fault = HeaderCheck.Check(in h, file, Pool, out string? problem);

        Assert.Equal(@case is "valid" or "file-larger", open is null);
        foreach (Exception? e in new[] { fromPointer, fromCopy })
        {
            Assert.Equal(open?.GetType(), e?.GetType());
            Assert.Equal(open?.Message, e?.Message);
        }

        Assert.Equal(open?.Message, problem);
        Assert.Equal(open switch { null => HeaderFault.None, IncompatibleLayoutException => HeaderFault.Incompatible, _ => HeaderFault.Corrupt }, fault);
        if (open is not null)
        {
            Assert.True(open is CorruptSegmentException or IncompatibleLayoutException, open.ToString());
        }
    }

    [Fact]
    public void A_valid_header_gives_the_capacity_that_was_checked()
    {
        PoolHeader h = Valid(1000);
        Assert.Equal(1000, HeaderCheck.Validate(&h, LayoutConstants.SegmentSize(1000), Pool));
        Assert.Equal(1000, HeaderCheck.Validate(in h, LayoutConstants.SegmentSize(1000), Pool));
    }
}
