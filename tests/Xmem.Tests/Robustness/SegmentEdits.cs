using System.Buffers.Binary;
using System.Globalization;
using Microsoft.Win32.SafeHandles;
using Xmem.Layout;

namespace Xmem.Tests.Robustness;

/// <summary>One damaged pool on disk, as edits see it: its control file and the values they are relative to.</summary>
internal sealed class EditTarget(string name, int capacity, ulong instance, SafeFileHandle control)
{
    public string Name { get; } = name;

    public int Capacity { get; } = capacity;

    public ulong Instance { get; } = instance;

    public long SegmentSize => LayoutConstants.SegmentSize(Capacity);

    public SafeFileHandle Control { get; } = control;

    public long SlotOffset(int slot) => LayoutConstants.SlotTableOffset(Capacity) + ((long)Math.Abs(slot % Capacity) * LayoutConstants.SlotSize);

    public static long EntryOffset(int entry) => LayoutConstants.ProcessTableOffset + ((long)entry * LayoutConstants.ProcessEntrySize);

    public string PathOf(string objectSuffix) => Path.Combine(Shm.Directory, $"{LayoutConstants.ObjectPrefix}{Name}.{Instance:x16}.{objectSuffix}");

    public void Write(long offset, int width, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        RandomAccess.Write(Control, b[..width], offset);
    }

    public ulong Read(long offset, int width)
    {
        Span<byte> b = stackalloc byte[8];
        b.Clear();
        _ = RandomAccess.Read(Control, b[..width], offset);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }
}

/// <summary>A value an edit writes: absolute, or relative to the pool's capacity or segment size (so that "one
/// more than the capacity" stays hostile whatever the capacity).</summary>
public readonly record struct HostileValue(char Base, long Delta)
{
    internal ulong Resolve(EditTarget t) => Base switch
    {
        'c' => (ulong)(t.Capacity + Delta),
        's' => (ulong)(t.SegmentSize + Delta),
        _ => (ulong)Delta,
    };

    public override string ToString() => Base switch
    {
        'c' => string.Create(CultureInfo.InvariantCulture, $"capacity{Delta:+0;-0;+0}"),
        's' => string.Create(CultureInfo.InvariantCulture, $"segment_size{Delta:+0;-0;+0}"),
        _ => string.Create(CultureInfo.InvariantCulture, $"0x{(ulong)Delta:x}"),
    };
}

/// <summary>One change to a pool's segments, of the kind a dead, buggy or hostile process (or a stray program) can
/// make. Records, so that CsCheck prints a failing batch readably.</summary>
public abstract record SegmentEdit
{
    internal abstract void Apply(EditTarget t);
}

/// <summary>Random bytes somewhere in a region of the control segment (offset taken modulo the region).</summary>
public sealed record RawBytesEdit(string Region, long Offset, byte[] Bytes) : SegmentEdit
{
    internal override void Apply(EditTarget t)
    {
        (long start, long length) = Region switch
        {
            "header" => (0L, 320L),
            "processes" => (LayoutConstants.ProcessTableOffset, (long)LayoutConstants.MaxProcesses * LayoutConstants.ProcessEntrySize),
            "hints" => (LayoutConstants.FreeHintsOffset, LayoutConstants.FreeHintsBytes(t.Capacity)),
            _ => (LayoutConstants.SlotTableOffset(t.Capacity), (long)t.Capacity * LayoutConstants.SlotSize),
        };
        long at = start + (Math.Abs(Offset) % length);
        int n = (int)Math.Min(Bytes.Length, start + length - at);
        RandomAccess.Write(t.Control, Bytes.AsSpan(0, n), at);
    }

    public override string ToString() => $"RawBytes({Region}+{Offset}, {Convert.ToHexString(Bytes)})";
}

/// <summary>A header field set to a hostile value.</summary>
public sealed record HeaderFieldEdit(string Field, int Offset, int Width, HostileValue Value) : SegmentEdit
{
    internal override void Apply(EditTarget t) => t.Write(Offset, Width, Value.Resolve(t));

    public override string ToString() => $"Header.{Field} = {Value}";
}

/// <summary>Capacity, slot table offset and segment size changed together to another capacity: a header that is
/// consistent in itself but describes a different table than the one on disk.</summary>
public sealed record CapacityEdit(int NewCapacity) : SegmentEdit
{
    internal override void Apply(EditTarget t)
    {
        t.Write(16, 4, (uint)NewCapacity);
        t.Write(64, 8, (ulong)LayoutConstants.SlotTableOffset(NewCapacity));
        t.Write(24, 8, (ulong)LayoutConstants.SegmentSize(NewCapacity));
    }
}

/// <summary>A field of a slot record set to a hostile value.</summary>
public sealed record SlotFieldEdit(int Slot, string Field, int Offset, int Width, HostileValue Value) : SegmentEdit
{
    internal override void Apply(EditTarget t) => t.Write(t.SlotOffset(Slot) + Offset, Width, Value.Resolve(t));

    public override string ToString() => $"Slot[{Slot}].{Field} = {Value}";
}

/// <summary>A slot word built from hostile parts: a count, a state (above 2 is corrupt), a lock owner tag (above
/// 256 is corrupt; 1 is the entry a lone opener lands on) and a generation (-1: keep the current one).</summary>
public sealed record SlotWordEdit(int Slot, int Count, int State, int Owner, int Generation) : SegmentEdit
{
    internal override void Apply(EditTarget t)
    {
        long at = t.SlotOffset(Slot);
        uint gen = Generation < 0 ? SlotWord.Gen(t.Read(at, 8)) : (uint)Generation;
        ulong w = ((ulong)(uint)Count & SlotWord.CountMask) | ((ulong)(uint)State << SlotWord.StateShift & SlotWord.StateMask)
            | ((ulong)(uint)Owner << SlotWord.OwnerShift & SlotWord.OwnerMask) | ((ulong)(gen & SlotWord.GenMask) << SlotWord.GenShift);
        t.Write(at, 8, w);
    }

