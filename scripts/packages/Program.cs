// The README's C# quickstart (the channel form) across two real processes, built against the Xmem package from a
// local feed only (scripts/test-packages.sh copies this file into a fresh `dotnet new console` project).
//
//   Quickstart POOL            the producer: creates POOL and its channel, starts this program again as the
//                              consumer, sends described frames, waits for the consumer (with a watchdog)
//   Quickstart consume POOL    the consumer: opens POOL, receives every frame, checks its description and bytes
//
// Exit code 0 only when the consumer saw every frame, every byte right.
using System.Diagnostics;
using Xmem;

const int Frames = 4;
var spec = new TensorSpec(ElementType.UInt8, 1080, 1920, 3);
TimeSpan watchdog = TimeSpan.FromSeconds(120);

// Each frame's bytes depend on their position and the frame's sequence number, so a frame seen at a wrong offset,
// a stale frame or another frame's bytes all fail the check.
static byte Pattern(int position, ulong seq) => unchecked((byte)((position * 31) ^ (int)(seq * 97)));

if (args is ["consume", string consumePool])
{
    using var pool = BufferPool.Open(consumePool);
    using BufferChannel frames = pool.Channel("frames", depth: 8);
    for (ulong seq = 1; seq <= Frames; seq++)
    {
        if (!frames.TryReceive(watchdog, out BufferGuard? got))
        {
            Console.Error.WriteLine($"consumer: frame {seq} did not come within {watchdog.TotalSeconds} s");
            return 2;
        }

        using (got)
        {
            BufferDescription? d = got.Description;
            if (got.Tensor != spec || d?.Seq != seq || d?.ContentType != "image/rgb8")
            {
                Console.Error.WriteLine($"consumer: frame {seq} is described as {d}, not {spec} seq {seq} image/rgb8");
                return 3;
            }

            ReadOnlySpan<byte> bytes = got.ReadOnlySpan;
            if (bytes.Length != spec.RequiredBytes)
            {
                Console.Error.WriteLine($"consumer: frame {seq} has {bytes.Length} bytes, not {spec.RequiredBytes}");
                return 3;
            }

            for (int i = 0; i < bytes.Length; i++)
            {
                if (bytes[i] != Pattern(i, seq))
                {
                    Console.Error.WriteLine($"consumer: frame {seq}, byte {i} is {bytes[i]}, not {Pattern(i, seq)}");
                    return 4;
                }
            }
        }
    }

    Console.WriteLine($"consumer: {Frames} frames of {spec.RequiredBytes} bytes, every byte checked");
    return 0;
}

if (args is not [string poolName])
{
    Console.Error.WriteLine("usage: Quickstart POOL | Quickstart consume POOL");
    return 64;
}

using (var pool = BufferPool.Create(poolName, capacity: 64))
using (BufferChannel frames = pool.Channel("frames", depth: 8))
{
    var psi = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
    psi.ArgumentList.Add("consume");
    psi.ArgumentList.Add(poolName);
    using Process consumer = Process.Start(psi)!;

    for (ulong seq = 1; seq <= Frames; seq++)
    {
        BufferGuard frame = pool.AcquireCpu(spec);  // sized and described by the spec
        frame.SetDescription(spec, seq: seq, contentType: "image/rgb8");
        Span<byte> span = frame.Span;
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = Pattern(i, seq);
        }

        frames.Send(frame);                         // the reference moves into the channel
    }

    if (!consumer.WaitForExit(watchdog))
    {
        consumer.Kill();
        Console.Error.WriteLine($"producer: the consumer did not finish within {watchdog.TotalSeconds} s (killed)");
        return 1;
    }

    if (consumer.ExitCode != 0)
    {
        Console.Error.WriteLine($"producer: the consumer failed (exit code {consumer.ExitCode})");
        return 1;
    }
}

Console.WriteLine($"producer: {Frames} frames sent to a consumer process through pool {poolName}; consumer ok");
return 0;
