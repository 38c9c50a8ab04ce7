using System.Collections.Immutable;
using System.Text;

namespace Xmem;

/// <summary>
/// What a buffer holds as a tensor: element type, shape (0 to 8 dimensions) and strides in bytes. Strides are
/// non-negative multiples of the element size (so every consumer, DLPack included, can express them in elements); the
/// buffer must hold <see cref="RequiredBytes"/>. A spec is checked when made: an invalid one cannot exist.
/// </summary>
public readonly record struct TensorSpec
{
    /// <summary>The most dimensions a description holds.</summary>
    public const int MaxDimensions = 8;

    /// <summary>A C-contiguous (row-major, densely packed) tensor of <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">Unknown element type, more than 8 dimensions, a negative dimension, or a
    /// size that overflows.</exception>
    public TensorSpec(ElementType elementType, params ReadOnlySpan<long> shape)
        : this(elementType, shape, ContiguousStrides(elementType, shape), nameof(shape))
    {
    }

    private TensorSpec(ElementType elementType, ReadOnlySpan<long> shape, ReadOnlySpan<long> strides, string param)
    {
        string? error = Check(elementType, shape, strides, long.MaxValue, out long required);
        if (error is not null)
        {
            throw new ArgumentException(error, param);
        }

        ElementType = elementType;
        Shape = [.. shape];
        Strides = [.. strides];
        RequiredBytes = required;
    }

    /// <summary>A tensor with explicit <paramref name="stridesInBytes"/> (one per dimension, each a non-negative
    /// multiple of the element size).</summary>
    /// <exception cref="ArgumentException">As the contiguous constructor, or strides of the wrong count, negative or
    /// not a multiple of the element size.</exception>
    public static TensorSpec WithStrides(ElementType elementType, ReadOnlySpan<long> shape, ReadOnlySpan<long> stridesInBytes) =>
        new(elementType, shape, stridesInBytes, nameof(stridesInBytes));

    /// <summary>The element type.</summary>
    public ElementType ElementType { get; }

    /// <summary>Elements per dimension, outermost first (empty for a scalar).</summary>
    public ImmutableArray<long> Shape { get; }

    /// <summary>Bytes between consecutive elements of each dimension.</summary>
    public ImmutableArray<long> Strides { get; }

    /// <summary>Dimensions.</summary>
    public int Rank => Shape.IsDefault ? 0 : Shape.Length;

    /// <summary>Bytes of the buffer the tensor reaches: 0 for an empty tensor, else the offset of its last element plus
    /// the element size.</summary>
    public long RequiredBytes { get; }

    /// <summary>Number of elements (the product of the shape).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape.IsDefault ? [] : Shape)
            {
                n *= d;
            }

            return n;
        }
    }

    /// <summary>True when the strides are those of a C-contiguous layout.</summary>
    public bool IsContiguous => !Shape.IsDefault && Strides.AsSpan().SequenceEqual(ContiguousStrides(ElementType, Shape.AsSpan()));

    /// <inheritdoc />
    public bool Equals(TensorSpec other) =>
        ElementType == other.ElementType
        && (Shape.IsDefault ? [] : Shape.AsSpan()).SequenceEqual(other.Shape.IsDefault ? [] : other.Shape.AsSpan())
        && (Strides.IsDefault ? [] : Strides.AsSpan()).SequenceEqual(other.Strides.IsDefault ? [] : other.Strides.AsSpan());

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(ElementType);
        foreach (long d in Shape.IsDefault ? [] : Shape)
        {
            h.Add(d);
        }

        foreach (long s in Strides.IsDefault ? [] : Strides)
        {
            h.Add(s);
        }

        return h.ToHashCode();
    }

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append("ElementType = ").Append(ElementType)
            .Append(", Shape = [").AppendJoin(", ", Shape.IsDefault ? [] : Shape)
            .Append("], Strides = [").AppendJoin(", ", Strides.IsDefault ? [] : Strides).Append(']');
        return true;
    }

    /// <summary>C-contiguous strides in bytes (0 for a type of unknown size; the check reports it).</summary>
    internal static long[] ContiguousStrides(ElementType type, ReadOnlySpan<long> shape)
    {
        var strides = new long[shape.Length];
        long step = type.SizeOf();
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = step;
            long d = shape[i];
            step = d <= 0 ? step : (step > long.MaxValue / d ? 0 : step * d);
        }

        return strides;
    }

    /// <summary>Checks a description against a buffer of <paramref name="bufferSize"/> bytes, without trusting
    /// anything: returns null and the bytes it reaches when valid, else what is wrong.</summary>
    internal static string? Check(ElementType type, ReadOnlySpan<long> shape, ReadOnlySpan<long> strides, long bufferSize, out long required)
    {
        required = 0;
        int esize = type.SizeOf();
        if (esize == 0)
        {
            return $"element type {(byte)type} is not one of xmem's element types.";
        }

        if (shape.Length > MaxDimensions)
        {
            return $"a description holds at most {MaxDimensions} dimensions; this shape has {shape.Length}.";
        }

        if (strides.Length != shape.Length)
        {
            return $"there are {strides.Length} strides for {shape.Length} dimensions; give one stride per dimension.";
        }

        bool empty = false;
        long last = 0; // offset of the last element
        for (int i = 0; i < shape.Length; i++)
        {
            long d = shape[i], s = strides[i];
            if (d < 0)
            {
                return $"dimension {i} is {d}; dimensions must be 0 or more.";
            }

            if (s < 0 || s % esize != 0)
            {
                return $"stride {i} is {s} bytes; strides must be non-negative multiples of the element size ({esize} bytes).";
            }

            if (d == 0)
            {
                empty = true;
                continue;
            }

            // (d - 1) * s without overflow, then the running sum.
            if (s != 0 && d - 1 > (long.MaxValue - last) / s)
            {
                return "the tensor's extent overflows a 64-bit byte count.";
            }

            last += (d - 1) * s;
        }

        if (last > long.MaxValue - esize)
        {
            return "the tensor's extent overflows a 64-bit byte count.";
        }

        // The element count must be representable too (consumers multiply the shape).
        long count = 1;
        foreach (long d in shape)
        {
            if (d != 0 && count > long.MaxValue / d)
            {
                return "the tensor's element count overflows a 64-bit count.";
            }

            count *= d;
        }

        required = empty ? 0 : last + esize;
        if (required > bufferSize)
        {
            return $"the tensor reaches {required} bytes but the buffer has {bufferSize}.";
        }

        return null;
    }
}
