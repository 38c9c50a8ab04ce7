using System.Runtime.InteropServices;

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

    internal static unsafe void Fill(BufferInfo* info, BufferRef r)
    {
        Fill(info, r.Guard);
        if (!r.IsValid)
        {
            // Ended while being read (a release racing on another thread): the fields may be a later reference's.
            throw new BufferGuardInvalidException("this buffer guard was released or sent while its info was read; get the slot again for a new one.");
        }
    }

    internal static unsafe void Fill(BufferInfo* info, BufferGuard g)
    {
        if (info is null)
        {
            return;
        }

        bool cuda = g.IsCuda;
        info->Size = g.Size;
        info->CpuPtr = cuda ? 0 : g.CpuPointer;
        info->CudaPtr = cuda ? g.CudaPointer : 0;
        info->MetaIndex = g.MetaIndex;
        info->DeviceId = g.DeviceId;
        info->Flags = (g.IsReadOnly ? FlagReadOnly : 0) | (cuda ? FlagCuda : 0);
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
