namespace Xmem;

/// <summary>Implemented by every exception xmem throws, so that a caller (or the C ABI) can read the cause.</summary>
public interface IXmemError
{
    /// <summary>The cause.</summary>
    XmemStatus Status { get; }

    /// <summary>The raw errno (or CUresult for CUDA errors) behind the failure; 0 when none.</summary>
    int NativeError { get; }
}

/// <summary>Base class of xmem's own exceptions.</summary>
public class XmemException : Exception, IXmemError
{
    /// <summary>Creates an exception with a cause and a message that says what to do.</summary>
    public XmemException(XmemStatus status, string message, int nativeError = 0, Exception? inner = null)
        : base(message, inner)
    {
        Status = status;
        NativeError = nativeError;
    }

    /// <inheritdoc />
    public XmemStatus Status { get; }

    /// <inheritdoc />
    public int NativeError { get; }
}

/// <summary>No pool of that name exists.</summary>
public sealed class PoolNotFoundException : FileNotFoundException, IXmemError
{
    /// <summary>Creates the exception.</summary>
    public PoolNotFoundException(string message, string? fileName, int nativeError = 0) : base(message, fileName) => NativeError = nativeError;

    /// <inheritdoc />
    public XmemStatus Status => XmemStatus.NotFound;

    /// <inheritdoc />
    public int NativeError { get; }
}

/// <summary>A live pool of that name exists already.</summary>
public sealed class PoolExistsException(string message) : XmemException(XmemStatus.AlreadyExists, message, Interop.Errno.EEXIST);

/// <summary>The pool's permissions do not admit this process.</summary>
public sealed class PoolPermissionException(string message, int errno) : XmemException(XmemStatus.PermissionDenied, message, errno);

/// <summary>Every slot of the pool is in use.</summary>
public sealed class PoolFullException(string message) : XmemException(XmemStatus.PoolFull, message);

/// <summary>The memory asked for cannot be had: the shared-memory file system is full or the size is too large.</summary>
public sealed class XmemOutOfMemoryException(string message, int errno) : XmemException(XmemStatus.OutOfMemory, message, errno);

/// <summary>A wait ran out of time.</summary>
public sealed class XmemTimeoutException(string message) : XmemException(XmemStatus.Timeout, message);

/// <summary>Write access was asked of a read-only guard.</summary>
public sealed class BufferReadOnlyException(string message) : XmemException(XmemStatus.ReadOnly, message);

/// <summary>The guard no longer owns a reference (forgotten, disposed or sent).</summary>
public sealed class BufferGuardInvalidException(string message) : XmemException(XmemStatus.GuardInvalid, message);

/// <summary>The slot holds no live buffer.</summary>
public sealed class SlotNotLiveException(string message) : XmemException(XmemStatus.SlotNotLive, message);

/// <summary>A shared segment breaks the layout; it is refused rather than trusted.</summary>
public sealed class CorruptSegmentException(string message) : XmemException(XmemStatus.CorruptSegment, message);

/// <summary>The segment was made by an incompatible version of xmem.</summary>
public sealed class IncompatibleLayoutException(string message) : XmemException(XmemStatus.IncompatibleVersion, message);

/// <summary>CUDA cannot be used here.</summary>
public sealed class CudaUnavailableException(string message) : XmemException(XmemStatus.CudaUnavailable, message);

/// <summary>A CUDA driver call failed.</summary>
public sealed class CudaException(string message, int cuResult) : XmemException(XmemStatus.CudaError, message, cuResult);

/// <summary>The pool's table of attached processes is full.</summary>
public sealed class TooManyProcessesException(string message) : XmemException(XmemStatus.TooManyProcesses, message);
