namespace Xmem.Benchmarks.Micro;

/// <summary>Pool and object names unique to this process, so that benchmarks never meet another engineer's or
/// test run's pools in /dev/shm.</summary>
internal static class BenchNames
{
    internal const long FrameBytes = 1920L * 1080 * 3; // 6,220,800 bytes: the protocol's frame
    internal const int PageBytes = 4096;
    internal const int FramePages = (int)((FrameBytes + PageBytes - 1) / PageBytes); // 1519

    internal static string Pool(string purpose) => $"xmem-bench-{Environment.ProcessId}-{purpose}";

    internal static string Object(string purpose) => $"xmem-bench-{Environment.ProcessId}-{purpose}.raw";
}