    public override string ToString() => $"Slot[{Slot}].Word = count {Count}, state {State}, owner {Owner}, gen {(Generation < 0 ? "same" : Generation.ToString(CultureInfo.InvariantCulture))}";
}

/// <summary>A free-hint word set to a value (bits beyond the capacity included).</summary>
public sealed record HintEdit(int Word, ulong Value) : SegmentEdit
{
    internal override void Apply(EditTarget t) =>
        t.Write(LayoutConstants.FreeHintsOffset + (8L * (Math.Abs(Word) % (LayoutConstants.FreeHintsBytes(t.Capacity) / 8))), 8, Value);

    public override string ToString() => $"Hint[{Word}] = 0x{Value:x16}";
}

/// <summary>A field of a process entry set to a hostile value (states above 2, huge waiter counts...).</summary>
public sealed record EntryFieldEdit(int Entry, string Field, int Offset, int Width, HostileValue Value) : SegmentEdit
{
    internal override void Apply(EditTarget t) => t.Write(EditTarget.EntryOffset(Entry) + Offset, Width, Value.Resolve(t));

    public override string ToString() => $"Entry[{Entry}].{Field} = {Value}";
}

/// <summary>A dead process's entry (its liveness lock is free) in state <paramref name="State"/>, with a holdings
/// segment of <paramref name="Length"/> bytes (-1: the right size) holding <paramref name="Count"/> references to
/// <paramref name="Slot"/> of its current generation (or of generation <paramref name="Generation"/>).</summary>
public sealed record DeadHoldingsEdit(int Entry, uint State, int Slot, uint Count, int Generation, long Length) : SegmentEdit
{
    internal override void Apply(EditTarget t)
    {
        int slot = Math.Abs(Slot % t.Capacity);
        uint gen = Generation < 0 ? SlotWord.Gen(t.Read(t.SlotOffset(slot), 8)) : (uint)Generation;
        long length = Length < 0 ? Math.Max(8L * t.Capacity, 4096) : Length;
        using (var fs = new FileStream(t.PathOf($"p{Entry}"), FileMode.Create, FileAccess.ReadWrite))
        {
            fs.SetLength(length);
            if (8L * (slot + 1) <= length)
            {
                fs.Position = 8L * slot;
                fs.Write(BitConverter.GetBytes(Holding.Make(gen, (int)Count)));
            }
        }

        // The pool's mode (0600), as a member's own holdings segment has: a file without it is a stranger's, which
        // recovery never reads.
        File.SetUnixFileMode(t.PathOf($"p{Entry}"), UnixFileMode.UserRead | UnixFileMode.UserWrite);

        t.Write(EditTarget.EntryOffset(Entry) + 4, 4, 999_999); // Pid
        t.Write(EditTarget.EntryOffset(Entry), 4, State);
    }
}

/// <summary>The control segment cut or extended to a length.</summary>
public sealed record TruncateEdit(HostileValue Length) : SegmentEdit
{
    internal override void Apply(EditTarget t) => RandomAccess.SetLength(t.Control, (long)Math.Min(Length.Resolve(t), 1UL << 24));

    public override string ToString() => $"Truncate(control, {Length})";
}

/// <summary>The data segment a slot records (its MemGen) removed, or cut to <paramref name="Length"/> bytes.</summary>
public sealed record DataSegmentEdit(int Slot, long Length) : SegmentEdit
{
    internal override void Apply(EditTarget t)
    {
        int slot = Math.Abs(Slot % t.Capacity);
        uint memGen = (uint)t.Read(t.SlotOffset(slot) + 24, 4);
        string path = t.PathOf($"s{slot}.g{memGen}");
        if (!File.Exists(path))
        {
            return;
        }

        if (Length < 0)
        {
            File.Delete(path);
        }
        else
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            fs.SetLength(Length);
        }
    }

    public override string ToString() => Length < 0 ? $"DeleteDataSegment(slot {Slot})" : $"CutDataSegment(slot {Slot}, {Length} bytes)";
}

/// <summary>A whole description written into a slot (a seqlock version, an element type, up to 10 dimensions with
/// hostile shapes and strides, a content type that may be unterminated or not UTF-8), as a hostile writer would.</summary>
public sealed record DescriptionEdit(int Slot, uint Version, byte DType, byte NDim, long[] Shape, long[] Strides, byte[] ContentType) : SegmentEdit
{
    internal override void Apply(EditTarget t)
    {
        long at = t.SlotOffset(Slot);
        for (int i = 0; i < 8; i++)
        {
            t.Write(at + 224 + (8L * i), 8, i < Shape.Length ? (ulong)Shape[i] : 0);
            t.Write(at + 288 + (8L * i), 8, i < Strides.Length ? (ulong)Strides[i] : 0);
        }

        byte[] ct = new byte[32];
        ContentType.AsSpan(0, Math.Min(32, ContentType.Length)).CopyTo(ct);
        RandomAccess.Write(t.Control, ct, at + 352);
        t.Write(at + 196, 1, DType);
        t.Write(at + 197, 1, NDim);
        t.Write(at + 192, 4, Version);
    }

    public override string ToString() =>
        $"Slot[{Slot}].Description = version {Version}, dtype {DType}, ndim {NDim}, shape [{string.Join(",", Shape)}], strides [{string.Join(",", Strides)}], content type {Convert.ToHexString(ContentType)}";
}
