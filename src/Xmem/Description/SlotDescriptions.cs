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
/// <para>A pipeline describes every frame alike but for its sequence number and time, so both sides avoid the work
/// of a description that did not change. The acquirer leaves the old fields in place (DescVersion 0 alone says
/// "none"); a writer stores only the fields that differ from what is there, so the cache lines of shape, strides and
/// tags stay shared with the consumer that read them, instead of moving to the writer's CPU and back every frame. A
/// reader keeps, per slot, the last tensor spec and tags it decoded, and hands out the same immutable objects again
/// when the bytes it copied are equal to the ones they were decoded from: a steady-state read allocates nothing. The
/// cache is this process's memory and is used only after the copy passed the seqlock; equal bytes decode to an
/// equal value, so it changes no result, and what is cached was validated when it was decoded (the size check is
/// repeated: a spec that fits one buffer need not fit the next).</para>
/// </summary>
internal sealed unsafe class SlotDescriptions(SlotTable slots)
{
    private const int DescriptionReadAttempts = 200;

    /// <summary>Strict UTF-8 (throws on invalid bytes and lone surrogates), shared: the encoding holds no state.</summary>
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private readonly SlotTable _slots = slots;

    /// <summary>The decode caches, made by the first description read (a process that reads none, and a pool while
    /// it is created or opened, pays nothing for them: 24 bytes a slot).</summary>
    private DecodeCache? _cache;

    /// <summary>Validates <paramref name="d"/> against a buffer of <paramref name="size"/> bytes and writes it into
    /// slot <paramref name="s"/> (generation <paramref name="gen"/>, which the caller holds a reference to).</summary>
    internal void Write(int s, uint gen, long size, in BufferDescription d)
    {
        // An empty tag, the common case, is all zeroes and costs no call (the clears of these fixed-size spans are
        // inlined).
        Span<byte> contentType = stackalloc byte[32];
        Span<byte> producerTag = stackalloc byte[32];
        contentType.Clear();
        producerTag.Clear();
        if (d.ContentType is { Length: > 0 } ctText)
        {
            EncodeTag(ctText, contentType, "ContentType");
        }

        if (d.ProducerTag is { Length: > 0 } ptText)
        {
            EncodeTag(ptText, producerTag, "ProducerTag");
        }

        TensorSpec? t = d.Tensor;
        if (t is { } spec)
        {
            if (spec.ElementType == ElementType.None || spec.Shape.IsDefault)
            {
                throw new ArgumentException("the tensor spec is empty (a default value); give it an element type and a shape.", nameof(d));
            }

            // A TensorSpec is checked whole when it is made (its constructors are the only way to one that is not
            // the default), RequiredBytes included; what is left is whether it fits this buffer.
            if (spec.RequiredBytes > size)
            {
                string? error = TensorSpec.Check(spec.ElementType, spec.Shape.AsSpan(), spec.Strides.AsSpan(), size, out _);
                throw new ArgumentException($"the description does not fit this buffer: {error ?? $"it reaches {spec.RequiredBytes} bytes; the buffer has {size}."}", nameof(d));
            }
        }

        Span<long> shape = stackalloc long[8];
        Span<long> strides = stackalloc long[8];
        shape.Clear();
        strides.Clear();
        if (t is { } ts)
        {
            ts.Shape.AsSpan().CopyTo(shape);
            ts.Strides.AsSpan().CopyTo(strides);
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
            r->NDim = (byte)(t?.Rank ?? 0);
            r->Seq = d.Seq;
            r->TimestampNs = d.TimestampNs;
            // The rest only where it differs (what is there is whatever the last writer left, or garbage: the
            // comparison decides nothing but whether to store; the lock keeps other writers out meanwhile).
            StoreIfChanged(new Span<long>(r->Shape, 8), shape);
            StoreIfChanged(new Span<long>(r->Strides, 8), strides);
            StoreIfChanged(new Span<byte>(r->ContentType, 32), contentType);
            StoreIfChanged(new Span<byte>(r->ProducerTag, 32), producerTag);
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

            return Decode(s, dtype, ndim, seq, ts, shape, strides, ct, pt, size);
        }

        return null;
    }

