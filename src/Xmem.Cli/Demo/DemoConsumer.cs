using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Xmem.Cli.Demo;

/// <summary>The demo's consumer process (<c>xmem __consumer</c>): attaches to the pool, then for each announced frame
/// takes a read-only guard, drops the in-flight reference the producer gave it, checks every byte, releases the
/// buffer and answers. It exits when the producer closes the link.</summary>
internal static class DemoConsumer
{
    internal static int Run(string poolName, long frameSize)
    {
        // Ctrl+C reaches the whole process group; the producer coordinates the shutdown (it closes the link), so a
        // signal here only asks to stop after the current frame.
        bool stop = false;
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; Volatile.Write(ref stop, true); });
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; Volatile.Write(ref stop, true); });
        // The transport seam: a shared-memory channel can stand in for the pipes here.
#pragma warning disable CA1859 // typed as the seam on purpose
        using IFrameReceiver link = new PipeFrameLink(Console.OpenStandardOutput(), Console.OpenStandardInput());
#pragma warning restore CA1859
        int status;
        bool linkBroken = false;
        using (BufferPool pool = BufferPool.Open(poolName))
        {
            try
            {
                status = Consume(pool, link, frameSize, ref stop);
            }
            catch (IOException)
            {
                status = ExitCodes.Error; // the producer went away while we answered
                linkBroken = true;
            }
        }

        if (linkBroken || (status == ExitCodes.Ok && !Volatile.Read(ref stop) && !link.ProducerCompleted))
        {
            RemoveAfterProducerDied(poolName);
        }

        return status;
    }

    /// <summary>The producer died: it cannot remove the pool, so the last consumer to detach does. Detaching already
    /// removes a pool with no live process left, but the kernel may close the dead producer's pipe (which ended our
    /// loop) a moment before the descriptor whose lock marks it alive, so look again for a short while.</summary>
    private static void RemoveAfterProducerDied(string poolName)
    {
        long deadline = Environment.TickCount64 + 2000;
        while (!BufferPool.RemoveIfStale(poolName) && Environment.TickCount64 < deadline)
        {
            Thread.Sleep(20);
        }
    }

    private static int Consume(BufferPool pool, IFrameReceiver link, long frameSize, ref bool stop)
    {
        link.Acknowledge(new FrameAck(FrameAck.ReadySeq, 0, 0, -1));
        while (!Volatile.Read(ref stop) && link.TryReceive(out FrameNotice n))
        {
            long mismatch;
            long received, done;
            using (BufferGuard frame = pool.Get(n.MetaIndex))
            {
                _ = pool.Release(n.MetaIndex); // the reference the producer put in flight for us: ours is the guard's now
                received = Stopwatch.GetTimestamp();
                mismatch = frame.Size != frameSize ? Math.Min(frame.Size, frameSize) : FramePattern.FindMismatch(frame.ReadOnlySpan, n.Seq);
            }

            done = Stopwatch.GetTimestamp();
            link.Acknowledge(new FrameAck(n.Seq, received, done, mismatch));
            if (mismatch >= 0)
            {
                Console.Error.WriteLine($"xmem __consumer: frame {n.Seq} in slot {n.MetaIndex} differs from its pattern at byte {mismatch}.");
                return ExitCodes.Error;
            }
        }

        return ExitCodes.Ok;
    }
}
