using Xmem.Core;
using Xmem.Cuda;

namespace Xmem.Pool;

/// <summary>
/// The pool instance's idle pooled guards: the objects behind <see cref="BufferRef"/>s (and the C ABI's guard
/// handles), so that a steady-state acquire, get or receive allocates nothing. Process-local and in-process only: no
/// shared memory is involved, so a dead process cannot leave anything here.
///
/// Invariants: a guard is in at most one cell, and only while it is ended (odd state), so nothing but
/// <see cref="Rent"/> can make it valid again. Each cell is taken and filled with one compare-and-swap on that cell
/// alone (null ↔ guard), so there is no list to corrupt and no ABA: a cell that holds a guard holds one that is idle.
/// When every cell is full a returning guard is dropped (the GC collects it); when none holds one, a new guard is
/// made. A cache of <see cref="Cells"/> idle guards covers a process that has up to that many more references at its
/// peak than at its trough; beyond that the peak allocates, the steady state still does not.
/// </summary>
internal sealed class GuardCache(BufferPool pool)
{
    /// <summary>How many idle guards are kept.</summary>
    internal const int Cells = 64;

    // Cells of a struct, not a BufferGuard?[]: a reference to an element of an array of a class that has a subclass
    // (Collectable) would need a covariance check on every CAS.
    private readonly Cell[] _cells = new Cell[Cells];

    /// <summary>An idle guard (or a new one) filled for a new reference and published: valid, at its next version.</summary>
    internal BufferGuard Rent(int metaIndex, uint gen, DataMapping? map, CudaMemory? cudaMemory, long size, bool readOnly)
    {
        BufferGuard g = TakeIdle() ?? new BufferGuard(pool, this);
        g.Reuse(metaIndex, gen, map, cudaMemory, size, readOnly);
        return g;
    }

    /// <summary>Keeps an ended guard for a later <see cref="Rent"/>; drops it when the cache is full.</summary>
    internal void Return(BufferGuard guard)
    {
        Cell[] cells = _cells;
        for (int i = 0; i < cells.Length; i++)
        {
            // Full fence: the guard's last writes (its fields let go) are visible before another thread can take it.
            ref BufferGuard? cell = ref cells[i].Guard;
            if (Volatile.Read(ref cell) is null && Interlocked.CompareExchange(ref cell, guard, null) is null)
            {
                return;
            }
        }
    }

    private BufferGuard? TakeIdle()
    {
        Cell[] cells = _cells;
        for (int i = 0; i < cells.Length; i++)
        {
            ref BufferGuard? cell = ref cells[i].Guard;
            if (Volatile.Read(ref cell) is { } g && ReferenceEquals(Interlocked.CompareExchange(ref cell, null, g), g))
            {
                return g;
            }
        }

        return null;
    }

    private struct Cell
    {
        internal BufferGuard? Guard;
    }
}
