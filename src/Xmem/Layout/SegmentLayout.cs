using System.Runtime.InteropServices;

namespace Xmem.Layout;

// This file mirrors docs/layout.md, which is normative: every offset and size here is pinned to the document by
// LayoutTests. Change the document first, bump LayoutVersion, then this file.
//
// Preconditions: little-endian, 64-bit, every atomic field naturally aligned (the segment is page aligned and each
// atomic's offset is a multiple of its size).

/// <summary>Constants of layout version 1.</summary>
internal static class LayoutConstants
{
    internal const ulong Magic = 0x4C4F4F504D454D58; // "XMEMPOOL" read as little-endian bytes
    internal const uint LayoutVersion = 1;
    internal const string ObjectPrefix = SharedMemory.SegmentNames.Prefix;
    internal const int HeaderSize = 4096;
    internal const int SlotSize = 512;
    internal const int ProcessEntrySize = 64;
    internal const int MaxProcesses = 256;
    internal const int MaxCapacity = 1 << 20;
    internal const int MaxNameLength = SharedMemory.SegmentNames.MaxPoolNameLength;
    internal const int PageSize = 4096;

    internal const uint PoolStateInitializing = 0;
    internal const uint PoolStateReady = 1;
    internal const uint PoolStateRemoving = 2;
    internal const uint PoolStateRemoved = 3;

    internal const uint PoolFlagPersistent = 1;

    internal const uint ProcessFree = 0;
    internal const uint ProcessActive = 1;
    internal const uint ProcessRegistering = 2;

    internal const ushort KindNone = 0;
    internal const ushort KindCpu = 1;
    internal const ushort KindCuda = 2;

    /// <summary>CUDA memory from <c>cuMemCreate</c>, shared by POSIX file descriptor from its exporter's socket
    /// (docs/layout.md, "CudaVmmExport"); Kind 2 is <c>cuMemAlloc</c> memory shared by IPC handle.</summary>
    internal const ushort KindCudaVmm = 3;

    /// <summary>True for either kind of CUDA memory.</summary>
    internal static bool IsCuda(ushort kind) => kind is KindCuda or KindCudaVmm;

    internal static long ProcessTableOffset => HeaderSize;
    internal static long FreeHintsOffset => ProcessTableOffset + (MaxProcesses * ProcessEntrySize);
    internal static long FreeHintsBytes(int capacity) => AlignUp(((capacity + 63) / 64) * 8L, 64);
    internal static long SlotTableOffset(int capacity) => AlignUp(FreeHintsOffset + FreeHintsBytes(capacity), PageSize);
    internal static long SegmentSize(int capacity) => SlotTableOffset(capacity) + ((long)capacity * SlotSize);

    internal static long AlignUp(long value, long alignment) => (value + alignment - 1) & ~(alignment - 1);

    /// <summary>Byte of the control segment whose OFD write lock marks process entry <paramref name="entry"/> as alive:
    /// the entry's own first byte.</summary>
    internal static long LivenessLockByte(int entry) => ProcessTableOffset + ((long)entry * ProcessEntrySize);

    /// <summary>Byte locked while a stale pool is being replaced or removed (the magic's first byte).</summary>
    internal const long RemovalLockByte = 0;
}

/// <summary>The control segment's header (4096 bytes at offset 0).</summary>
[StructLayout(LayoutKind.Explicit, Size = LayoutConstants.HeaderSize)]
internal unsafe struct PoolHeader
{
    [FieldOffset(0)] public ulong Magic;
    [FieldOffset(8)] public uint LayoutVersion;
    [FieldOffset(12)] public uint State;
    [FieldOffset(16)] public int Capacity;
    [FieldOffset(20)] public int MaxProcesses;
    [FieldOffset(24)] public long SegmentSize;
    [FieldOffset(32)] public ulong InstanceId;
    [FieldOffset(40)] public int HeaderSize;
    [FieldOffset(44)] public int SlotSize;
    [FieldOffset(48)] public long ProcessTableOffset;
    [FieldOffset(56)] public long FreeHintsOffset;
    [FieldOffset(64)] public long SlotTableOffset;
    [FieldOffset(72)] public uint Flags;
    [FieldOffset(76)] public uint Mode;
    [FieldOffset(80)] public long CreatedUnixNs;
    [FieldOffset(88)] public int CreatorPid;
    [FieldOffset(128)] public uint FreeEpoch;
    [FieldOffset(192)] public fixed ulong WaitMask[4];
    [FieldOffset(256)] public long ChannelTableOffset;
    [FieldOffset(264)] public int ChannelCount;
    [FieldOffset(384)] public ulong Acquires;
    [FieldOffset(392)] public ulong AcquireWaits;
    [FieldOffset(400)] public ulong Recoveries;
    [FieldOffset(408)] public ulong OrphansRemoved;
}

