using System.Diagnostics;
using Xmem.Interop;

namespace Xmem.Core;

/// <summary>
/// The asynchronous waits of one pool in this process, and the threads that sleep for them: one watcher thread per
/// futex word that has waits queued (the pool's FreeEpoch, a ring's DataEpoch), shared by every wait on that word
/// however many there are, started by the first and gone one idle slice (100 ms) after the last has ended. Each watcher is a blocking call of
/// the pool (<see cref="BlockingCalls"/>): a close wakes it, it fails its waits with ObjectDisposedException and
/// leaves, and the close waits for that. So N waits on W distinct words cost W threads, not N.
/// </summary>
/// <remarks>
/// Invariants (all under <c>_lock</c>): a word has at most one watcher in <c>_watchers</c>; a watcher in it with
/// waits queued is running (its thread started and not yet past its last look at the queue); a watcher leaves the
/// map in the same locked step in which it finds its queue empty (for a whole idle slice), so a wait is never queued
/// on a watcher that will not look at it again. Only the watcher tries, cancels or completes its waits (see <see cref="AsyncWait"/>).
/// </remarks>
internal sealed unsafe class WordWatchers(BlockingCalls blocking)
{
    private readonly BlockingCalls _blocking = blocking;
    private const long SliceNs = 100_000_000; // wake at least this often, to look for dead claimers and holders

    private readonly Lock _lock = new();
    private readonly Dictionary<nint, Watcher> _watchers = [];
    private int _started;

    /// <summary>Watcher threads started so far (for tests and diagnostics).</summary>
    internal int StartedCount => Volatile.Read(ref _started);

    /// <summary>Queues <paramref name="wait"/> on the watcher of <paramref name="word"/> (starting one if none) and
    /// returns the task that completes with it. The caller has already tried once without waiting.</summary>
    internal ValueTask<T> Enqueue<T>(EventWord word, AsyncWait<T> wait)
    {
        // Registered before the wait is queued, so that the watcher, which disposes it when the wait ends, always
        // finds it set. The callback only wakes the word; the watcher does the cancelling.
        wait.Registration = wait.Token.CanBeCanceled
            ? wait.Token.Register(static p => Libc.FutexWakeAll((nint)p!), (nint)word.Word)
            : default;
        ValueTask<T> task = wait.Task;
        Watcher? start = null;
        lock (_lock)
        {
            if (!_watchers.TryGetValue((nint)word.Word, out Watcher? watcher))
            {
                watcher = new Watcher(this, word);
                _watchers.Add((nint)word.Word, watcher);
                start = watcher;
            }

            watcher.Waits.Add(wait);
        }

        if (start is null)
        {
            // The watcher may be asleep on a word that will not change for this wait (what it waits for may have come
            // between the caller's own try and the queueing): wake it to look now.
            _ = Libc.FutexWakeAll((nint)word.Word);
            return task;
        }

        try
        {
            var thread = new Thread(static w => ((Watcher)w!).Run()) { IsBackground = true, Name = "xmem async waits" };
            thread.UnsafeStart(start); // no ExecutionContext: the thread serves many callers
            _ = Interlocked.Increment(ref _started);
        }
        catch (Exception e)
        {
            start.FailAll(e); // out of memory or threads: every wait queued on it so far fails, none is lost
        }

        return task;
    }

    /// <summary>Waits queued now (for tests and diagnostics).</summary>
    internal int Count
    {
        get
        {
            lock (_lock)
            {
                return _watchers.Values.Sum(w => w.Waits.Count);
            }
        }
    }

    /// <summary>Watcher threads running now (for tests and diagnostics).</summary>
    internal int ThreadCount
    {
        get
        {
            lock (_lock)
            {
                return _watchers.Count;
            }
        }
    }

    private sealed class Watcher(WordWatchers owner, EventWord word)
    {
        internal readonly List<AsyncWait> Waits = []; // under owner._lock, in arrival order

        internal void Run()
        {
            bool counted = false, watching = false;
            CancellationTokenRegistration closeReg = default;
            var batch = new List<AsyncWait>();
            try
            {
                owner._blocking.Enter(); // throws ObjectDisposedException once the pool is closing
                counted = true;
                closeReg = owner._blocking.WakeOnClose(word.Word);
                word.BeginWatch();
                watching = true;
                long idleSince = 0; // Stopwatch timestamp of when the queue was last found empty; 0 while it is not
                while (true)
                {
                    uint seen = Volatile.Read(ref *word.Word); // before the attempts: a change after them ends the sleep
                    long lingerNs = 0;
                    lock (owner._lock)
                    {
                        if (Waits.Count == 0)
                        {
                            // Stay up to one slice with no wait before leaving: a consumer awaiting frame after frame
                            // (a ReadAllAsync at 30 fps waits for every frame) then reuses this thread instead of
                            // starting one per frame. A wait queued meanwhile wakes the word (Enqueue), so it is
                            // looked at at once; a close wakes it too.
                            idleSince = idleSince == 0 ? Stopwatch.GetTimestamp() : idleSince;
                            lingerNs = SliceNs - (long)Stopwatch.GetElapsedTime(idleSince).TotalNanoseconds;
                            if (lingerNs <= 0)
                            {
                                _ = owner._watchers.Remove((nint)word.Word);
                                return;
                            }
                        }
                        else
                        {
                            idleSince = 0;
                            batch.Clear();
                            batch.AddRange(Waits);
                        }
                    }

                    owner._blocking.ThrowIfClosing();
                    if (lingerNs > 0)
                    {
                        word.Sleep(seen, lingerNs);
                        continue;
                    }

                    if (!Attempt(batch))
                    {
                        word.Sleep(seen, SliceNs);
                    }
                }
            }
            catch (Exception e)
            {
                FailAll(e); // the pool is closing (or the watch could not begin): every queued wait fails with it
            }
            finally
            {
                if (watching)
                {
                    word.EndWatch();
                }

                closeReg.Dispose();
                if (counted)
                {
                    owner._blocking.Exit();
                }
            }
        }

        /// <summary>One pass over the queued waits, oldest first; true when any ended. A cancelled wait is not tried
        /// again; after the first attempt that finds nothing the rest are not tried (they wait for the same thing).</summary>
        private bool Attempt(List<AsyncWait> batch)
        {
            bool ended = false, missed = false;
            foreach (AsyncWait w in batch)
            {
                bool done;
                if (w.Token.IsCancellationRequested)
                {
                    w.Fail(new OperationCanceledException(w.Token));
                    done = true;
                }
                else if (missed)
                {
                    done = false;
                }
                else
                {
                    try
                    {
                        done = w.TryComplete();
                        missed = !done;
                    }
                    catch (Exception e)
                    {
                        w.Fail(e);
                        done = true;
                    }
                }

                if (done)
                {
                    Remove(w);
                    ended = true;
                }
            }

            return ended;
        }

        private void Remove(AsyncWait w)
        {
            lock (owner._lock)
            {
                _ = Waits.Remove(w);
            }

            w.Registration.Dispose();
        }

        /// <summary>Ends the watch: leaves the map and fails every wait still queued with <paramref name="error"/>.</summary>
        internal void FailAll(Exception error)
        {
            AsyncWait[] left;
            lock (owner._lock)
            {
                left = [.. Waits];
                Waits.Clear();
                if (owner._watchers.TryGetValue((nint)word.Word, out Watcher? current) && ReferenceEquals(current, this))
                {
                    _ = owner._watchers.Remove((nint)word.Word);
                }
            }

            foreach (AsyncWait w in left)
            {
                w.Registration.Dispose();
                w.Fail(error);
            }
        }
    }
}
