using Xmem.Channels;
using Xmem.Core;
using Xmem.Errors;
using Xmem.Layout;

namespace Xmem;

// The facade's channels: opening one, and the guard side of a send or receive (the reference's move itself is
// ChannelHandover's).
public sealed partial class BufferPool
{
    /// <summary>Opens the channel <paramref name="name"/> of this pool, creating it when it does not exist.</summary>
    /// <param name="name">1–48 of [A-Za-z0-9._-], not starting with '.'.</param>
    /// <param name="depth">Messages the channel holds (per subscriber in fan-out mode): a power of two, 1..65,536. An
    /// existing channel must be opened with its depth and mode.</param>
    /// <param name="mode">Queue (each message received once) or fan-out (every subscriber receives every message).</param>
    public BufferChannel Channel(string name, int depth = 64, ChannelMode mode = ChannelMode.Queue)
    {
        ThrowIfDisposed();
        ChannelSegment.ValidateName(name);
        if (depth < 1 || depth > ChannelLayout.MaxDepth || (depth & (depth - 1)) != 0)
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(depth), depth, $"depth must be a power of two in 1..{ChannelLayout.MaxDepth}.");
        }

        if (mode is not (ChannelMode.Queue or ChannelMode.FanOut))
        {
            ThrowHelper.ThrowArgumentOutOfRange(nameof(mode), mode, "the channel mode must be queue or fan-out.");
        }

        ChannelSegment seg = ChannelSegment.OpenOrCreate(Bare, _core.Control.Instance, name, depth, (uint)mode, _core.Control.Access);
        if (_handover.Register(seg))
        {
            seg.Counters.ClearStaleBits(_core.Registry.Me);
        }

        return new BufferChannel(this, seg);
    }

    /// <summary>Moves <paramref name="guard"/>'s reference into the cell this process claimed at
    /// <paramref name="pos"/> of ring <paramref name="k"/>. The guard is spent; on failure the cell is voided.</summary>
    internal void CompleteSend(ChannelSegment ch, int k, ulong pos, BufferGuard guard, long version)
    {
        int s = guard.MetaIndex;
        uint gen = guard.Generation;
        ChannelHandover.FillClaimedCell(ch, k, pos, s, gen);
        if (!guard.TryDetachAt(version))
        {
            _handover.VoidClaimedCell(ch, k, pos);
            ThrowHelper.ThrowGuardInvalid();
        }

        ulong w;
        try
        {
            w = _slots.LockAny(s);
        }
        catch
        {
            _handover.VoidClaimedCell(ch, k, pos);
            ReleaseGuardReference(s, gen, forget: false);
            throw;
        }

        _handover.SendLocked(ch, k, pos, s, gen, w);
        ch.Counters.CountSent();
    }

    /// <summary>Takes over the message in the cell this process claimed (<paramref name="claimed"/>) as a guard.
    /// Null when the cell held nothing usable (a corrupt cell, skipped).</summary>
    internal BufferGuard? CompleteReceive(ChannelSegment ch, int k, ulong pos, ulong claimed, bool writable, bool pooled)
    {
        ChannelHandover.Received r = _handover.TakeReceived(ch, k, pos, claimed);
        if (r.Slot < 0)
        {
            return null;
        }

        ch.Counters.CountReceived();

        if (r.Cuda && r.MapError is null)
        {
            return CudaGuardForHeldReference(r.Slot, r.Gen, writable, pooled);
        }

        if (r.Map is null)
        {
            _ = _slots.ReleaseOwn(r.Slot, r.Gen, forget: false);
            throw r.MapError!;
        }

        try
        {
            return NewGuard(r.Slot, r.Gen, r.Map, r.Size, readOnly: !writable, pooled);
        }
        catch
        {
            // The handover already moved the reference into this process's holding: give it back, or it leaks.
            _ = _slots.ReleaseOwn(r.Slot, r.Gen, forget: false);
            throw;
        }
    }
}
