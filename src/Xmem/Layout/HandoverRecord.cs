using System.Runtime.InteropServices;

namespace Xmem.Layout;

/// <summary>
/// The channel handover record: the bytes of a slot record that belong to channels (docs/layout.md, "Handover record
/// (in the slot record)"), as an overlay of <see cref="SlotRecord"/> with explicit offsets. Only the fields of that
/// table are declared; every other byte is the core's. HandoverState shares the aligned 8-byte word at 40 with the
/// core's JournalOwner, so that one 8-byte store (<see cref="JournalOwnerAndState"/>) clears the core's journal and
/// marks the handover committed at once; the core writes JournalOwner only as a 4-byte field and never writes bytes
/// 44..47 or 416..511.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = LayoutConstants.SlotSize)]
internal unsafe struct HandoverRecord
{
    /// <summary>Offset of the 8-byte word made of JournalOwner (low half) and HandoverState (high half).</summary>
    internal const int JournalOwnerWordOffset = 40;

    /// <summary>Bytes of HandoverName: the longest channel name.</summary>
    internal const int MaxNameLength = 48;

    internal const uint StateNone = 0;
    internal const uint StatePending = 1;
    internal const uint StateCommitted = 2;

    internal const uint KindSend = 1;
    internal const uint KindReceive = 2;

    [FieldOffset(44)] public uint HandoverState;
    [FieldOffset(416)] public uint HandoverTag;
    [FieldOffset(420)] public uint HandoverKind;
    [FieldOffset(424)] public uint HandoverGen;
    [FieldOffset(428)] public int HandoverRing;
    [FieldOffset(432)] public ulong HandoverChannel;
    [FieldOffset(440)] public ulong HandoverPosition;
    [FieldOffset(448)] public int HandoverNameLength;
    [FieldOffset(452)] public fixed byte HandoverName[MaxNameLength];

    /// <summary>The value of the 8-byte word at <see cref="JournalOwnerWordOffset"/> with JournalOwner =
    /// <paramref name="journalOwner"/> and HandoverState = <paramref name="state"/> (little-endian: the state is the
    /// high half).</summary>
    internal static ulong JournalOwnerAndState(uint journalOwner, uint state) => ((ulong)state << 32) | journalOwner;
}
