using System.Buffers.Binary;
using Xmem.Layout;

namespace Xmem.Tests.Pool;

/// <summary>
/// Segments written by hand into the shared-memory directory, as another program (or a hostile process) could: Open
/// must refuse each with CorruptSegmentException or IncompatibleLayoutException, never crash or trust it.
/// </summary>
public sealed class CorruptSegmentTests : PoolTest
{
    /// <summary>A header that Open would accept for <paramref name="capacity"/> slots, as bytes (whole segment).</summary>
    private static byte[] ValidSegment(int capacity)
    {
        var b = new byte[LayoutConstants.SegmentSize(capacity)];
        Span<byte> s = b;
        BinaryPrimitives.WriteUInt64LittleEndian(s, LayoutConstants.Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(s[8..], LayoutConstants.LayoutVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(s[12..], LayoutConstants.PoolStateReady);
        BinaryPrimitives.WriteInt32LittleEndian(s[16..], capacity);
        BinaryPrimitives.WriteInt32LittleEndian(s[20..], LayoutConstants.MaxProcesses);
        BinaryPrimitives.WriteInt64LittleEndian(s[24..], LayoutConstants.SegmentSize(capacity));
        BinaryPrimitives.WriteUInt64LittleEndian(s[32..], 0x1234_5678_9ABC_DEF1);
        BinaryPrimitives.WriteInt32LittleEndian(s[40..], LayoutConstants.HeaderSize);
        BinaryPrimitives.WriteInt32LittleEndian(s[44..], LayoutConstants.SlotSize);
        BinaryPrimitives.WriteInt64LittleEndian(s[48..], LayoutConstants.ProcessTableOffset);
        BinaryPrimitives.WriteInt64LittleEndian(s[56..], LayoutConstants.FreeHintsOffset);
        BinaryPrimitives.WriteInt64LittleEndian(s[64..], LayoutConstants.SlotTableOffset(capacity));
        BinaryPrimitives.WriteUInt32LittleEndian(s[76..], 0x180);
        for (int i = 0; i < capacity; i++)
        {
            s[(int)LayoutConstants.FreeHintsOffset + (i / 8)] |= (byte)(1 << (i % 8));
        }

        return b;
    }

    private string Forge(byte[] bytes)
    {
        string name = NewName("forged");
        File.WriteAllBytes(Shm.ControlPath(name), bytes);
        File.SetUnixFileMode(Shm.ControlPath(name), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return name;
    }

    private void AssertRefused<T>(byte[] bytes, string? messagePart = null) where T : Exception
    {
        string name = Forge(bytes);
        T e = Assert.Throws<T>(() => BufferPool.Open(name));
        if (messagePart is not null)
        {
            Assert.Contains(messagePart, e.Message, StringComparison.OrdinalIgnoreCase);
        }

        // A refused open leaves the file as it was: it attached nothing and made no segment.
        Assert.Equal(new[] { LayoutConstants.ObjectPrefix + name }, Shm.EntriesOf(name));
        Assert.True(BufferPool.Remove(name));
        Assert.Empty(Shm.EntriesOf(name));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    public void Remove_ControlSegmentShorterThanItsHeader_RemovesIt(int length)
    {
        string name = Forge(new byte[length]);
        Assert.True(BufferPool.Remove(name));
        Assert.Empty(Shm.EntriesOf(name));
    }

    [Fact]
    public void Remove_SegmentWithBadMagic_RemovesIt()
    {
        byte[] b = ValidSegment(4);
        b[0] ^= 0xFF;
        string name = Forge(b);
        Assert.True(BufferPool.Remove(name));
        Assert.Empty(Shm.EntriesOf(name));
    }

    [Fact]
    public void ForgedValidSegment_IsAccepted_SoTheOtherCasesTestOneFieldEach()
    {
        string name = Forge(ValidSegment(4));
        using (BufferPool pool = BufferPool.Open(name))
        {
            Assert.Equal(4, pool.Capacity);
            using BufferGuard g = pool.AcquireCpu(10);
            Assert.Equal(0, g.MetaIndex);
        }

        Assert.Empty(Shm.EntriesOf(name));
    }

    [Fact]
    public void EmptyFile_IsCorrupt() => AssertRefused<CorruptSegmentException>([]);

    [Fact]
    public void FileShorterThanHeader_IsCorrupt() => AssertRefused<CorruptSegmentException>(ValidSegment(4)[..100]);

    [Fact]
    public void Garbage_IsCorrupt()
    {
        var bytes = new byte[64 * 1024];
        new Random(42).NextBytes(bytes);
        AssertRefused<CorruptSegmentException>(bytes);
    }

    [Fact]
    public void WrongMagic_IsCorrupt()
    {
        byte[] b = ValidSegment(4);
        b[0] ^= 0xFF;
        AssertRefused<CorruptSegmentException>(b, "magic");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(2u)]
    [InlineData(0xFFFFFFFFu)]
    public void OtherLayoutVersion_IsIncompatible(uint version)
    {
        byte[] b = ValidSegment(4);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), version);
        AssertRefused<IncompatibleLayoutException>(b, "version");
    }

    [Fact]
    public void NeverFinishedByADeadCreator_IsCorrupt()
    {
        byte[] b = ValidSegment(4);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), LayoutConstants.PoolStateInitializing);
        AssertRefused<CorruptSegmentException>(b);
    }

