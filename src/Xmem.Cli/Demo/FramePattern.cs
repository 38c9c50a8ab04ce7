using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Xmem.Cli.Demo;

/// <summary>
/// The demo's frame content: every byte is known from the frame's sequence number and its offset, so a consumer can
/// check a whole frame byte for byte without a reference copy. Little-endian 64-bit word <c>j</c> of frame
/// <c>seq</c> is <c>Seed(seq) + j × Step</c>: every word differs from its neighbours and from the same word of other
/// frames, so a stale, shifted or torn frame is caught. Filling and checking run at memory speed (one add and one
/// store, or one add, xor and or, per 32 bytes).
/// </summary>
internal static class FramePattern
{
    private const ulong Step = 0x9E3779B97F4A7C15; // odd, so j × Step never repeats within 2^64 words

    /// <summary>SplitMix64 of the sequence number: unrelated seeds for consecutive frames.</summary>
    internal static ulong Seed(long seq)
    {
        ulong z = unchecked((ulong)seq + 0x9E3779B97F4A7C15);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }

    /// <summary>Writes frame <paramref name="seq"/>'s pattern over all of <paramref name="frame"/>.</summary>
    internal static void Fill(Span<byte> frame, long seq)
    {
        ulong seed = Seed(seq);
        Span<Vector256<ulong>> vectors = MemoryMarshal.Cast<byte, Vector256<ulong>>(frame);
        Vector256<ulong> cur = unchecked(Vector256.Create(seed, seed + Step, seed + (2 * Step), seed + (3 * Step)));
        Vector256<ulong> step = Vector256.Create(unchecked(4 * Step));
        for (int i = 0; i < vectors.Length; i++)
        {
            vectors[i] = cur;
            cur += step;
        }

        int done = vectors.Length * Vector256<byte>.Count;
        for (int o = done; o < frame.Length; o++)
        {
            frame[o] = ExpectedByte(seed, o);
        }
    }

    /// <summary>Checks every byte of <paramref name="frame"/> against frame <paramref name="seq"/>'s pattern. Returns
    /// -1 when all match, else the offset of the first byte that does not.</summary>
    internal static long FindMismatch(ReadOnlySpan<byte> frame, long seq)
    {
        ulong seed = Seed(seq);
        ReadOnlySpan<Vector256<ulong>> vectors = MemoryMarshal.Cast<byte, Vector256<ulong>>(frame);
        Vector256<ulong> step = Vector256.Create(unchecked(4 * Step));
        Vector256<ulong> step4 = Vector256.Create(unchecked(16 * Step));
        Vector256<ulong> c0 = unchecked(Vector256.Create(seed, seed + Step, seed + (2 * Step), seed + (3 * Step)));
        Vector256<ulong> c1 = c0 + step, c2 = c1 + step, c3 = c2 + step;
        int i = 0;
        // Four independent xor/or chains per iteration; a block with any difference is rescanned byte by byte.
        for (; i + 4 <= vectors.Length; i += 4)
        {
            Vector256<ulong> diff = (vectors[i] ^ c0) | (vectors[i + 1] ^ c1) | (vectors[i + 2] ^ c2) | (vectors[i + 3] ^ c3);
            if (diff != Vector256<ulong>.Zero)
            {
                return FirstBadByte(frame, seed, (long)i * 32, 128);
            }

            c0 += step4;
            c1 += step4;
            c2 += step4;
            c3 += step4;
        }

        long tail = (long)i * 32;
        return FirstBadByte(frame, seed, tail, frame.Length - tail);
    }

    private static long FirstBadByte(ReadOnlySpan<byte> frame, ulong seed, long from, long count)
    {
        for (long o = from; o < from + count; o++)
        {
            if (frame[(int)o] != ExpectedByte(seed, o))
            {
                return o;
            }
        }

        return -1;
    }

    private static byte ExpectedByte(ulong seed, long offset)
    {
        ulong word = unchecked(seed + ((ulong)(offset / 8) * Step));
        Span<byte> le = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(le, word);
        return le[(int)(offset % 8)];
    }
}
