using Xmem.Errors;

namespace Xmem;

// The buffer's self-description (see BufferPool.Description.cs).
public partial class BufferGuard
{
    /// <summary>The buffer's description, validated against its size; null when it has none, or when what is stored
    /// is not a valid description (a corrupt slot, or a writer that died mid-write) — never an out-of-bounds one.</summary>
    public BufferDescription? Description
    {
        get
        {
            ThrowIfInvalid();
            return _pool.ReadDescription(MetaIndex, Size);
        }
    }

    /// <summary>The tensor part of <see cref="Description"/>, or null.</summary>
    public TensorSpec? Tensor => Description?.Tensor;

    /// <summary>Describes the buffer for every process that holds it (read-write guards only).</summary>
    /// <exception cref="ArgumentException">The shape and strides reach past the buffer, a tag is longer than 31
    /// UTF-8 bytes or contains NUL.</exception>
    /// <exception cref="BufferReadOnlyException">The guard is read-only.</exception>
    public void SetDescription(in BufferDescription description)
    {
        ThrowIfInvalid();
        if (IsReadOnly)
        {
            ThrowHelper.ThrowReadOnly();
        }

        _pool.WriteDescription(MetaIndex, _gen, Size, description);
    }

    /// <summary>Describes the buffer: <paramref name="tensor"/> (null: none), a sequence number, a CLOCK_MONOTONIC
    /// timestamp in ns (null: now) and two tags (null or empty: none).</summary>
    public void SetDescription(TensorSpec? tensor, ulong seq = 0, long? timestampNs = null, string? contentType = null, string? producerTag = null) =>
        SetDescription(new BufferDescription(tensor, seq, timestampNs ?? BufferDescription.MonotonicNowNs(), contentType ?? "", producerTag ?? ""));
}
