using System.Runtime.InteropServices;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary><c>xmem_buffer_info</c> in xmem.h (40 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct BufferInfo
{
    internal const uint FlagReadOnly = 0x1, FlagCuda = 0x2;

    [FieldOffset(0)] internal long Size;
    [FieldOffset(8)] internal nint CpuPtr;
    [FieldOffset(16)] internal ulong CudaPtr;
    [FieldOffset(24)] internal int MetaIndex;
    [FieldOffset(28)] internal int DeviceId;
    [FieldOffset(32)] internal uint Flags;
    [FieldOffset(36)] internal uint Reserved;

    /// <summary>Fills <paramref name="info"/> (if set) from reference <paramref name="r"/>, read at once: a release
    /// racing on another thread throws <see cref="BufferGuardInvalidException"/> (XMEM_E_GUARD_INVALID).</summary>
    internal static unsafe void Fill(BufferInfo* info, BufferRef r)
    {
        if (info is null)
        {
            return;
        }

        BufferFacts f = r.Guard.FactsAt(r.Version);
        info->Size = f.Size;
        info->CpuPtr = f.CpuPointer;
        info->CudaPtr = f.CudaPointer;
        info->MetaIndex = f.MetaIndex;
        info->DeviceId = f.DeviceId;
        info->Flags = (f.IsReadOnly ? FlagReadOnly : 0) | (f.IsCuda ? FlagCuda : 0);
        info->Reserved = 0;
    }
}

/// <summary><c>xmem_dlpack_request</c> in xmem.h (40 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
internal unsafe struct DLPackRequest
{
    internal const uint FlagVersioned = 0x1, FlagReadOnly = 0x2;

    [FieldOffset(0)] internal byte DTypeCode;
    [FieldOffset(1)] internal byte DTypeBits;
    [FieldOffset(2)] internal ushort DTypeLanes;
    [FieldOffset(4)] internal int NDim;
    [FieldOffset(8)] internal long* Shape;
    [FieldOffset(16)] internal long* Strides;
    [FieldOffset(24)] internal ulong ByteOffset;
    [FieldOffset(32)] internal uint Flags;
    [FieldOffset(36)] internal uint Reserved;
}

/// <summary><c>xmem_description</c> in xmem.h (224 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 224)]
internal unsafe struct DescriptionInfo
{
    internal const uint FlagContiguous = 0x1, FlagTimestampNow = 0x2, FlagPresent = 0x4;
    internal const int TagBytes = 32;

    [FieldOffset(0)] internal int DType;
    [FieldOffset(4)] internal int NDim;
    [FieldOffset(8)] internal uint Flags;
    [FieldOffset(12)] internal uint Reserved;
    [FieldOffset(16)] internal fixed long Shape[8];
    [FieldOffset(80)] internal fixed long Strides[8];
    [FieldOffset(144)] internal ulong Seq;
    [FieldOffset(152)] internal long TimestampNs;
    [FieldOffset(160)] internal fixed byte ContentType[32];
    [FieldOffset(192)] internal fixed byte ProducerTag[32];
}

/// <summary><c>xmem_channel_properties</c> in xmem.h (16 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct ChannelInfoOut
{
    [FieldOffset(0)] internal int Depth;
    [FieldOffset(4)] internal int Mode;
    [FieldOffset(8)] internal int Count;
    [FieldOffset(12)] internal uint Reserved;
}
