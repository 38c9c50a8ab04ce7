using System.Runtime.CompilerServices;
using System.Diagnostics;
using Xmem.Benchmarks.Micro;

namespace Xmem.Benchmarks.Handoff;

/// <summary>The protocol's frame (docs: /work/shared/benchmark-protocol.md): 1920×1080×3 bytes, 1519 pages; the
/// producer stamps one byte per 4 KiB page at offset 128, the consumer sums the 1519 stamps and checks the sum.</summary>
internal static unsafe class Frame
{
    internal const long Bytes = BenchNames.FrameBytes;
    internal const int Pages = BenchNames.FramePages;
    internal const int StampOffset = 128;

    private static readonly ulong[] ExpectedSums = BuildExpected();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    internal static void Stamp(byte* frame, int seq)
    {
        byte s = (byte)seq;
        for (int page = 0; page < Pages; page++)
        {
            frame[((long)page * BenchNames.PageBytes) + StampOffset] = (byte)(s + page);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the protocol's work, compiled as C's -O2 is: see docs/benchmarks.md, "Tiered compilation"
    internal static ulong Checksum(byte* frame)
    {
        ulong sum = 0;
        for (int page = 0; page < Pages; page++)
        {
            sum += frame[((long)page * BenchNames.PageBytes) + StampOffset];
        }

        return sum;
    }

    internal static bool Verify(ulong sum, int seq) => ExpectedSums[(byte)seq] == sum;

    private static ulong[] BuildExpected()
    {
        var sums = new ulong[256];
        for (int s = 0; s < 256; s++)
        {
            ulong sum = 0;
            for (int page = 0; page < Pages; page++)
            {
                sum += (byte)(s + page);
            }

            sums[s] = sum;
        }

        return sums;
    }
}

/// <summary>CLOCK_MONOTONIC in nanoseconds: Stopwatch reads it on Linux, and it is system-wide, so stamps taken in
/// the producer and the consumer compare.</summary>
internal static class MonotonicClock
{
    private static readonly double NsPerTick = 1e9 / Stopwatch.Frequency;

    internal static long NowNs() => Stopwatch.Frequency == 1_000_000_000 ? Stopwatch.GetTimestamp() : (long)(Stopwatch.GetTimestamp() * NsPerTick);
}

/// <summary>What the producer writes to the consumer's command pipe (16 bytes, one atomic pipe write). With the pipe
/// transport every frame is one; with the channel transport one command announces a batch of frames that then travel
/// on the channel only.</summary>
internal struct Command
{
    internal const int OpFrame = 1;       // lockstep frame: Meta is the slot; reply with a Reply
    internal const int OpStreamFrame = 2; // stream frame: no reply
    internal const int OpStreamEnd = 3;   // reply with Reply{Seq = frames seen, Ok = frames that verified}
    internal const int OpPipePing = 4;    // Arg round trips of 4-byte messages follow
    internal const int OpFutexPing = 5;   // Arg round trips on the futex word follow, starting from value Meta
    internal const int OpQuit = 6;
    internal const int OpSpinPing = 7;    // like OpFutexPing, both sides spinning on the word (no system call)
    internal const int OpChanLockstep = 8; // Arg lockstep frames follow on the frames channel; Meta: reply over
                                           // the reply channel (1) or the reply pipe (0); Seq: consumer spin µs
    internal const int OpChanStream = 9;  // Arg stream frames follow on the frames channel; Seq: spin µs; then a
                                          // Reply{Seq = frames seen, Ok = frames verified} on the reply pipe
    internal const int OpChanPong = 10;   // Arg ping-pong rounds on the ping/pong channels; Seq: spin µs; then
                                          // the Arg receive times (long ns) on the reply pipe

    internal int Op;
    internal int Seq;
    internal int Meta;
    internal int Arg;
}

/// <summary>The consumer's lockstep reply: {seq, t_recv, t_done} and whether the checksum verified (24 bytes).</summary>
internal struct Reply
{
    internal int Seq;
    internal int Ok;
    internal long TRecvNs;
    internal long TDoneNs;
}
