using System.Globalization;
using Xmem.Layout;

namespace Xmem.Tests.Robustness;

/// <summary>
/// Damage written into a live channel's segment by a peer with write access. xmem must never re-initialise or
/// truncate a segment that other processes have mapped (a live sender or receiver would die of SIGBUS): a channel
/// segment that is not Ready is an error for the opener, and the processes already using it carry on.
/// </summary>
public sealed class HostileChannelTests : PoolTest
{
    private const long StateOffset = 12; // ChannelHeader.State (docs/layout.md, "ChannelHeader")

    private static string ChannelPath(string pool, string channel)
    {
        ulong instance = Shm.ReadControl(pool, 32, 8); // PoolHeader.InstanceId
        return Path.Combine(Shm.Directory, $"{LayoutConstants.ObjectPrefix}{pool}.{instance:x16}.c{channel}");
    }

    private static long Rounds(TestChild child) => long.Parse(child.AskOk("count"), CultureInfo.InvariantCulture);

    [Fact]
    public void Open_OfAChannelWhoseStateWasZeroed_FailsAndNeverTruncatesItUnderItsLiveUsers()
    {
        string name = NewName("chzero");
        using BufferPool pool = BufferPool.Create(name, capacity: 8);
        using (TestChild child = TestChild.Start("channel-loop", name, "frames", "1024"))
        {
            _ = child.Expect("ready");
            // Twice round the ring: the child has touched every cell (every page) of its mapping.
            Shm.WaitUntil(() => Rounds(child) > 2048, "the child's loop to go twice round its ring of 1024 cells");

            string path = ChannelPath(name, "frames");
            long sizeBefore = new FileInfo(path).Length;
            using (FileStream fs = File.Open(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            {
                fs.Position = StateOffset;
                fs.Write(new byte[4]); // State = 0 (Initializing), as a buggy or hostile peer could write it
            }

            // A new opener (another depth, so a re-initialisation would shrink the segment) is refused, not served.
            Exception? e = Record.Exception(() => pool.Channel("frames", depth: 1).Dispose());
            long sizeAfter = new FileInfo(path).Length;

            // The live user was not disturbed: it keeps going round its ring (before the fix it died of SIGBUS).
            long seen = Rounds(child);
            Shm.WaitUntil(() => Rounds(child) > seen + 2048, "the child's loop to go on after the damage");
            Assert.StartsWith("ok ", child.Ask("stop"), StringComparison.Ordinal);
            Assert.Equal(0, child.WaitForExit());

            Assert.IsType<CorruptSegmentException>(e);
            Assert.Contains("frames", e.Message, StringComparison.Ordinal);
            Assert.Equal(sizeBefore, sizeAfter);
            Assert.Throws<CorruptSegmentException>(() => pool.Channel("frames", depth: 1024));
        }
    }

    [Fact]
    public void Open_OfAChannelSegmentTooShortForItsHeader_FailsWithoutSizingIt()
    {
        string name = NewName("chshort");
        using BufferPool pool = BufferPool.Create(name, capacity: 4);
        using (pool.Channel("frames", depth: 4))
        {
        }

        string path = ChannelPath(name, "frames");
        File.WriteAllBytes(path, new byte[100]); // what an older creator that died before sizing it left

        var e = Assert.Throws<CorruptSegmentException>(() => pool.Channel("frames", depth: 4));
        Assert.Contains("frames", e.Message, StringComparison.Ordinal);
        Assert.Equal(100, new FileInfo(path).Length);
    }

    [Fact]
    public void Channel_WithTheLeftoverOfACreatorKilledBeforePublishing_IsCreatedAndTheLeftoverGoesWithThePool()
    {
        string name = NewName("chleft");
        using (BufferPool pool = BufferPool.Create(name, capacity: 4))
        {
            ulong instance = Shm.ReadControl(name, 32, 8);
            // A creator builds the segment under a private name and links it into place only once it is Ready; one
            // killed before the link leaves just that private object, which no opener ever looks at.
            string leftover = Path.Combine(Shm.Directory, $"{LayoutConstants.ObjectPrefix}{name}.{instance:x16}.nframes.{Environment.ProcessId:x}-dead");
            File.WriteAllBytes(leftover, new byte[4096]);
            File.SetUnixFileMode(leftover, UnixFileMode.UserRead | UnixFileMode.UserWrite); // the pool's mode, as its creator made it

            using BufferChannel ch = pool.Channel("frames", depth: 4);
            ch.Send(pool.AcquireCpu(10));
            Assert.True(ch.TryReceive(TimeSpan.FromSeconds(10), out BufferGuard? g));
            g.Dispose();
        }

        Assert.Empty(Shm.EntriesOf(name)); // the pool's removal took the leftover with it
    }
}
