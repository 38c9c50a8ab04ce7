using System.Buffers.Binary;

namespace Xmem.Cli.Demo;

/// <summary>A frame announced to a consumer: which slot holds it and which frame it is.</summary>
/// <param name="MetaIndex">The slot; the producer added one in-flight reference for this consumer.</param>
/// <param name="Seq">The frame's sequence number (it determines the content).</param>
/// <param name="SentTimestamp">Stopwatch timestamp (CLOCK_MONOTONIC, comparable across processes) when sent.</param>
internal readonly record struct FrameNotice(int MetaIndex, long Seq, long SentTimestamp);

/// <summary>A consumer's answer for one frame (or, with <see cref="ReadySeq"/>, that it is ready).</summary>
/// <param name="Seq">The frame answered.</param>
/// <param name="ReceivedTimestamp">When the consumer had the buffer readable.</param>
/// <param name="DoneTimestamp">When it had checked every byte and released the buffer.</param>
/// <param name="MismatchOffset">-1 when every byte matched, else the first offset that did not.</param>
internal readonly record struct FrameAck(long Seq, long ReceivedTimestamp, long DoneTimestamp, long MismatchOffset)
{
    /// <summary>The sequence number of the first message a consumer sends, once it has attached to the pool.</summary>
    internal const long ReadySeq = -1;
}

// The seam between the demo and its transport. Today: fixed-size binary records over the consumer process's stdin and
// stdout. A shared-memory channel (src/Xmem/Channels) can replace both ends without touching the demo's logic.

/// <summary>The producer's end of the link to one consumer.</summary>
internal interface IFrameSender : IDisposable
{
    /// <summary>Announces a frame. Throws IOException when the consumer is gone.</summary>
    void Send(in FrameNotice notice);

    /// <summary>Waits for the consumer's next answer. Throws EndOfStreamException when the consumer is gone.</summary>
    FrameAck ReceiveAck();

    /// <summary>Tells the consumer no more frames will come (it finishes and exits).</summary>
    void Complete();
}

/// <summary>A consumer's end of the link to the producer.</summary>
internal interface IFrameReceiver : IDisposable
{
    /// <summary>Waits for the next frame; false when the producer completed (or went away).</summary>
    bool TryReceive(out FrameNotice notice);

    /// <summary>After <see cref="TryReceive"/> returned false: true when the producer said it was done, false when
    /// the link broke (the producer died).</summary>
    bool ProducerCompleted { get; }

    /// <summary>Answers for a frame.</summary>
    void Acknowledge(in FrameAck ack);
}

/// <summary>Both ends of the pipe transport: 24-byte notices one way, 32-byte answers the other, little-endian.</summary>
internal sealed class PipeFrameLink(Stream output, Stream input) : IFrameSender, IFrameReceiver
{
    private const int NoticeBytes = 24;
    private const int AckBytes = 32;
    private readonly byte[] _sendBuffer = new byte[AckBytes];
    private readonly byte[] _receiveBuffer = new byte[AckBytes];
    private bool _completed;

    public void Send(in FrameNotice notice)
    {
        Span<byte> b = _sendBuffer.AsSpan(0, NoticeBytes);
        BinaryPrimitives.WriteInt64LittleEndian(b, notice.MetaIndex);
        BinaryPrimitives.WriteInt64LittleEndian(b[8..], notice.Seq);
        BinaryPrimitives.WriteInt64LittleEndian(b[16..], notice.SentTimestamp);
        output.Write(b);
        output.Flush();
    }

    public FrameAck ReceiveAck()
    {
        Span<byte> b = _receiveBuffer.AsSpan(0, AckBytes);
        input.ReadExactly(b);
        return new FrameAck(
            BinaryPrimitives.ReadInt64LittleEndian(b),
            BinaryPrimitives.ReadInt64LittleEndian(b[8..]),
            BinaryPrimitives.ReadInt64LittleEndian(b[16..]),
            BinaryPrimitives.ReadInt64LittleEndian(b[24..]));
    }

    public bool ProducerCompleted { get; private set; }

    public void Complete()
    {
        if (_completed)
        {
            return;
        }

        _completed = true;
        try
        {
            // An explicit end record, then end of file: a consumer that sees end of file alone knows the producer died.
            Span<byte> b = _sendBuffer.AsSpan(0, NoticeBytes);
            b.Fill(0xFF);
            output.Write(b);
            output.Flush();
        }
        finally
        {
            output.Dispose();
        }
    }

    public bool TryReceive(out FrameNotice notice)
    {
        Span<byte> b = _receiveBuffer.AsSpan(0, NoticeBytes);
        int got = input.ReadAtLeast(b, NoticeBytes, throwOnEndOfStream: false);
        if (got < NoticeBytes)
        {
            notice = default;
            return false;
        }

        long meta = BinaryPrimitives.ReadInt64LittleEndian(b);
        if (meta == -1)
        {
            ProducerCompleted = true;
            notice = default;
            return false;
        }

        if (meta is < 0 or > int.MaxValue)
        {
            throw new InvalidDataException($"the producer sent meta index {meta}, which is not a slot index.");
        }

        notice = new FrameNotice((int)meta, BinaryPrimitives.ReadInt64LittleEndian(b[8..]), BinaryPrimitives.ReadInt64LittleEndian(b[16..]));
        return true;
    }

    public void Acknowledge(in FrameAck ack)
    {
        Span<byte> b = _sendBuffer.AsSpan(0, AckBytes);
        BinaryPrimitives.WriteInt64LittleEndian(b, ack.Seq);
        BinaryPrimitives.WriteInt64LittleEndian(b[8..], ack.ReceivedTimestamp);
        BinaryPrimitives.WriteInt64LittleEndian(b[16..], ack.DoneTimestamp);
        BinaryPrimitives.WriteInt64LittleEndian(b[24..], ack.MismatchOffset);
        output.Write(b);
        output.Flush();
    }

    public void Dispose()
    {
        try
        {
            Complete();
        }
        catch (IOException)
        {
            // the other end is gone: nothing to tell it
        }

        input.Dispose();
    }
}
