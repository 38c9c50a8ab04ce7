namespace Xmem;

/// <summary>
/// The cause of a failure, the same numbers end to end: C# exceptions carry it, the C ABI returns it
/// (<c>XMEM_E_*</c> in <c>xmem.h</c>), and the Python package maps each to its own exception class.
/// </summary>
public enum XmemStatus
{
    /// <summary>Success.</summary>
    Ok = 0,
    /// <summary>An argument is out of its range or malformed (sizes, counts, capacities, modes).</summary>
    InvalidArgument = 1,
    /// <summary>A pool name is not an optional '/' followed by 1–200 of [A-Za-z0-9._-].</summary>
    InvalidName = 2,
    /// <summary>No pool (or segment) of that name exists.</summary>
    NotFound = 3,
    /// <summary>A live pool of that name exists already.</summary>
    AlreadyExists = 4,
    /// <summary>The pool belongs to another user or group and its mode does not admit this process.</summary>
    PermissionDenied = 5,
    /// <summary>Every slot of the pool is in use.</summary>
    PoolFull = 6,
    /// <summary>The machine (or the shared-memory file system) cannot give the memory asked for.</summary>
    OutOfMemory = 7,
    /// <summary>A wait ran out of time.</summary>
    Timeout = 8,
    /// <summary>Write access was asked of a read-only guard.</summary>
    ReadOnly = 9,
    /// <summary>The guard was forgotten, disposed or sent, and owns nothing any more.</summary>
    GuardInvalid = 10,
    /// <summary>The meta index is outside 0..capacity-1.</summary>
    IndexOutOfRange = 11,
    /// <summary>The slot holds no live buffer (it is free, or being recycled).</summary>
    SlotNotLive = 12,
    /// <summary>A shared segment holds values that break the layout (wrong magic, sizes, indexes): it was written by
    /// another program or a buggy or hostile process.</summary>
    CorruptSegment = 13,
    /// <summary>The segment was made by an incompatible layout version of xmem.</summary>
    IncompatibleVersion = 14,
    /// <summary>CUDA cannot be used here (no driver, no device, or the device is out of range).</summary>
    CudaUnavailable = 15,
    /// <summary>A CUDA driver call failed; the raw CUresult is attached.</summary>
    CudaError = 16,
    /// <summary>The wait was cancelled.</summary>
    Canceled = 17,
    /// <summary>The pool's table of attached processes is full.</summary>
    TooManyProcesses = 18,
    /// <summary>The pool (or handle) was disposed.</summary>
    Disposed = 19,
    /// <summary>Another operating-system error; the raw errno is attached.</summary>
    OsError = 20,
    /// <summary>A handle passed through the C ABI is null, stale or of the wrong kind.</summary>
    InvalidHandle = 21,
    /// <summary>A channel is full (send) or empty (receive) and the caller asked not to wait.</summary>
    WouldBlock = 22,
    /// <summary>An unexpected internal failure; the message has the details.</summary>
    Internal = 99,
}
