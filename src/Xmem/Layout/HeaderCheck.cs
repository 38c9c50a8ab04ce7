using Xmem.Errors;

namespace Xmem.Layout;

/// <summary>What is wrong with a control segment's header, if anything.</summary>
internal enum HeaderFault
{
    /// <summary>A valid header of this layout version.</summary>
    None,

    /// <summary>Not a pool of this layout: reported as <see cref="CorruptSegmentException"/>.</summary>
    Corrupt,

    /// <summary>A pool of another layout version: reported as <see cref="IncompatibleLayoutException"/>.</summary>
    Incompatible,
}

/// <summary>
/// The one check of a control segment's header (docs/layout.md, "PoolHeader": a reader checks Magic, LayoutVersion,
/// Capacity, MaxProcesses, HeaderSize, SlotSize, the three offsets and SegmentSize against the formulas and against the
/// file's real size), used by everything that reads a pool: opening it and looking at it from outside. It never looks
/// at State (what a state means is its reader's business) and never writes.
/// <para>Every field is read once, from a private copy, so a header that another process changes while it is checked
/// cannot pass one test with one value and the next with another; the capacity returned is the one checked, and the
/// caller uses it rather than reading the field again.</para>
/// </summary>
internal static unsafe class HeaderCheck
{
    /// <summary>Checks the header at <paramref name="h"/> (in a mapping of at least <see cref="LayoutConstants.HeaderSize"/>
    /// bytes) of a control segment of <paramref name="fileSize"/> bytes and returns its capacity. Throws
    /// <see cref="IncompatibleLayoutException"/> for another layout version and <see cref="CorruptSegmentException"/>
    /// for anything else that is not a pool of this layout.</summary>
    internal static int Validate(PoolHeader* h, long fileSize, string bare)
    {
        // Safety: the caller maps at least HeaderSize bytes at h; the copy is taken once and only the copy is checked.
        PoolHeader copy = *h;
        return Validate(in copy, fileSize, bare);
    }

    /// <summary>As <see cref="Validate(PoolHeader*, long, string)"/>, on a header already copied out of the segment.</summary>
    internal static int Validate(in PoolHeader h, long fileSize, string bare)
    {
        switch (Check(in h, fileSize, bare, out string? problem))
        {
            case HeaderFault.None:
                return h.Capacity;
            case HeaderFault.Incompatible:
                throw new IncompatibleLayoutException(problem!);
            default:
                throw new CorruptSegmentException(problem!);
        }
    }

    /// <summary>Checks a copied header without throwing. <paramref name="problem"/> is the message the exception of
    /// <see cref="Validate(in PoolHeader, long, string)"/> would carry (null when the header is valid).</summary>
    internal static HeaderFault Check(in PoolHeader h, long fileSize, string bare, out string? problem)
    {
        if (h.Magic != LayoutConstants.Magic)
        {
            return Corrupt(bare, "the control segment does not start with xmem's magic number", out problem);
        }

        if (h.LayoutVersion != LayoutConstants.LayoutVersion)
        {
            problem = $"pool '{bare}' uses layout version {h.LayoutVersion}, this xmem reads version {LayoutConstants.LayoutVersion}. Use the same xmem version in every process, or remove the pool (`xmem rm {bare}`).";
            return HeaderFault.Incompatible;
        }

        int cap = h.Capacity;
        if (cap < 1 || cap > LayoutConstants.MaxCapacity)
        {
            return Corrupt(bare, $"capacity {cap} is outside 1..{LayoutConstants.MaxCapacity}", out problem);
        }

        if (h.HeaderSize != LayoutConstants.HeaderSize || h.SlotSize != LayoutConstants.SlotSize || h.MaxProcesses != LayoutConstants.MaxProcesses
            || h.ProcessTableOffset != LayoutConstants.ProcessTableOffset || h.FreeHintsOffset != LayoutConstants.FreeHintsOffset
            || h.SlotTableOffset != LayoutConstants.SlotTableOffset(cap))
        {
            return Corrupt(bare, "header sizes or offsets do not match the layout", out problem);
        }

        long need = LayoutConstants.SegmentSize(cap);
        if (h.SegmentSize != need || fileSize < need)
        {
            return Corrupt(bare, $"the segment is {fileSize} bytes (header says {h.SegmentSize}) but capacity {cap} needs {need}", out problem);
        }

        problem = null;
        return HeaderFault.None;
    }

    private static HeaderFault Corrupt(string bare, string what, out string problem)
    {
        problem = ThrowHelper.CorruptMessage(bare, what);
        return HeaderFault.Corrupt;
    }
}
