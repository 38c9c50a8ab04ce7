namespace Xmem.Core;

/// <summary>The pool header's FreeEpoch as an <see cref="EventWord"/> (docs/layout.md, "Waiting for a free slot"): a
/// watcher counts as one of this process's waiting threads, so that its bit in WaitMask makes releasers wake the
/// word, exactly as <see cref="FreeSlotWait"/> does for a blocking wait.</summary>
internal sealed unsafe class FreeEpochWord(PoolCore core) : EventWord(&core.Control.Header->FreeEpoch)
{
    internal override void BeginWatch() => core.Registry.AddLocalWaiter(+1);

    internal override void EndWatch() => core.Registry.AddLocalWaiter(-1);

    internal override void Sleep(uint seen, long timeoutNs)
    {
        _ = ForkGate.FutexWait((nint)Word, seen, timeoutNs); // out of the fork gate: a wait without a bound must not hold a fork back
    }
}
