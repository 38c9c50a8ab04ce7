using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Xmem.Examples.OnnxConsumer;

/// <summary>
/// An ONNX Runtime tensor over a received buffer's memory, with no copy: the <see cref="OrtValue"/> points at the
/// guard's shared memory, so the guard must outlive it. This type owns both and ends them in that order — the
/// OrtValue first, then the guard (which releases the buffer's reference) — so the buffer is held exactly as long
/// as ONNX Runtime can read it.
/// </summary>
internal sealed class GuardTensor : IDisposable
{
    private readonly BufferGuard _guard;

    private GuardTensor(BufferGuard guard, OrtValue value, long[] shape)
    {
        _guard = guard;
        Value = value;
        Shape = shape;
    }

    /// <summary>The tensor, over the guard's memory.</summary>
    public OrtValue Value { get; }

    /// <summary>Its shape: the buffer's description with a batch dimension of 1 in front.</summary>
    public long[] Shape { get; }

    /// <summary>The buffer's sequence number (from its description).</summary>
    public ulong Seq => _guard.Description!.Value.Seq;

    /// <summary>True when the tensor's data is the guard's own memory (nothing was copied).</summary>
    public unsafe bool ReadsGuardMemory
    {
        get
        {
            fixed (byte* data = Value.GetTensorMutableRawData())
            {
                return (nint)data == _guard.CpuPointer;
            }
        }
    }

    /// <summary>Takes over <paramref name="guard"/> (disposed with the tensor, or now if this throws): a float32
    /// buffer described as a contiguous tensor becomes a (1, ...) tensor over the same memory.</summary>
    public static GuardTensor Over(BufferGuard guard)
    {
        try
        {
            TensorSpec spec = guard.Tensor ?? throw new InvalidDataException($"buffer {guard.MetaIndex} has no tensor description; the producer must describe its frames.");
            if (spec.ElementType != ElementType.Float32 || !spec.IsContiguous)
            {
                throw new InvalidDataException($"buffer {guard.MetaIndex} is {spec.ElementType}, contiguous {spec.IsContiguous}; this model takes contiguous float32 frames.");
            }

            long[] shape = [1, .. spec.Shape];
            OrtValue value = OrtValue.CreateTensorValueWithData(
                OrtMemoryInfo.DefaultInstance, TensorElementType.Float, shape, guard.CpuPointer, spec.RequiredBytes);
            return new GuardTensor(guard, value, shape);
        }
        catch
        {
            guard.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Value.Dispose(); // ONNX Runtime lets go of the memory first
        _guard.Dispose(); // then the buffer's reference goes back
    }
}
