using System.Globalization;

namespace Xmem.TestChild.Commands;

/// <summary>
/// The C# side of the Python package's channel and description tests (tests/python/test_channels.py): described
/// frames sent by C# and received by Python as arrays, and the reverse.
/// </summary>
internal static class PythonChannelCommands
{
    /// <summary><c>py-channel-produce POOL CHANNEL COUNT</c>: opens the pool and the queue channel (depth 4), replies
    /// <c>ready</c>, then sends COUNT float32 frames of shape [3, 4] (element j of frame i = i * 100 + j), each described
    /// with Seq i, content type "test/frame" and producer "csharp"; every odd frame is a transposed (strided) view:
    /// shape [4, 3], strides [4, 16]. Replies <c>sent COUNT</c>, then waits for stdin to close.</summary>
    [ChildCommand("py-channel-produce", "POOL CHANNEL COUNT")]
    internal static int Produce(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1), 4);
        int count = ctx.IntArg(2);
        ctx.Reply("ready");
        for (int i = 0; i < count; i++)
        {
            if (!pool.TryAcquireCpu(3 * 4 * sizeof(float), TimeSpan.FromSeconds(30), out BufferGuard? g))
            {
                throw new TimeoutException("no free slot in 30 s");
            }

            Span<float> v = g.AsSpan<float>();
            for (int j = 0; j < 12; j++)
            {
                v[j] = (i * 100) + j;
            }

            TensorSpec spec = i % 2 == 0
                ? new TensorSpec(ElementType.Float32, 3, 4)
                : TensorSpec.WithStrides(ElementType.Float32, [4, 3], [4, 16]);
            g.SetDescription(spec, (ulong)i, contentType: "test/frame", producerTag: "csharp");
            ch.Send(g);
        }

        ctx.Reply($"sent {count}");
        _ = ctx.ReadInstruction();
        return 0;
    }

    /// <summary><c>py-channel-consume POOL CHANNEL COUNT</c>: opens the pool and the queue channel (depth 4), replies
    /// <c>ready</c>, receives COUNT buffers (waiting up to 30 s each) and replies one line per buffer:
    /// <c>frame SEQ TYPE SHAPE STRIDES CONTENT PRODUCER SUM</c> (SHAPE and STRIDES joined by 'x' and ',', "-" when
    /// empty; SUM the sum of the elements as float64, read through the strides), or <c>frame SEQ none</c> for a
    /// buffer without a tensor description. Then <c>done</c>.</summary>
    [ChildCommand("py-channel-consume", "POOL CHANNEL COUNT")]
    internal static int Consume(ChildContext ctx)
    {
        using BufferPool pool = BufferPool.Open(ctx.Arg(0));
        using BufferChannel ch = pool.Channel(ctx.Arg(1), 4);
        int count = ctx.IntArg(2);
        ctx.Reply("ready");
        for (int i = 0; i < count; i++)
        {
            if (!ch.TryReceive(TimeSpan.FromSeconds(30), out BufferGuard? g))
            {
                throw new TimeoutException($"buffer {i} did not arrive in 30 s");
            }

            using (g)
            {
                BufferDescription d = g.Description ?? throw new InvalidOperationException($"slot {g.MetaIndex} arrived without a description");
                if (d.Tensor is not { } t)
                {
                    ctx.Reply($"frame {d.Seq} none {Tag(d.ContentType)} {Tag(d.ProducerTag)}");
                    continue;
                }

                double sum = Sum(g.ReadOnlySpan, t);
                string shape = t.Rank == 0 ? "-" : string.Join('x', t.Shape);
                string strides = t.Rank == 0 ? "-" : string.Join(',', t.Strides);
                ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"frame {d.Seq} {t.ElementType} {shape} {strides} {Tag(d.ContentType)} {Tag(d.ProducerTag)} {sum:R}"));
            }
        }

        ctx.Reply("done");
        return 0;
    }

    private static string Tag(string s) => s.Length == 0 ? "-" : s;

    /// <summary>The sum of every element, visited through the strides.</summary>
    private static double Sum(ReadOnlySpan<byte> bytes, TensorSpec t)
    {
        long n = t.ElementCount;
        double sum = 0;
        Span<long> index = stackalloc long[Math.Max(t.Rank, 1)];
        for (long k = 0; k < n; k++)
        {
            long rem = k, offset = 0;
            for (int dim = t.Rank - 1; dim >= 0; dim--)
            {
                index[dim] = rem % t.Shape[dim];
                rem /= t.Shape[dim];
                offset += index[dim] * t.Strides[dim];
            }

            ReadOnlySpan<byte> e = bytes[(int)offset..];
            sum += t.ElementType switch
            {
                ElementType.UInt8 or ElementType.Bool => e[0],
                ElementType.Int8 => (sbyte)e[0],
                ElementType.UInt16 => BitConverter.ToUInt16(e),
                ElementType.Int16 => BitConverter.ToInt16(e),
                ElementType.Int32 => BitConverter.ToInt32(e),
                ElementType.Int64 => BitConverter.ToInt64(e),
                ElementType.Float16 => (double)BitConverter.ToHalf(e),
                ElementType.Float32 => BitConverter.ToSingle(e),
                ElementType.Float64 => BitConverter.ToDouble(e),
                _ => double.NaN,
            };
        }

        return sum;
    }
}
