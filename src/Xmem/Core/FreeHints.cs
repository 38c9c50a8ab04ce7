using System.Numerics;
using Xmem.Layout;

namespace Xmem.Core;

/// <summary>
/// The free-slot hint bitmap (docs/layout.md, "Free hints"): bit s set means "slot s may be free". Hints only speed
/// the search; the slot word decides. Invariants: a releaser sets the hint after the slot reads Free, and a claimer
/// clears it before its CAS, so a set bit is acted on by one claimer; a lost hint (its setter died in between) is
/// found again by <see cref="Repair"/> when the pool looks full; a stale one (slot not free) is simply dropped.
/// A bit past the capacity (written by a hostile member) is ignored.
/// </summary>
internal sealed unsafe class FreeHints(ControlSegment control)
{
    private readonly ulong* _hints = control.Hints;
    private readonly int _words = control.HintWords;
    private readonly int _capacity = control.Capacity;
    private readonly SlotRecord* _slots = control.Slots;

    /// <summary>Hints slot <paramref name="s"/> (a full fence: before the free epoch's increment that follows).</summary>
    internal void Set(int s) => Interlocked.Or(ref _hints[s >> 6], 1UL << (s & 63));

    /// <summary>Clears slot <paramref name="s"/>'s hint; true when this call cleared it (this thread is then the one
    /// claimer acting on it).</summary>
    internal bool TryTake(int s)
    {
        ulong bit = 1UL << (s & 63);
        return (Interlocked.And(ref _hints[s >> 6], ~bit) & bit) != 0;
    }

    /// <summary>The hinted slots, lowest first.</summary>
    internal HintedSlots Hinted() => new(_hints, _words, _capacity);

    /// <summary>Where this process's next CPU pick starts looking for a slot whose memory fits: the slot after its last
    /// pick of such a slot. A plain field: only a search order, never trusted (any value is range-checked), and racing
    /// threads of the process may overwrite each other's.</summary>
    private int _next;

    /// <summary>The hinted slot to try for a CPU buffer of <paramref name="size"/> bytes; -1 when nothing is hinted.
    /// <para>First, next fit among the slots that keep fitting CPU memory: the first such hinted slot from where this
    /// process's last pick left off. In a pipeline this hands out the free slot released longest ago rather than the
    /// one the consumer read a moment ago: measured, the producer's writes into the slot just read took 1.7–1.8× as
    /// long, more than the consumer then gains by reading the same slot again (docs/benchmarks.md, "Session 9: which
    /// free slot a pipeline gets"; plain C shows the same, bench/c/slot_order.c). The look ahead stops at the first
    /// slot with no memory (made slots sit at the low end, since those are made lowest first), so a pool used with
    /// fewer buffers in flight than its capacity makes no more buffers than before.</para>
    /// <para>Then, from slot 0: the lowest hinted slot whose kept CPU memory fits, else the lowest with no memory,
    /// else the lowest with CPU memory (replaced), else the lowest CUDA slot (its device memory is given back first).
    /// After 64 candidates the best so far is taken.</para></summary>
    internal int PickCpu(long size)
    {
        int from = _next;
        if (from > 0 && from < _capacity)
        {
            int ahead = PickFittingFrom(from, size);
            if (ahead >= 0)
            {
                _next = ahead + 1;
                return ahead;
            }
        }

        int s = PickCpuFromStart(size, out bool fits);
        if (fits)
        {
            _next = s + 1;
        }

        return s;
    }

