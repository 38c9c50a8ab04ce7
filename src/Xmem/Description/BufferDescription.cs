namespace Xmem;

/// <summary>
/// What a buffer says about itself, stored in its slot for every process to read: an optional tensor description,
/// a sequence number, a timestamp, and two short tags (at most 31 UTF-8 bytes each, no NUL).
/// </summary>
/// <param name="Tensor">Element type, shape and strides; null when the buffer is not described as a tensor.</param>
/// <param name="Seq">The producer's sequence number.</param>
/// <param name="TimestampNs">A CLOCK_MONOTONIC timestamp in nanoseconds (comparable across processes on one machine).</param>
/// <param name="ContentType">What the bytes are, e.g. "image/rgb8"; empty when unset.</param>
/// <param name="ProducerTag">Who made them, e.g. "cam0"; empty when unset.</param>
public readonly record struct BufferDescription(TensorSpec? Tensor, ulong Seq = 0, long TimestampNs = 0, string ContentType = "", string ProducerTag = "")
{
    /// <summary>Most UTF-8 bytes of <see cref="ContentType"/> and <see cref="ProducerTag"/>.</summary>
    public const int MaxTagBytes = 31;

    /// <summary>The CLOCK_MONOTONIC time now, in nanoseconds (what <see cref="TimestampNs"/> is measured in).</summary>
    public static long MonotonicNowNs()
    {
        long t = System.Diagnostics.Stopwatch.GetTimestamp();
        long f = System.Diagnostics.Stopwatch.Frequency;
        return f == 1_000_000_000 ? t : (long)((Int128)t * 1_000_000_000 / f);
    }
}
