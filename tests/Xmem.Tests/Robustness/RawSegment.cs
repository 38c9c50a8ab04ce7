using System.IO.MemoryMappedFiles;

namespace Xmem.Tests.Robustness;

/// <summary>A whole segment file mapped read-write: the view a dead, buggy or hostile process has of it.</summary>
internal sealed unsafe class RawSegment : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;

    private RawSegment(MemoryMappedFile file, MemoryMappedViewAccessor view, byte* at, long length)
    {
        _file = file;
        _view = view;
        Base = at;
        Length = length;
    }

    /// <summary>The first byte of the file.</summary>
    public byte* Base { get; }

    /// <summary>Bytes mapped (the file's size when opened).</summary>
    public long Length { get; }

    public static RawSegment Open(string path)
    {
        var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        long length = fs.Length;
        MemoryMappedFile file = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
        MemoryMappedViewAccessor view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.ReadWrite);
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        return new RawSegment(file, view, p + view.PointerOffset, length);
    }

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