    [Fact]
    public void UnknownState_IsCorrupt()
    {
        byte[] b = ValidSegment(4);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), 77);
        AssertRefused<CorruptSegmentException>(b);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    [InlineData(1_048_577)]
    [InlineData(int.MaxValue)]
    public void CapacityOutOfRange_IsCorrupt(int capacity)
    {
        byte[] b = ValidSegment(4);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(16), capacity);
        AssertRefused<CorruptSegmentException>(b);
    }

    [Fact]
    public void CapacityLargerThanTheFile_IsCorrupt()
    {
        // Header claims 1000 slots (and the matching sizes) but the file holds 4.
        byte[] b = ValidSegment(4);
        byte[] big = ValidSegment(1000);
        Array.Copy(big, b, 128);
        AssertRefused<CorruptSegmentException>(b);
    }

    [Fact]
    public void TruncatedFile_IsCorrupt()
    {
        byte[] b = ValidSegment(64);
        AssertRefused<CorruptSegmentException>(b[..(b.Length - LayoutConstants.SlotSize)]);
    }

    [Theory]
    [InlineData(24, 8)]  // segment size
    [InlineData(40, 4)]  // header size
    [InlineData(44, 4)]  // slot size
    [InlineData(20, 4)]  // max processes
    [InlineData(48, 8)]  // process table offset
    [InlineData(56, 8)]  // free hints offset
    [InlineData(64, 8)]  // slot table offset
    public void SizeOrOffsetField_Wrong_IsCorrupt(int offset, int width)
    {
        byte[] b = ValidSegment(4);
        if (width == 4)
        {
            BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(offset), BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(offset)) + 8);
        }
        else
        {
            BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(offset), BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(offset)) + 4096);
        }

        AssertRefused<CorruptSegmentException>(b);
    }

    [Fact]
    public void Exists_SeesAForgedSegment()
    {
        string name = Forge(new byte[10]);
        Assert.True(BufferPool.Exists(name));
        Shm.ForceRemove(name);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    [InlineData(8192)]
    public void Create_OverAStaleSegmentThatIsNoPool_TakesTheNameOver(int length)
    {
        // Zeros: no magic, no instance id, no live process.
        string name = Forge(new byte[length]);
        using BufferPool pool = BufferPool.Create(name, 2);
        using BufferGuard g = pool.AcquireCpu(8);
        Assert.Equal(0, g.MetaIndex);
    }

    [Fact]
    public void SlotWithLiveButDamagedRecord_IsRefusedOnGet_NotTrusted()
    {
        // A live slot whose size exceeds its memory: Get must refuse it rather than map past the segment.
        byte[] b = ValidSegment(4);
        int slot = (int)LayoutConstants.SlotTableOffset(4);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(slot), SlotWord.Make(1, SlotWord.Live, 0, 1));
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(slot + 8), 1 << 20);   // size
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(slot + 16), 4096);     // data capacity
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(slot + 24), 1);       // memory generation
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(slot + 28), LayoutConstants.KindCpu);
        b[(int)LayoutConstants.FreeHintsOffset] &= 0xFE;
        string name = Forge(b);
        using (BufferPool pool = BufferPool.Open(name))
        {
            Assert.Throws<CorruptSegmentException>(() => pool.Get(0));
            Assert.Equal(1, pool.RefCount(0));
        }

        Shm.ForceRemove(name);
    }
}
