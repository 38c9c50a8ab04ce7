using Xmem.Layout;
using Xmem.SharedMemory;

namespace Xmem.Inspection;

/// <summary>The pools in <see cref="SharedMemoryDirectory.Path"/> and the objects of their instances, read from the
/// names of the files (<see cref="SegmentNames"/>); a name that could be a pool's or another pool's object is told
/// apart by the file's contents (a whole pool header with its magic number).</summary>
internal static class PoolDirectory
{
    /// <summary>The names of the pools in the directory, unordered; <paramref name="objects"/>, when given, gets the
    /// files that are objects of pool instances (data, holdings, channels, …) with their reading.</summary>
    internal static List<string> PoolNames(List<(string File, SegmentName Name)>? objects) =>
        SegmentNames.Pools(SharedMemoryDirectory.ListObjects(), LooksLikeControlSegment, objects);

    private static bool LooksLikeControlSegment(string file)
    {
        try
        {
            using SegmentReader? r = SegmentReader.TryOpen(file);
            PoolHeader h = default;
            return r is not null && r.Read(new Span<PoolHeader>(ref h), 0) == 1 && h.Magic == LayoutConstants.Magic;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or XmemException)
        {
            return false;
        }
    }
}