/// <summary>One entry of the attached-process table (64 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = LayoutConstants.ProcessEntrySize)]
internal unsafe struct ProcessEntry
{
    [FieldOffset(0)] public uint State;
    [FieldOffset(4)] public int Pid;
    [FieldOffset(8)] public ulong StartTime;
    [FieldOffset(16)] public int Waiters;
    [FieldOffset(20)] public uint Incarnation;
    [FieldOffset(24)] public fixed byte Comm[16];
    [FieldOffset(40)] public int ChannelWaiters;
}

/// <summary>One slot of the slot table (512 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = LayoutConstants.SlotSize)]
internal unsafe struct SlotRecord
{
    [FieldOffset(0)] public ulong Word;
    [FieldOffset(8)] public long Size;
    [FieldOffset(16)] public long DataCapacity;
    [FieldOffset(24)] public uint MemGen;
    [FieldOffset(28)] public ushort Kind;
    [FieldOffset(30)] public short DeviceId;
    [FieldOffset(32)] public ulong JournalHoldings;
    [FieldOffset(40)] public uint JournalOwner;
    [FieldOffset(48)] public long CudaOffset;
    [FieldOffset(56)] public long CudaAllocSize;
    [FieldOffset(64)] public fixed byte CudaIpcMemHandle[64];
    [FieldOffset(128)] public fixed byte CudaIpcEventHandle[64];
    [FieldOffset(192)] public uint DescVersion;
    [FieldOffset(196)] public byte DType;
    [FieldOffset(197)] public byte NDim;
    [FieldOffset(200)] public ulong Seq;
    [FieldOffset(208)] public long TimestampNs;
    [FieldOffset(216)] public ulong JournalWord;
    [FieldOffset(224)] public fixed long Shape[8];
    [FieldOffset(288)] public fixed long Strides[8];
    [FieldOffset(352)] public fixed byte ContentType[32];
    [FieldOffset(384)] public fixed byte ProducerTag[32];
}

/// <summary>Where a Kind 3 slot's exporter serves its allocation's file descriptor: in the first 16 bytes of the
/// slot's CudaIpcMemHandle field (docs/layout.md, "CudaVmmExport"); the field's other 48 bytes are zero.</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct CudaVmmExport
{
    [FieldOffset(0)] public int ExporterPid;
    [FieldOffset(4)] public uint Reserved;
    [FieldOffset(8)] public ulong ExporterToken;
}

/// <summary>
/// The slot word: the one 64-bit atomic that decides a slot's state, count, lock and generation.
/// <code>
/// bits  0..23  reference count (0 .. 16,777,215)
/// bits 24..27  state: Free 0, Acquiring 1, Live 2
/// bits 28..39  lock owner: process entry + 1 (0 = unlocked)
/// bits 40..63  generation (incremented by each acquire; wraps)
/// </code>
/// </summary>
internal static class SlotWord
{
    internal const int CountBits = 24;
    internal const ulong CountMask = (1UL << CountBits) - 1;
    internal const int MaxCount = (int)CountMask;
    internal const int StateShift = 24;
    internal const ulong StateMask = 0xFUL << StateShift;
    internal const int OwnerShift = 28;
    internal const ulong OwnerMask = 0xFFFUL << OwnerShift;
    internal const int GenShift = 40;
    internal const uint GenMask = 0xFFFFFF;

    internal const uint Free = 0;
    internal const uint Acquiring = 1;
    internal const uint Live = 2;

    internal static int Count(ulong w) => (int)(w & CountMask);
    internal static uint State(ulong w) => (uint)((w & StateMask) >> StateShift);
    internal static int Owner(ulong w) => (int)((w & OwnerMask) >> OwnerShift);
    internal static uint Gen(ulong w) => (uint)(w >> GenShift);

    internal static ulong Make(int count, uint state, int owner, uint gen) =>
        ((ulong)(uint)count & CountMask) | ((ulong)state << StateShift) | ((ulong)(uint)owner << OwnerShift) | ((ulong)(gen & GenMask) << GenShift);

    internal static ulong WithOwner(ulong w, int owner) => (w & ~OwnerMask) | ((ulong)(uint)owner << OwnerShift);
}

/// <summary>A process's holding of one slot: <c>generation &lt;&lt; 32 | count</c>, in the process's holdings segment.</summary>
internal static class Holding
{
    internal static uint Gen(ulong h) => (uint)(h >> 32);
    internal static int Count(ulong h) => (int)(uint)h;
    internal static ulong Make(uint gen, int count) => ((ulong)gen << 32) | (uint)count;

    /// <summary>The count held for <paramref name="gen"/>: a holding of another generation counts as none.</summary>
    internal static int CountFor(ulong h, uint gen) => Gen(h) == gen ? Count(h) : 0;
}
