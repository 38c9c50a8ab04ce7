namespace Xmem;

/// <summary>The element type of a buffer's description. The numbers are stored in shared memory (the slot's DType
/// byte, docs/layout.md) and are the same in every language; 0 means "no tensor description".</summary>
public enum ElementType : byte
{
    /// <summary>No element type: the buffer has no tensor description.</summary>
    None = 0,
    /// <summary>Unsigned 8-bit integer.</summary>
    UInt8 = 1,
    /// <summary>Signed 8-bit integer.</summary>
    Int8 = 2,
    /// <summary>Unsigned 16-bit integer.</summary>
    UInt16 = 3,
    /// <summary>Signed 16-bit integer.</summary>
    Int16 = 4,
    /// <summary>Signed 32-bit integer.</summary>
    Int32 = 5,
    /// <summary>Signed 64-bit integer.</summary>
    Int64 = 6,
    /// <summary>IEEE 754 half precision.</summary>
    Float16 = 7,
    /// <summary>bfloat16 (the upper half of a float32).</summary>
    BFloat16 = 8,
    /// <summary>IEEE 754 single precision.</summary>
    Float32 = 9,
    /// <summary>IEEE 754 double precision.</summary>
    Float64 = 10,
    /// <summary>One byte per element, 0 false, anything else true.</summary>
    Bool = 11,
}

/// <summary>Sizes of <see cref="ElementType"/> values.</summary>
public static class ElementTypes
{
    /// <summary>Bytes per element; 0 for <see cref="ElementType.None"/> and for values that are no element type.</summary>
    public static int SizeOf(this ElementType type) => type switch
    {
        ElementType.UInt8 or ElementType.Int8 or ElementType.Bool => 1,
        ElementType.UInt16 or ElementType.Int16 or ElementType.Float16 or ElementType.BFloat16 => 2,
        ElementType.Int32 or ElementType.Float32 => 4,
        ElementType.Int64 or ElementType.Float64 => 8,
        _ => 0,
    };
}