    /// <summary>The first hinted slot at or after <paramref name="from"/> that keeps CPU memory of at least
    /// <paramref name="size"/> bytes; -1 at the first slot with no memory, after 64 candidates, or at the end.</summary>
    private int PickFittingFrom(int from, long size)
    {
        int looked = 0;
        for (int wi = from >> 6; wi < _words; wi++)
        {
            ulong bits = Volatile.Read(ref _hints[wi]);
            if (wi == from >> 6)
            {
                bits &= ~0UL << (from & 63); // the slots below from in its word
            }

            while (bits != 0)
            {
                int s = (wi << 6) + BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                if (s >= _capacity)
                {
                    return -1; // a hint past the end (written by someone else): ignore it
                }

                ushort kind = Volatile.Read(ref _slots[s].Kind);
                long cap = Volatile.Read(ref _slots[s].DataCapacity);
                if (cap >= size && kind == LayoutConstants.KindCpu)
                {
                    return s;
                }

                if ((cap == 0 && kind == LayoutConstants.KindNone) || ++looked >= 64)
                {
                    return -1; // past the slots that were made, or looked long enough: start from slot 0
                }
            }
        }

        return -1;
    }

    /// <summary>The ranking from slot 0 (see <see cref="PickCpu"/>); <paramref name="fits"/> says the slot keeps CPU
    /// memory that fits.</summary>
    private int PickCpuFromStart(long size, out bool fits)
    {
        fits = false;
        int firstEmpty = -1, firstCpu = -1, firstCuda = -1, looked = 0;
        for (int wi = 0; wi < _words; wi++)
        {
            ulong bits = Volatile.Read(ref _hints[wi]);
            while (bits != 0)
            {
                int s = (wi << 6) + BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                if (s >= _capacity)
                {
                    break; // a hint past the end (written by someone else): ignore it
                }

                ushort kind = Volatile.Read(ref _slots[s].Kind);
                long cap = Volatile.Read(ref _slots[s].DataCapacity);
                if (LayoutConstants.IsCuda(kind))
                {
                    firstCuda = firstCuda < 0 ? s : firstCuda;
                }
                else if (cap >= size && kind == LayoutConstants.KindCpu)
                {
                    fits = true;
                    return s;
                }
                else if (cap == 0 && kind == LayoutConstants.KindNone)
                {
                    firstEmpty = firstEmpty < 0 ? s : firstEmpty;
                }
                else
                {
                    firstCpu = firstCpu < 0 ? s : firstCpu;
                }

                if (++looked >= 64 && (firstEmpty >= 0 || firstCpu >= 0))
                {
                    return firstEmpty >= 0 ? firstEmpty : firstCpu;
                }
            }
        }

        return firstEmpty >= 0 ? firstEmpty : firstCpu >= 0 ? firstCpu : firstCuda;
    }

    /// <summary>Sets the hint of every free, unlocked slot whose hint is clear. True when any was set.</summary>
    internal bool Repair()
    {
        bool any = false;
        for (int s = 0; s < _capacity; s++)
        {
            ulong w = Volatile.Read(ref _slots[s].Word);
            ulong bit = 1UL << (s & 63);
            if (SlotWord.State(w) == SlotWord.Free && SlotWord.Owner(w) == 0 && (Volatile.Read(ref _hints[s >> 6]) & bit) == 0)
            {
                Interlocked.Or(ref _hints[s >> 6], bit);
                any = true;
            }
        }

        return any;
    }

    /// <summary>Enumerates hinted slots below the capacity, one acquire load per 64-slot word.</summary>
    internal ref struct HintedSlots
    {
        private readonly ulong* _hints;
        private readonly int _words;
        private readonly int _capacity;
        private int _wi;
        private ulong _bits;

        internal HintedSlots(ulong* hints, int words, int capacity)
        {
            _hints = hints;
            _words = words;
            _capacity = capacity;
            _wi = -1;
            _bits = 0;
            Current = -1;
        }

        public int Current { get; private set; }

        public readonly HintedSlots GetEnumerator() => this;

        public bool MoveNext()
        {
            while (_bits == 0)
            {
                if (++_wi >= _words)
                {
                    return false;
                }

                _bits = Volatile.Read(ref _hints[_wi]);
            }

            int s = (_wi << 6) + BitOperations.TrailingZeroCount(_bits);
            _bits &= _bits - 1;
            if (s >= _capacity)
            {
                _wi = _words; // a hint past the end (written by someone else): ignore it; it can only be in the last word
                return false;
            }

            Current = s;
            return true;
        }
    }
}
