namespace Xmem;

/// <summary>A pool or channel name breaks the naming rules (XMEM_E_INVALID_NAME). An <see cref="ArgumentException"/>,
/// so that a caller catching that still catches it.</summary>
public sealed class InvalidNameException : ArgumentException, IXmemError
{
    /// <summary>Creates the exception for the argument <paramref name="paramName"/>.</summary>
    public InvalidNameException(string message, string? paramName) : base(message, paramName)
    {
    }

    /// <inheritdoc />
    public XmemStatus Status => XmemStatus.InvalidName;

    /// <inheritdoc />
    public int NativeError => 0;
}

/// <summary>A meta index outside the pool's slots 0..capacity-1 (XMEM_E_INDEX_OUT_OF_RANGE). An
/// <see cref="ArgumentOutOfRangeException"/>, so that a caller catching that still catches it.</summary>
public sealed class MetaIndexOutOfRangeException : ArgumentOutOfRangeException, IXmemError
{
    /// <summary>Creates the exception for the argument <paramref name="paramName"/>, whose value was <paramref name="actualValue"/>.</summary>
    public MetaIndexOutOfRangeException(string? paramName, object? actualValue, string message) : base(paramName, actualValue, message)
    {
    }

    /// <inheritdoc />
    public XmemStatus Status => XmemStatus.IndexOutOfRange;

    /// <inheritdoc />
    public int NativeError => 0;
}
