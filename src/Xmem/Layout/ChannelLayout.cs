using System.Numerics;
using System.Runtime.InteropServices;

namespace Xmem.Layout;

// This file mirrors docs/layout.md, "Channels" (normative). Little-endian, 64-bit, atomics naturally aligned.

/// <summary>Constants of the channel segment, layout version 1.</summary>
internal static class ChannelLayout
{
    internal const ulong Magic = 0x4E4148434D454D58; // "XMEMCHAN" read as little-endian bytes
    internal const uint Version = 1;
    internal const int HeaderSize = 256;
    internal const int RingHeaderSize = 128;
    internal const int CellSize = 16;
    internal const int MaxDepth = 1 << 16;
    internal const int MaxSubscribers = 16;
    internal const int MaxNameLength = 48;

    internal const uint StateInitializing = 0;
    internal const uint StateReady = 1;

    internal const uint ModeQueue = 0;
    internal const uint ModeFanOut = 1;

    internal static long RingStride(int depth) => ((RingHeaderSize + ((long)depth * CellSize)) + 63) & ~63L;

    internal static long SegmentSize(int depth, int rings) => HeaderSize + (rings * RingStride(depth));
}

/// <summary>The channel segment's header (256 bytes at offset 0).</summary>
[StructLayout(LayoutKind.Explicit, Size = ChannelLayout.HeaderSize)]
internal unsafe struct ChannelHeader
{
    [FieldOffset(0)] public ulong Magic;
    [FieldOffset(8)] public uint Version;
    [FieldOffset(12)] public uint State;
    [FieldOffset(16)] public int Depth;
    [FieldOffset(20)] public uint Mode;
    [FieldOffset(24)] public int RingCount;
    [FieldOffset(32)] public ulong InstanceId;
    [FieldOffset(40)] public ulong PoolInstance;
    [FieldOffset(48)] public long SegmentSize;
    [FieldOffset(56)] public int NameLength;
    [FieldOffset(64)] public fixed byte Name[64];
    [FieldOffset(128)] public ulong Sent;
    [FieldOffset(136)] public ulong SendWaits;
    [FieldOffset(144)] public ulong SendBlockedNs;
    [FieldOffset(160)] public fixed ulong BlockedSenders[4];
    [FieldOffset(192)] public ulong Received;
    [FieldOffset(200)] public ulong ReceiveWaits;
    [FieldOffset(224)] public fixed ulong BlockedReceivers[4];
}

/// <summary>One ring's header (128 bytes; the producer and consumer sides on separate cache lines).</summary>
[StructLayout(LayoutKind.Explicit, Size = ChannelLayout.RingHeaderSize)]
internal struct RingHeader
{
    [FieldOffset(0)] public ulong Tail;
    [FieldOffset(8)] public uint DataEpoch;
    [FieldOffset(64)] public ulong Head;
    [FieldOffset(72)] public uint SpaceEpoch;
    [FieldOffset(80)] public uint Subscriber;
}

/// <summary>One cell of a ring (16 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = ChannelLayout.CellSize)]
internal struct RingCell
{
    [FieldOffset(0)] public ulong Word;
    [FieldOffset(8)] public int Slot;
    [FieldOffset(12)] public uint Gen;
}

/// <summary>
/// The cell word: <c>lap (32) | phase (4) | claimer tag (12) | claimer incarnation (16)</c>. A cell with lap L
/// serves position L of the ring (positions compare modulo 2^32).
/// </summary>
internal static class CellWord
{
    internal const uint Empty = 0;   // waiting for the writer of this lap
    internal const uint Writing = 1; // claimed by a sender (tag, incarnation)
    internal const uint Full = 2;    // holds one reference, owned by the channel
    internal const uint Reading = 3; // claimed by a receiver (tag, incarnation)
    internal const uint Void = 4;    // abandoned by a sender that died before committing: skipped

    internal static uint Lap(ulong c) => (uint)c;
    internal static uint Phase(ulong c) => (uint)(c >> 32) & 0xF;
    internal static int Tag(ulong c) => (int)((c >> 36) & 0xFFF);
    internal static ushort Incarnation(ulong c) => (ushort)(c >> 48);

    internal static ulong Make(uint lap, uint phase, int tag = 0, ushort incarnation = 0) =>
        lap | ((ulong)(phase & 0xF) << 32) | ((ulong)((uint)tag & 0xFFF) << 36) | ((ulong)incarnation << 48);
}

/// <summary>The subscriber word of a fan-out ring: <c>state (4) | tag (12) | incarnation (16)</c>; 0 = free.</summary>
internal static class SubscriberWord
{
    internal const uint Active = 1;

    internal static uint State(uint s) => s & 0xF;
    internal static int Tag(uint s) => (int)((s >> 4) & 0xFFF);
    internal static ushort Incarnation(uint s) => (ushort)(s >> 16);
    internal static uint Make(uint state, int tag, ushort incarnation) => (state & 0xF) | ((uint)(tag & 0xFFF) << 4) | ((uint)incarnation << 16);
}

/// <summary>The 256-bit masks BlockedSenders and BlockedReceivers of the channel header: bit i = process entry i has a
/// thread waiting.</summary>
internal static unsafe class BlockedMask
{
    internal const int Words = 4;

    /// <summary>The set bits of <paramref name="mask"/> whose entry <paramref name="waiting"/> confirms (alive, with
    /// channel waiters): a dead owner's bit is not counted.</summary>
    internal static int Count(ulong* mask, Func<int, bool> waiting)
    {
        int n = 0;
        for (int word = 0; word < Words; word++)
        {
            ulong bits = Volatile.Read(ref mask[word]);
            while (bits != 0)
            {
                int i = (word * 64) + BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                n += waiting(i) ? 1 : 0;
            }
        }

        return n;
    }
}
