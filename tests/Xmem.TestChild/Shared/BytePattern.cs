namespace Xmem.Tests.Shared;

/// <summary>A deterministic byte pattern that two processes can write and check without sharing anything but a seed.
/// Compiled into both the test child and the tests.</summary>
internal static class BytePattern
{
    public static byte At(int seed, long position) => (byte)((seed * 131) + (position * 7) + (position >> 9) + 1);

    public static void Fill(Span<byte> bytes, int seed)
    {
        for (int i = 0; i < bytes.Length; i++)
        {
            bytes[i] = At(seed, i);
        }
    }

    /// <summary>The first position that differs from the pattern, or -1.</summary>
    public static long FirstMismatch(ReadOnlySpan<byte> bytes, int seed)
    {
        for (int i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] != At(seed, i))
            {
                return i;
            }
        }

        return -1;
    }
}
