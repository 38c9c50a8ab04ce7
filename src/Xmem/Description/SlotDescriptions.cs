using System.Text;
using Xmem.Core;
using Xmem.Errors;
using Xmem.Layout;

namespace Xmem.Description;

/// <summary>
/// Buffer descriptions in slot records (docs/layout.md, "Descriptions"). Writers serialize on the slot lock (so a
/// writer that dies is repaired by the core's recovery like any lock owner) and publish through the DescVersion
/// seqlock: odd while the fields change. Readers take no lock: they copy the fields between two equal even versions,
/// retry a bounded number of times (a writer that died mid-write leaves the version odd for ever), and validate the
/// copy against the buffer's size before anything of it is used.
/// </summary>
internal sealed unsafe class SlotDescriptions(SlotTable slots)
{
    private const int DescriptionReadAttempts = 200;

    private readonly SlotTable _slots = slots;

    /// <summary>Validates <paramref name="d"/> against a buffer of <paramref name="size"/> bytes and writes it into
    /// slot <paramref name="s"/> (generation <paramref name="gen"/>, which the caller holds a reference to).</summary>
    internal void Write(int s, uint gen, long size, in BufferDescription d)
    {
        Span<byte> contentType = stackalloc byte[32];
        Span<byte> producerTag = stackalloc byte[32];
        EncodeTag(d.ContentType, contentType, "ContentType");
        EncodeTag(d.ProducerTag, producerTag, "ProducerTag");
        TensorSpec? t = d.Tensor;
        if (t is { } spec)
        {
            if (spec.ElementType == ElementType.None || spec.Shape.IsDefault)
            {
                throw new ArgumentException("the tensor spec is empty (a default value); give it an element type and a shape.", nameof(d));
            }

            string? error = TensorSpec.Check(spec.ElementType, spec.Shape.AsSpan(), spec.Strides.AsSpan(), size, out _);
            if (error is not null)
            {
                throw new ArgumentException($"the description does not fit this buffer: {error}", nameof(d));
            }
        }

        SlotRecord* r = _slots.Record(s);
        ulong w = _slots.LockLive(s);
        try
        {
            if (SlotWord.Gen(w) != gen)
            {
                ThrowHelper.ThrowSlotNotLive(s);
            }

            uint v = Volatile.Read(ref r->DescVersion);
            uint odd = (v & 1) == 0 ? v + 1 : v + 2; // odd already: its writer died mid-write; we hold the lock now
            // A full fence: no field store below may become visible before the odd version.
            Interlocked.Exchange(ref r->DescVersion, odd);
            r->DType = (byte)(t?.ElementType ?? ElementType.None);
            int rank = t?.Rank ?? 0;
            r->NDim = (byte)rank;
            r->Seq = d.Seq;
            r->TimestampNs = d.TimestampNs;
            var shape = new Span<long>(r->Shape, 8);
            var strides = new Span<long>(r->Strides, 8);
            shape.Clear();
            strides.Clear();
            if (t is { } ts)
            {
                ts.Shape.AsSpan().CopyTo(shape);
                ts.Strides.AsSpan().CopyTo(strides);
            }

            contentType.CopyTo(new Span<byte>(r->ContentType, 32));
            producerTag.CopyTo(new Span<byte>(r->ProducerTag, 32));
            // Release: every field above is visible before the even version.
            Volatile.Write(ref r->DescVersion, odd + 1);
        }
        finally
        {
            Volatile.Write(ref r->Word, w); // unlock; the count did not change
        }
    }

    /// <summary>Reads slot <paramref name="s"/>'s description as seen by a holder of a reference to it, validated
    /// against <paramref name="size"/>. Null when it was never set, is being written by a writer that does not finish
    /// (died), or does not validate (a corrupt or hostile segment).</summary>
    internal BufferDescription? Read(int s, long size)
    {
        SlotRecord* r = _slots.Record(s);
        Span<long> shape = stackalloc long[8];
        Span<long> strides = stackalloc long[8];
        Span<byte> ct = stackalloc byte[32];
        Span<byte> pt = stackalloc byte[32];
        var spin = new SpinWait();
        for (int attempt = 0; attempt < DescriptionReadAttempts; attempt++)
        {
            uint v1 = Volatile.Read(ref r->DescVersion); // acquire: the copies below are not read before it
            if (v1 == 0)
            {
                return null;
            }

            if ((v1 & 1) != 0)
            {
                spin.SpinOnce(sleep1Threshold: -1);
                continue;
            }

            byte dtype = r->DType;
            int ndim = r->NDim;
            ulong seq = r->Seq;
            long ts = r->TimestampNs;
            new ReadOnlySpan<long>(r->Shape, 8).CopyTo(shape);
            new ReadOnlySpan<long>(r->Strides, 8).CopyTo(strides);
            new ReadOnlySpan<byte>(r->ContentType, 32).CopyTo(ct);
            new ReadOnlySpan<byte>(r->ProducerTag, 32).CopyTo(pt);
            Interlocked.MemoryBarrier(); // the copies complete before the version is read again
            if (Volatile.Read(ref r->DescVersion) != v1)
            {
                spin.SpinOnce(sleep1Threshold: -1);
                continue;
            }

            return Decode(dtype, ndim, seq, ts, shape, strides, ct, pt, size);
        }

        return null;
    }

    private static BufferDescription? Decode(byte dtype, int ndim, ulong seq, long ts, ReadOnlySpan<long> shape, ReadOnlySpan<long> strides, ReadOnlySpan<byte> ct, ReadOnlySpan<byte> pt, long size)
    {
        if (ndim > TensorSpec.MaxDimensions || !TryDecodeTag(ct, out string contentType) || !TryDecodeTag(pt, out string producerTag))
        {
            return null;
        }

        TensorSpec? tensor = null;
        if (dtype != 0)
        {
            var type = (ElementType)dtype;
            if (TensorSpec.Check(type, shape[..ndim], strides[..ndim], size, out _) is not null)
            {
                return null;
            }

            tensor = TensorSpec.WithStrides(type, shape[..ndim], strides[..ndim]);
        }
        else if (ndim != 0)
        {
            return null;
        }

        return new BufferDescription(tensor, seq, ts, contentType, producerTag);
    }

    private static void EncodeTag(string? value, Span<byte> dest, string field)
    {
        dest.Clear();
        if (string.IsNullOrEmpty(value))
        {
            return;
        }

        if (value.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException($"{field} must not contain NUL characters.", field);
        }

        int n;
        try
        {
            n = new UTF8Encoding(false, true).GetByteCount(value);
        }
        catch (EncoderFallbackException)
        {
            throw new ArgumentException($"{field} is not valid Unicode (a lone surrogate).", field);
        }

        if (n > BufferDescription.MaxTagBytes)
        {
            throw new ArgumentException($"{field} is {n} UTF-8 bytes; at most {BufferDescription.MaxTagBytes} fit.", field);
        }

        _ = Encoding.UTF8.GetBytes(value, dest);
    }

    private static bool TryDecodeTag(ReadOnlySpan<byte> raw, out string value)
    {
        value = "";
        int n = raw.IndexOf((byte)0);
        if (n < 0 || n > BufferDescription.MaxTagBytes || raw[n..].ContainsAnyExcept((byte)0))
        {
            return false; // not NUL terminated within 31 bytes, or garbage after the terminator
        }

        try
        {
            value = new UTF8Encoding(false, true).GetString(raw[..n]);
            return true;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }
}
