using Xmem.SharedMemory;

namespace Xmem.Tests.SharedMemory;

/// <summary>The one grammar of segment names (docs/layout.md, "Object names"): every name SegmentNames builds parses
/// back to what it was built from, and nothing else parses as a kind it is not.</summary>
public sealed class SegmentNamesTests
{
    private const ulong Instance = 0x0123_4567_89ab_cdef;

    [Fact]
    public void Every_kind_of_name_is_built_as_docs_layout_md_spells_it()
    {
        Assert.Equal("xmem.v1.cam0", SegmentNames.Control("cam0"));
        Assert.Equal("xmem.v1.cam0.0123456789abcdef.s7.g3", SegmentNames.Data("cam0", Instance, 7, 3));
        Assert.Equal("xmem.v1.cam0.0123456789abcdef.p255", SegmentNames.Holdings("cam0", Instance, 255));
        Assert.Equal("xmem.v1.cam0.0123456789abcdef.cframes", SegmentNames.Channel("cam0", Instance, "frames"));
        Assert.Equal("xmem.v1.cam0.0123456789abcdef.nframes.00000000000000ff", SegmentNames.ChannelDraft("cam0", Instance, "frames", 0xff));
        Assert.Equal("xmem.v1.cam0.0123456789abcdef.", SegmentNames.InstancePrefix("cam0", Instance));
        Assert.Equal("xmem.v1.cam0.", SegmentNames.PoolPrefix("cam0"));
        Assert.Equal("xmem.v1.cam0.0000000000000001.p0", SegmentNames.Holdings("cam0", 1, 0));
    }

    public static TheoryData<string, string, int, uint, int, string?> BuiltNames() => new()
    {
        { SegmentNames.Control("cam0"), nameof(SegmentKind.Control), -1, 0u, -1, null },
        { SegmentNames.Data("cam0", Instance, 0, 0), nameof(SegmentKind.Data), 0, 0u, -1, null },
        { SegmentNames.Data("cam0", Instance, 1_048_575, uint.MaxValue), nameof(SegmentKind.Data), 1_048_575, uint.MaxValue, -1, null },
        { SegmentNames.Holdings("cam0", Instance, 0), nameof(SegmentKind.Holdings), -1, 0u, 0, null },
        { SegmentNames.Holdings("cam0", Instance, 255), nameof(SegmentKind.Holdings), -1, 0u, 255, null },
        { SegmentNames.Channel("cam0", Instance, "frames"), nameof(SegmentKind.Channel), -1, 0u, -1, "frames" },
        { SegmentNames.Channel("cam0", Instance, "a.s1.g2"), nameof(SegmentKind.Channel), -1, 0u, -1, "a.s1.g2" },
        { SegmentNames.ChannelDraft("cam0", Instance, "frames", 0xdead_beef_0000_0001), nameof(SegmentKind.ChannelDraft), -1, 0u, -1, "frames" },
        { SegmentNames.ChannelDraft("cam0", Instance, "x.0123456789abcdef", 7), nameof(SegmentKind.ChannelDraft), -1, 0u, -1, "x.0123456789abcdef" },
    };

    [Theory]
    [MemberData(nameof(BuiltNames))]
    public void A_built_name_parses_back_as_an_object_of_its_pool(string file, string kindName, int slot, uint memGen, int entry, string? channel)
    {
        SegmentKind kind = Enum.Parse<SegmentKind>(kindName);
        Assert.True(SegmentNames.TryParse(file, "cam0", out SegmentName n));
        Assert.Equal(new SegmentName(kind, "cam0", kind == SegmentKind.Control ? 0 : Instance, slot, memGen, entry, channel), n);
    }

    [Theory]
    [InlineData("xmem.v1.cam0.0123456789abcdef.s01.g1")] // leading zero: no name xmem builds
    [InlineData("xmem.v1.cam0.0123456789abcdef.s1")]
    [InlineData("xmem.v1.cam0.0123456789abcdef.s-1.g1")]
    [InlineData("xmem.v1.cam0.0123456789abcdef.s1.g4294967296")] // beyond a u32 generation
    [InlineData("xmem.v1.cam0.0123456789abcdef.s99999999999.g1")]
    [InlineData("xmem.v1.cam0.0123456789abcdef.p")]
    [InlineData("xmem.v1.cam0.0123456789abcdef.p007")]
    [InlineData("xmem.v1.cam0.0123456789abcdef.c.hidden")] // channel names do not start with '.'
    [InlineData("xmem.v1.cam0.0123456789abcdef.nframes.0123")] // draft without its 16 hex digits
    [InlineData("xmem.v1.cam0.0123456789abcdef.nframes.0123456789ABCDEF")]
    [InlineData("xmem.v1.cam0.0123456789abcdef.desc")]
    [InlineData("xmem.v1.cam0.0123456789abcdef.s1.g+1")]
    [InlineData("xmem.v1.cam0.0123456789abcdef.p 0")] // removal unlinks xmem.v1.<name>.<instance>.*, whatever follows
    [InlineData("xmem.v1.cam0.0123456789abcdef..p0")]
    [InlineData("xmem.v1.cam0.0123456789abcdef.x")]
    public void A_name_not_in_the_exact_built_form_is_only_an_object_of_the_instance(string file)
    {
        Assert.True(SegmentNames.TryParse(file, "cam0", out SegmentName n));
        Assert.Equal(new SegmentName(SegmentKind.OtherOfInstance, "cam0", Instance), n);
    }

