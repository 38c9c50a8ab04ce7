using Xmem.Errors;

namespace Xmem.Layout;

/// <summary>The one check of a control segment's header against this layout, made before any field of it is used
/// (never trust shared memory): by Open, and by inspection on a private copy.</summary>
internal static unsafe class HeaderCheck
{
    /// <summary>Throws <see cref="CorruptSegmentException"/> or <see cref="IncompatibleLayoutException"/> unless the
    /// header at <paramref name="h"/>, of a file of <paramref name="fileSize"/> bytes, is a valid header of this
    /// layout version.</summary>
    internal static void Validate(PoolHeader* h, long fileSize, string bare)
    {
        if (h->Magic != LayoutConstants.Magic)
        {
            ThrowHelper.ThrowCorrupt(bare, "the control segment does not start with xmem's magic number");
        }

        if (h->LayoutVersion != LayoutConstants.LayoutVersion)
        {
            throw new IncompatibleLayoutException($"pool '{bare}' uses layout version {h->LayoutVersion}, this xmem reads version {LayoutConstants.LayoutVersion}. Use the same xmem version in every process, or remove the pool (`xmem rm {bare}`).");
        }

        int cap = h->Capacity;
        if (cap < 1 || cap > LayoutConstants.MaxCapacity)
        {
            ThrowHelper.ThrowCorrupt(bare, $"capacity {cap} is outside 1..{LayoutConstants.MaxCapacity}");
        }

        if (h->HeaderSize != LayoutConstants.HeaderSize || h->SlotSize != LayoutConstants.SlotSize || h->MaxProcesses != LayoutConstants.MaxProcesses
            || h->ProcessTableOffset != LayoutConstants.ProcessTableOffset || h->FreeHintsOffset != LayoutConstants.FreeHintsOffset
            || h->SlotTableOffset != LayoutConstants.SlotTableOffset(cap))
        {
            ThrowHelper.ThrowCorrupt(bare, "header sizes or offsets do not match the layout");
        }

        long need = LayoutConstants.SegmentSize(cap);
        if (h->SegmentSize != need || fileSize < need)
        {
            ThrowHelper.ThrowCorrupt(bare, $"the segment is {fileSize} bytes (header says {h->SegmentSize}) but capacity {cap} needs {need}");
        }
    }
}
