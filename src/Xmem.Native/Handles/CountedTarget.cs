namespace Xmem.Native.Handles;

/// <summary>
/// An object behind a C handle that may be destroyed while other threads are inside calls on it, with a count of
/// its users: the handle table holds one, and every call in flight that may sleep one more. Destroying the handle
/// removes it from its table, refuses new calls, waits out the calls that do not sleep (<see cref="AwaitBriefCalls"/>),
/// and drops the table's count; whoever drops the last one closes the object. A call that races a destroy therefore
/// either runs on the whole object or finds the handle gone — never a half-closed object.
/// <para>Calls that never sleep take no count (<see cref="IsOpen"/>): they are inside the fork gate for their whole
/// length (every export enters it in C before the runtime), and the destroy's grace period waits until every thread
/// that was inside then has left once (<c>xmem_gate_wait_calls_in_flight</c>, the fork gate's asymmetric Dekker: a
/// call that entered later sees the refusal). That is two atomic read-modify-writes fewer per call, and no cache
/// line written by every thread that uses the object. A call that may sleep steps out of the gate while it sleeps,
/// so it holds a count instead (<see cref="TryEnter"/>/<see cref="Exit"/>).</para>
/// </summary>
internal abstract class CountedTarget
{
    private int _users = 1;
    private volatile bool _closed;
    private volatile bool _closing;

    /// <summary>Refuses every later <see cref="TryEnter"/>: the handle was closed, and the calls still in flight
    /// are only waited out (a blocking one re-entering every slice must not keep the object alive).</summary>
    internal void RefuseNewCalls() => _closing = true;

    /// <summary>For a call that never sleeps, on a thread inside the fork gate: true until the handle is being
    /// destroyed. No count: the destroy waits for such calls in <see cref="AwaitBriefCalls"/>.</summary>
    internal bool IsOpen => !_closing;

    /// <summary>The destroy's grace period, after <see cref="RefuseNewCalls"/>: returns once every call that could
    /// have seen the object open without a count (<see cref="IsOpen"/>) has returned.</summary>
    internal static void AwaitBriefCalls() => Gate.NativeGate.WaitCallsInFlight();

    /// <summary>Counts a call that may sleep in; false once the object is (being) closed.</summary>
    internal bool TryEnter()
    {
        if (_closing)
        {
            return false;
        }

        while (true)
        {
            int n = Volatile.Read(ref _users);
            if (n == 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _users, n + 1, n) == n)
            {
                return true;
            }
        }
    }

    /// <summary>Counts a call (or the table) out; the last one out closes the object. Never throws: a close that
    /// fails half-way leaves what xmem's crash recovery cleans up, as if this process had died.</summary>
    internal void Exit()
    {
        if (Interlocked.Decrement(ref _users) != 0)
        {
            return;
        }

        try
        {
            Close();
        }
        catch (Exception)
        {
            // Nothing to report to: the caller's own call succeeded. See the summary.
        }
        finally
        {
            _closed = true;
        }
    }

    /// <summary>Waits until a close that has started is finished (it is short: no waiting inside).</summary>
    internal void WaitClosed()
    {
        var spin = new SpinWait();
        while (!_closed)
        {
            spin.SpinOnce();
        }
    }

    /// <summary>Closes the object; called once, by the last user out.</summary>
    protected abstract void Close();
}
