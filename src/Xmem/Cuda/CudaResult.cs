namespace Xmem.Cuda;

/// <summary>
/// The <c>CUresult</c> codes xmem gives a meaning to, and the one CUresult → exception table. The driver's own
/// <c>cuGetErrorName</c>/<c>cuGetErrorString</c> text is used when the driver is loaded; the names here are the fallback.
/// </summary>
internal static class CudaResult
{
    internal const int Success = 0;
    internal const int InvalidValue = 1;
    internal const int OutOfMemory = 2;
    internal const int NotInitialized = 3;
    internal const int Deinitialized = 4;
    internal const int StubLibrary = 34;
    internal const int InsufficientDriver = 35;
    internal const int DeviceUnavailable = 46;
    internal const int NoDevice = 100;
    internal const int InvalidDevice = 101;
    internal const int InvalidContext = 201;
    internal const int MapFailed = 205;
    internal const int PeerAccessUnsupported = 217;
    internal const int InvalidHandle = 400;
    internal const int IllegalAddress = 700;
    internal const int TooManyPeers = 711;
    internal const int NotPermitted = 800;
    internal const int NotSupported = 801;
    internal const int SystemNotReady = 802;
    internal const int SystemDriverMismatch = 803;
    internal const int CompatNotSupportedOnDevice = 804;
    internal const int Unknown = 999;

    /// <summary>The enum name of <paramref name="result"/> (fallback table, for when the driver cannot say).</summary>
    internal static string Name(int result) => result switch
    {
        Success => "CUDA_SUCCESS",
        InvalidValue => "CUDA_ERROR_INVALID_VALUE",
        OutOfMemory => "CUDA_ERROR_OUT_OF_MEMORY",
        NotInitialized => "CUDA_ERROR_NOT_INITIALIZED",
        Deinitialized => "CUDA_ERROR_DEINITIALIZED",
        StubLibrary => "CUDA_ERROR_STUB_LIBRARY",
        InsufficientDriver => "CUDA_ERROR_INSUFFICIENT_DRIVER",
        DeviceUnavailable => "CUDA_ERROR_DEVICE_UNAVAILABLE",
        NoDevice => "CUDA_ERROR_NO_DEVICE",
        InvalidDevice => "CUDA_ERROR_INVALID_DEVICE",
        InvalidContext => "CUDA_ERROR_INVALID_CONTEXT",
        MapFailed => "CUDA_ERROR_MAP_FAILED",
        PeerAccessUnsupported => "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED",
        InvalidHandle => "CUDA_ERROR_INVALID_HANDLE",
        IllegalAddress => "CUDA_ERROR_ILLEGAL_ADDRESS",
        TooManyPeers => "CUDA_ERROR_TOO_MANY_PEERS",
        NotPermitted => "CUDA_ERROR_NOT_PERMITTED",
        NotSupported => "CUDA_ERROR_NOT_SUPPORTED",
        SystemNotReady => "CUDA_ERROR_SYSTEM_NOT_READY",
        SystemDriverMismatch => "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
        CompatNotSupportedOnDevice => "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
        Unknown => "CUDA_ERROR_UNKNOWN",
        _ => $"CUresult {result}",
    };

    /// <summary>True for the results that mean "CUDA cannot be used on this machine" rather than "this call failed".</summary>
    internal static bool MeansUnavailable(int result) => result is NoDevice or StubLibrary or InsufficientDriver
        or DeviceUnavailable or SystemNotReady or SystemDriverMismatch or CompatNotSupportedOnDevice or NotInitialized or Deinitialized;

    /// <summary>The CUresult → exception table. <paramref name="what"/> names the call and its object;
    /// <paramref name="text"/> is the driver's "NAME: description" (or the fallback name).</summary>
    internal static Exception ToException(string what, int result, string text) => result switch
    {
        OutOfMemory => new XmemOutOfMemoryException($"{what} failed: {text}. The GPU is out of memory: release buffers (or Trim the pool), or free memory held by other processes on the device (see nvidia-smi).", result),
        _ when MeansUnavailable(result) => new CudaUnavailableException($"{what} failed: {text}. CUDA cannot be used in this process (driver or device missing, unusable, or the driver is older than the CUDA it is asked for)."),
        InvalidContext when what.StartsWith("cuIpcOpen", StringComparison.Ordinal) => new CudaException($"{what} failed: {text}. CUDA refuses to open an IPC handle in the process that exported it (or in a context of another device).", result),
        PeerAccessUnsupported or TooManyPeers => new CudaException($"{what} failed: {text}. The buffer lives on a device this device cannot access directly; copy it with CopyToCuda/CopyToDevice instead.", result),
        _ => new CudaException($"{what} failed: {text}.", result),
    };
}
