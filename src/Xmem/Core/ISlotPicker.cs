namespace Xmem.Core;

/// <summary>A ranking of hinted free slots for one kind of acquire: <see cref="SlotTable.Claim{TPicker}"/> claims
/// what it picks. The record is read without the slot claimed, so a pick is only a choice; the claimer checks the
/// claimed slot again.</summary>
internal interface ISlotPicker
{
    /// <summary>The best hinted slot now; -1 when none is hinted.</summary>
    int Pick();
}

/// <summary>The CPU acquire's ranking (<see cref="FreeHints.PickCpu"/>).</summary>
internal readonly struct CpuSlotPicker(FreeHints hints, long size) : ISlotPicker
{
    public int Pick() => hints.PickCpu(size);
}
