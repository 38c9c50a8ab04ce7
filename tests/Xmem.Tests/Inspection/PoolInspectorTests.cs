using System.Text.RegularExpressions;
using Xmem.Inspection;

namespace Xmem.Tests.Inspection;

/// <summary>What <c>xmem ls</c>, <c>stat</c> and <c>gc</c> read from the directory, and what Inspection may depend on.</summary>
public sealed partial class PoolInspectorTests : PoolTest
{
    [Fact]
    public void A_live_channel_whose_name_contains_an_instance_like_part_is_not_an_orphan()
    {
        // Channel names may contain ".<16 hex>.", so the channel's segment name also reads as an object of a pool
        // "<pool>.<instance>.cx" that does not exist: xmem gc must not take the channel for an orphan and delete it.
        using BufferPool pool = NewPool(capacity: 4);
        using BufferChannel channel = pool.Channel("x.0123456789abcdef.y", depth: 2);
        string ours = Xmem.SharedMemory.SegmentNames.PoolPrefix(pool.Name);
        Assert.Contains(Shm.EntriesOf(pool.Name), f => f.EndsWith(".cx.0123456789abcdef.y", StringComparison.Ordinal));

        IReadOnlyList<OrphanSegment> orphans = PoolInspector.FindOrphanSegments();

        Assert.DoesNotContain(orphans, o => o.Name.StartsWith(ours, StringComparison.Ordinal));
        Assert.Contains(PoolInspector.ListPools(), p => p.Name == pool.Name);
    }

    [Fact]
    public void Orphans_of_a_removed_pool_instance_are_reported_with_their_pool()
    {
        using BufferPool pool = NewPool(capacity: 4);
        string stale = Xmem.SharedMemory.SegmentNames.Holdings(pool.Name, 0x0000_0000_0000_0011, 3);
        File.WriteAllBytes(Path.Combine(Shm.Directory, stale), new byte[4096]);

        OrphanSegment orphan = Assert.Single(PoolInspector.FindOrphanSegments(), o => o.Name == stale);

        Assert.Equal(pool.Name, orphan.PoolName);
        Assert.Equal(4096, orphan.Bytes);
        File.Delete(orphan.Path);
    }

    [Fact]
    public void Inspection_depends_on_Layout_and_SharedMemory_only()
    {
        string dir = Path.Combine(BuildPaths.RepoRoot, "src", "Xmem", "Inspection");
        foreach (string file in Directory.EnumerateFiles(dir, "*.cs"))
        {
            string text = File.ReadAllText(file);
            Match m = PoolLayerName().Match(text);
            Assert.False(m.Success, $"{Path.GetFileName(file)} mentions '{m.Value}': Inspection reads segments through Layout and SharedMemory, never through the pool");
        }
    }

    [GeneratedRegex(@"\b(BufferPool|BufferGuard|BufferChannel|Xmem\.Pool|Xmem\.Channels|Xmem\.Cuda|Xmem\.Description|ChannelSegment|MappingCache|ForkGate|StalePoolSweep)\b")]
    private static partial Regex PoolLayerName();
}