    [Theory]
    [InlineData("xmem.v1.cam0.0123456789ABCDEF.p0")] // upper-case hex is not an instance
    [InlineData("xmem.v1.cam0.0123456789abcde.p0")] // 15 digits
    [InlineData("xmem.v1.cam0.0123456789abcdef.")] // nothing after the instance
    [InlineData("xmem.v1.cam0.0123456789abcdef.p0/x")] // not a file name
    [InlineData("xmem.v1.cam01")] // another pool whose name starts with this one's
    [InlineData("xmem.v1.cam0-x.0123456789abcdef.p0")]
    [InlineData("xmem.v2.cam0")]
    [InlineData("cam0")]
    [InlineData("")]
    public void A_name_of_no_object_of_the_pool_does_not_parse(string file)
    {
        Assert.False(SegmentNames.TryParse(file, "cam0", out _));
    }

    [Fact]
    public void A_name_whose_pool_part_looks_like_an_instance_has_every_reading_longest_pool_first()
    {
        // Pool "a.0123456789abcdef.p0" is a valid pool name, and so is its holdings' name read as pool "a"'s.
        string file = SegmentNames.Holdings("a.0123456789abcdef.p0", 0xfedc_ba98_7654_3210, 3);
        List<SegmentName> readings = SegmentNames.Readings(file);
        Assert.Equal(
        [
            new SegmentName(SegmentKind.Holdings, "a.0123456789abcdef.p0", 0xfedc_ba98_7654_3210, Entry: 3),
            new SegmentName(SegmentKind.OtherOfInstance, "a", Instance),
            new SegmentName(SegmentKind.Control, "a.0123456789abcdef.p0.fedcba9876543210.p3", 0),
        ], readings);
    }

    [Fact]
    public void Resolve_prefers_the_reading_whose_pool_is_in_the_directory()
    {
        // Channel "x.0123456789abcdef.y" of pool "a": read greedily it is object "y" of pool "a.<instance>.cx".
        string file = SegmentNames.Channel("a", Instance, "x.0123456789abcdef.y");
        var listing = new HashSet<string>(StringComparer.Ordinal) { SegmentNames.Control("a"), file };

        SegmentName? n = SegmentNames.Resolve(file, listing, out bool mayBeControl);

        Assert.Equal(new SegmentName(SegmentKind.Channel, "a", Instance, Channel: "x.0123456789abcdef.y"), n);
        Assert.False(mayBeControl); // pool "a" is there: its object, not a pool of its own
        Assert.Equal(["a"], SegmentNames.Pools(listing, isControlSegment: _ => false, objects: null));
    }

    [Fact]
    public void Pools_asks_the_file_only_when_a_name_may_be_a_pool_or_an_object()
    {
        string holdings = SegmentNames.Holdings("a", Instance, 0);
        string plain = SegmentNames.Control("b");
        string data = SegmentNames.Data("b", 5, 0, 1);
        var listing = new HashSet<string>(StringComparer.Ordinal) { holdings, plain, data, "xmem.v1..hidden", "xmem.v1.c/d" };
        var asked = new List<string>();
        var objects = new List<(string File, SegmentName Name)>();

        List<string> pools = SegmentNames.Pools(listing, f => { asked.Add(f); return true; }, objects);

        Assert.Equal([holdings[SegmentNames.Prefix.Length..], "b"], pools.Order(StringComparer.Ordinal));
        Assert.Equal([holdings], asked); // "b" is plainly a pool; "b"'s data segment plainly not
        Assert.Equal([(data, new SegmentName(SegmentKind.Data, "b", 5, 0, 1))], objects);
    }

    [Theory]
    [InlineData("cam0", true)]
    [InlineData("a.b_c-d", true)]
    [InlineData(".hidden", false)]
    [InlineData("", false)]
    [InlineData("a/b", false)]
    [InlineData("caméra", false)]
    public void Pool_names_follow_docs_layout_md(string name, bool valid)
    {
        Assert.Equal(valid, SegmentNames.IsValidPoolName(name));
        Assert.Equal(valid, IsAcceptedByNormalize(name));
    }

    [Fact]
    public void Length_limits_are_200_for_pools_and_48_for_channels()
    {
        Assert.True(SegmentNames.IsValidPoolName(new string('a', 200)));
        Assert.False(SegmentNames.IsValidPoolName(new string('a', 201)));
        Assert.True(SegmentNames.IsValidChannelName(new string('a', 48)));
        Assert.False(SegmentNames.IsValidChannelName(new string('a', 49)));
        Assert.Equal(Xmem.Layout.ChannelLayout.MaxNameLength, SegmentNames.MaxChannelNameLength);
    }

    private static bool IsAcceptedByNormalize(string name)
    {
        try
        {
            return PoolName.Normalize(name) == name;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
