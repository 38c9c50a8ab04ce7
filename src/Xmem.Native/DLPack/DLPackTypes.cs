using System.Runtime.InteropServices;

namespace Xmem.Native.DLPack;

// The DLPack ABI (dlpack.h, v1.0), 64-bit layout. Explicit offsets so that a field moved by mistake is caught by
// the compiler's Size check rather than by a consumer reading garbage.

/// <summary>DLTensor (48 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 48)]
internal unsafe struct DLTensor
{
    internal const int KDLCpu = 1, KDLCuda = 2;

    [FieldOffset(0)] internal nint Data;
    [FieldOffset(8)] internal int DeviceType;
    [FieldOffset(12)] internal int DeviceId;
    [FieldOffset(16)] internal int NDim;
    [FieldOffset(20)] internal byte DTypeCode;
    [FieldOffset(21)] internal byte DTypeBits;
    [FieldOffset(22)] internal ushort DTypeLanes;
    [FieldOffset(24)] internal long* Shape;
    [FieldOffset(32)] internal long* Strides;
    [FieldOffset(40)] internal ulong ByteOffset;
}

/// <summary>DLManagedTensor, the pre-1.0 (unversioned) form (64 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct DLManagedTensor
{
    [FieldOffset(0)] internal DLTensor Tensor;
    [FieldOffset(48)] internal nint ManagerCtx;
    [FieldOffset(56)] internal nint Deleter; // void (*)(DLManagedTensor*)
}

/// <summary>DLManagedTensorVersioned (DLPack ≥ 1.0) (80 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 80)]
internal struct DLManagedTensorVersioned
{
    internal const ulong FlagReadOnly = 1UL << 0;

    [FieldOffset(0)] internal uint Major;
    [FieldOffset(4)] internal uint Minor;
    [FieldOffset(8)] internal nint ManagerCtx;
    [FieldOffset(16)] internal nint Deleter; // void (*)(DLManagedTensorVersioned*)
    [FieldOffset(24)] internal ulong Flags;
    [FieldOffset(32)] internal DLTensor Tensor;
}
