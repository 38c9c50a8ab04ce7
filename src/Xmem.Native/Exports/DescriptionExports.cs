using Xmem.Core;
using System.Runtime.InteropServices;
using System.Text;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Buffer description exports (xmem.h, "descriptions"): what a buffer says about itself — element type,
/// shape and strides, sequence number, timestamp, content type and producer tag — stored in its slot for every
/// process (docs/layout.md). The core validates a description against the buffer's size both when it is written and
/// when it is read, so nothing read here can reach past the buffer.</summary>
internal static unsafe class DescriptionExports
{
    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_set_description")]
    internal static int GuardSetDescription(ulong guard, DescriptionInfo* description) =>
        Export.OnGuardInPool(guard, new SetDescription(description));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_description")]
    internal static int GuardDescription(ulong guard, DescriptionInfo* outDescription) =>
        Export.OnGuardInPool(guard, new GetDescription(outDescription));

    private readonly struct SetDescription(DescriptionInfo* description) : IExportBody<GuardHandle>
    {
        public int Check() => Export.NotNull(description, "description");

        public int Run(GuardHandle g)
        {
            DescriptionInfo d = *description;
            if (g.Ref.IsReadOnly)
            {
                return LastError.Set(XmemStatus.ReadOnly, $"the guard on slot {g.Ref.MetaIndex} is read-only (from get); describe a buffer through a read-write guard (acquire or get_mut).");
            }

            uint unknown = d.Flags & ~(DescriptionInfo.FlagContiguous | DescriptionInfo.FlagTimestampNow);
            if (unknown != 0)
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"description flags 0x{unknown:x} are not XMEM_DESC_CONTIGUOUS or XMEM_DESC_TIMESTAMP_NOW.");
            }

            if (!TryDecodeTensor(in d, out TensorSpec? tensor, out string? error))
            {
                return LastError.Set(XmemStatus.InvalidArgument, error!);
            }

            long ts = (d.Flags & DescriptionInfo.FlagTimestampNow) != 0 ? BufferDescription.MonotonicNowNs() : d.TimestampNs;
            string contentType = DecodeTag(d.ContentType, "content_type");
            string producerTag = DecodeTag(d.ProducerTag, "producer_tag");
            g.Ref.SetDescription(new BufferDescription(tensor, d.Seq, ts, contentType, producerTag));
            return 0;
        }
    }

    private readonly struct GetDescription(DescriptionInfo* outDescription) : IExportBody<GuardHandle>
    {
        public int Check() => Export.NotNull(outDescription, "out_description");

        public int Run(GuardHandle g)
        {
            BufferDescription? d = g.Ref.Description; // of this handle's reference: a racing release is GuardInvalid
            DescriptionInfo o = default;
            if (d is { } desc)
            {
                o.Flags = DescriptionInfo.FlagPresent;
                o.Seq = desc.Seq;
                o.TimestampNs = desc.TimestampNs;
                if (desc.Tensor is { } t)
                {
                    o.DType = (int)t.ElementType;
                    o.NDim = t.Rank;
                    for (int i = 0; i < t.Rank; i++)
                    {
                        o.Shape[i] = t.Shape[i];
                        o.Strides[i] = t.Strides[i];
                    }

                    if (t.IsContiguous)
                    {
                        o.Flags |= DescriptionInfo.FlagContiguous;
                    }
                }

                // The core allows at most 31 UTF-8 bytes per tag, so each fits with its NUL.
                _ = Encoding.UTF8.GetBytes(desc.ContentType, new Span<byte>(o.ContentType, DescriptionInfo.TagBytes - 1));
                _ = Encoding.UTF8.GetBytes(desc.ProducerTag, new Span<byte>(o.ProducerTag, DescriptionInfo.TagBytes - 1));
            }

            *outDescription = o;
            return 0;
        }
    }

    /// <summary>The tensor part of a C description: none for dtype 0 (then ndim must be 0 too).</summary>
    private static bool TryDecodeTensor(in DescriptionInfo d, out TensorSpec? tensor, out string? error)
    {
        tensor = null;
        error = null;
        if (d.DType == 0)
        {
            if (d.NDim != 0)
            {
                error = $"ndim is {d.NDim} but dtype is 0 (no tensor); give a dtype (XMEM_DTYPE_*) or ndim 0.";
                return false;
            }

            return true;
        }

        if (d.DType is < 1 or > 255 || ((ElementType)d.DType).SizeOf() == 0)
        {
            error = $"dtype {d.DType} is not one of xmem's element types (XMEM_DTYPE_UINT8 .. XMEM_DTYPE_BOOL).";
            return false;
        }

        if (d.NDim is < 0 or > TensorSpec.MaxDimensions)
        {
            error = $"ndim is {d.NDim}; a description holds 0..{TensorSpec.MaxDimensions} dimensions.";
            return false;
        }

        fixed (long* shape = d.Shape, strides = d.Strides)
        {
            try
            {
                var type = (ElementType)d.DType;
                var sh = new ReadOnlySpan<long>(shape, d.NDim);
                tensor = (d.Flags & DescriptionInfo.FlagContiguous) != 0
                    ? new TensorSpec(type, sh)
                    : TensorSpec.WithStrides(type, sh, new ReadOnlySpan<long>(strides, d.NDim));
                return true;
            }
            catch (ArgumentException e)
            {
                error = LastErrorText(e);
                return false;
            }
        }
    }

    private static string LastErrorText(ArgumentException e)
    {
        string m = e.Message;
        int cut = m.IndexOf(" (Parameter '", StringComparison.Ordinal);
        return cut >= 0 ? m[..cut] : m;
    }

    /// <summary>A NUL-terminated UTF-8 tag of at most 31 bytes (the 32nd must be the NUL).</summary>
    private static string DecodeTag(byte* raw, string field)
    {
        var span = new ReadOnlySpan<byte>(raw, DescriptionInfo.TagBytes);
        int n = span.IndexOf((byte)0);
        if (n < 0)
        {
            throw new ArgumentException($"{field} is not NUL-terminated within {DescriptionInfo.TagBytes} bytes; at most {BufferDescription.MaxTagBytes} UTF-8 bytes fit.");
        }

        try
        {
            return new UTF8Encoding(false, true).GetString(span[..n]);
        }
        catch (DecoderFallbackException)
        {
            throw new ArgumentException($"{field} is not valid UTF-8.");
        }
    }
}