    /// <summary>Stores <paramref name="value"/> into <paramref name="field"/> unless it holds it already.</summary>
    private static void StoreIfChanged<T>(Span<T> field, ReadOnlySpan<T> value) where T : unmanaged, IEquatable<T>
    {
        if (!field.SequenceEqual(value))
        {
            value.CopyTo(field);
        }
    }

    /// <summary>Makes the caches once; of racing first readers one's set is kept, and the others use it.</summary>
    private DecodeCache MakeCache()
    {
        var made = new DecodeCache(_slots.Capacity);
        return Interlocked.CompareExchange(ref _cache, made, null) ?? made;
    }

    /// <summary>Per slot, the last tensor spec and tags this process decoded from it (each read and replaced whole: a
    /// reference store is atomic, so racing readers each see one complete entry).</summary>
    private sealed class DecodeCache(int capacity)
    {
        internal readonly DecodedTensor?[] Tensors = new DecodedTensor?[capacity];
        internal readonly DecodedTag?[] ContentTypes = new DecodedTag?[capacity];
        internal readonly DecodedTag?[] ProducerTags = new DecodedTag?[capacity];
    }

    private BufferDescription? Decode(int s, byte dtype, int ndim, ulong seq, long ts, ReadOnlySpan<long> shape, ReadOnlySpan<long> strides, ReadOnlySpan<byte> ct, ReadOnlySpan<byte> pt, long size)
    {
        DecodeCache cache = Volatile.Read(ref _cache) ?? MakeCache();
        if (ndim > TensorSpec.MaxDimensions || !TryDecodeTag(ref cache.ContentTypes[s], ct, out string contentType) || !TryDecodeTag(ref cache.ProducerTags[s], pt, out string producerTag))
        {
            return null;
        }

        TensorSpec? tensor = null;
        if (dtype != 0)
        {
            var type = (ElementType)dtype;
            DecodedTensor? last = Volatile.Read(ref cache.Tensors[s]);
            if (last is not null && last.Matches(type, shape[..ndim], strides[..ndim]))
            {
                if (last.Spec.RequiredBytes > size)
                {
                    return null; // valid, but not for this buffer
                }

                tensor = last.Spec;
            }
            else
            {
                if (TensorSpec.Check(type, shape[..ndim], strides[..ndim], size, out _) is not null)
                {
                    return null;
                }

                TensorSpec spec = TensorSpec.WithStrides(type, shape[..ndim], strides[..ndim]);
                Volatile.Write(ref cache.Tensors[s], new DecodedTensor(spec));
                tensor = spec;
            }
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
            n = StrictUtf8.GetByteCount(value);
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

    /// <summary>Decodes a stored tag (<paramref name="last"/>: this slot's last decoded one, reused when the bytes are
    /// the same; replaced by a new decoding otherwise).</summary>
    private static bool TryDecodeTag(ref DecodedTag? last, ReadOnlySpan<byte> raw, out string value)
    {
        value = "";
        int n = raw.IndexOf((byte)0);
        if (n < 0 || n > BufferDescription.MaxTagBytes || raw[n..].ContainsAnyExcept((byte)0))
        {
            return false; // not NUL terminated within 31 bytes, or garbage after the terminator
        }

        if (n == 0)
        {
            return true;
        }

        DecodedTag? cached = Volatile.Read(ref last);
        if (cached is not null && raw[..n].SequenceEqual(cached.Utf8))
        {
            value = cached.Value;
            return true;
        }

        try
        {
            value = StrictUtf8.GetString(raw[..n]);
        }
        catch (DecoderFallbackException)
        {
            return false;
        }

        Volatile.Write(ref last, new DecodedTag(raw[..n].ToArray(), value));
        return true;
    }

    /// <summary>A tensor spec as decoded from a slot's fields (immutable: shared by every read that matches it).</summary>
    private sealed class DecodedTensor(TensorSpec spec)
    {
        internal TensorSpec Spec { get; } = spec;

        internal bool Matches(ElementType type, ReadOnlySpan<long> shape, ReadOnlySpan<long> strides) =>
            Spec.ElementType == type && Spec.Shape.AsSpan().SequenceEqual(shape) && Spec.Strides.AsSpan().SequenceEqual(strides);
    }

    /// <summary>A tag's UTF-8 bytes and the string they decode to.</summary>
    private sealed class DecodedTag(byte[] utf8, string value)
    {
        internal byte[] Utf8 { get; } = utf8;

        internal string Value { get; } = value;
    }
}
