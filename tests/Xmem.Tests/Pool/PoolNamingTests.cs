namespace Xmem.Tests.Pool;

/// <summary>Pool names, capacity, mode, existence: what Create, Open, Exists and Remove accept and refuse.</summary>
public sealed class PoolNamingTests : PoolTest
{
    public static TheoryData<string> InvalidNames => new()
    {
        "",
        "/",
        ".",
        "..",
        "/..",
        "a/b",
        "/a/b",
        "//a",
        "a\0b",
        "\0",
        "a b",
        "cam*",
        "caméra",
        "tab\t",
        new string('a', 201),
        "/" + new string('a', 201),
    };

    [Theory]
    [MemberData(nameof(InvalidNames))]
    public void Create_InvalidName_ThrowsArgumentException(string name)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => BufferPool.Create(name, 1));
        Assert.IsNotType<ArgumentNullException>(e);
    }

    [Theory]
    [MemberData(nameof(InvalidNames))]
    public void Open_InvalidName_ThrowsArgumentException(string name) =>
        Assert.ThrowsAny<ArgumentException>(() => BufferPool.Open(name));

    [Theory]
    [MemberData(nameof(InvalidNames))]
    public void Remove_InvalidName_ThrowsArgumentException(string name) =>
        Assert.ThrowsAny<ArgumentException>(() => BufferPool.Remove(name));

    [Fact]
    public void Create_NullName_ThrowsArgumentNullException() =>
        Assert.Throws<ArgumentNullException>(() => BufferPool.Create(null!, 1));

    [Theory]
    [InlineData("a")]
    [InlineData("A.z_9-")]
    [InlineData("cam0.left_eye-1")]
    public void Create_ValidNameCharacters_Accepted(string suffix)
    {
        string name = NewName() + suffix;
        using BufferPool pool = BufferPool.Create(name, 1);
        using BufferGuard g = pool.AcquireCpu(1);
        Assert.Equal(name, pool.Name);
    }

    [Fact]
    public void Create_NameOf200Characters_WorksWithDataSegments()
    {
        string prefix = NewName("long");
        string name = prefix + new string('x', 200 - prefix.Length);
        Assert.Equal(200, name.Length);
        using BufferPool pool = BufferPool.Create("/" + name, 2);
        Assert.Equal("/" + name, pool.Name);
        using BufferGuard g = pool.AcquireCpu(100);
        using BufferPool other = BufferPool.Open(name);
        using BufferGuard r = other.Get(g.MetaIndex);
        Assert.NotEmpty(Shm.DataSegmentsOf(name));
    }

    [Fact]
    public void LeadingSlash_NamesTheSamePool()
    {
        string name = NewName();
        using BufferPool pool = BufferPool.Create("/" + name, 2);
        Assert.True(BufferPool.Exists(name));
        Assert.True(BufferPool.Exists("/" + name));
        using BufferPool opened = BufferPool.Open(name);
        using BufferGuard g = pool.AcquireCpu(8);
        using BufferGuard r = opened.Get(g.MetaIndex);  // the same slots: the same pool
        Assert.Equal(2, pool.RefCount(g.MetaIndex));
        Assert.Throws<PoolExistsException>(() => BufferPool.Create(name, 2));
        Assert.Throws<PoolExistsException>(() => BufferPool.Create("/" + name, 2));
    }

    [Fact]
    public void Name_IsTheNameAsGiven_WithOrWithoutTheLeadingSlash()
    {
        string name = NewName();
        using BufferPool pool = BufferPool.Create("/" + name, 2);
        Assert.Equal("/" + name, pool.Name);
        using BufferPool bare = BufferPool.Open(name);
        Assert.Equal(name, bare.Name);
        using BufferPool slashed = BufferPool.Open("/" + name);
        Assert.Equal("/" + name, slashed.Name);
        Assert.Throws<PoolExistsException>(() => BufferPool.Create(name, 2));
        Assert.Throws<PoolExistsException>(() => BufferPool.Create("/" + name, 2));
    }

    [Fact]
    public void Create_NameInUseByLivePool_ThrowsPoolExists()
    {
        string name = NewName();
        using BufferPool pool = BufferPool.Create(name, 4);
        var e = Assert.Throws<PoolExistsException>(() => BufferPool.Create(name, 4));
        Assert.Contains("already exists", e.Message);
        Assert.Equal(XmemStatus.AlreadyExists, e.Status);

        // The live pool is untouched by the refused create.
        using BufferGuard g = pool.AcquireCpu(8);
        Assert.Equal(1, pool.RefCount(g.MetaIndex));
    }

    [Fact]
    public void Create_AfterLastProcessDetached_CreatesAFreshPool()
    {
        string name = NewName();
        BufferPool.Create(name, 4).Dispose();
        Assert.False(BufferPool.Exists(name));
        using BufferPool again = BufferPool.Create(name, 2);
        Assert.Equal(2, again.Capacity);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(1_048_577)]
    [InlineData(int.MaxValue)]
    [InlineData(int.MinValue)]
    public void Create_CapacityOutOfRange_ThrowsAndLeavesNothing(int capacity)
    {
        string name = NewName();
        Assert.Throws<ArgumentOutOfRangeException>(() => BufferPool.Create(name, capacity));
        Assert.Empty(Shm.EntriesOf(name));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(1024)]
    public void Create_Capacity_IsReported(int capacity)
    {
        using BufferPool pool = NewPool(capacity);
        Assert.Equal(capacity, pool.Capacity);
        using BufferPool other = BufferPool.Open(pool.Name);
        Assert.Equal(capacity, other.Capacity);
    }

    [Fact]
    public void Create_DefaultCapacity_Is1024()
    {
        using BufferPool pool = BufferPool.Create(NewName());
        Assert.Equal(1024, pool.Capacity);
    }

    [Fact]
    public void Create_MaximumCapacity_Accepted()
    {
        using BufferPool pool = NewPool(1_048_576);
        Assert.Equal(1_048_576, pool.Capacity);
        using BufferGuard g = pool.AcquireCpu(1);
        Assert.Equal(0, g.MetaIndex);
        using BufferGuard last = pool.GetMut(0);
        Assert.Throws<SlotNotLiveException>(() => pool.Get(1_048_575));
    }

    [Fact]
    public void Create_DefaultMode_Is0600()
    {
        using BufferPool pool = NewPool();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, Shm.ModeOf(pool.Name));
        using BufferGuard g = pool.AcquireCpu(10);
        foreach (string f in Shm.EntriesOf(pool.Name))
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(Shm.Directory, f)) & (UnixFileMode)0x1FF);
        }
    }

    [Fact]
    public void Create_Mode0660_AppliesToEverySegment()
    {
        using BufferPool pool = NewPool(mode: 0x1B0 /* 0660 */);
        using BufferGuard g = pool.AcquireCpu(10);
        var expected = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;
        string[] entries = Shm.EntriesOf(pool.Name);
        Assert.True(entries.Length >= 3, $"expected control, holdings and data segments, found {string.Join(", ", entries)}");
        foreach (string f in entries)
        {
            Assert.Equal(expected, File.GetUnixFileMode(Path.Combine(Shm.Directory, f)) & (UnixFileMode)0x1FF);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(0x100)]   // 0400: no owner write
    [InlineData(0x80)]    // 0200: no owner read
    [InlineData(0x200)]   // 01000: not a permission bit
    [InlineData(-1)]
    public void Create_BadMode_ThrowsAndLeavesNothing(int mode)
    {
        string name = NewName();
        Assert.ThrowsAny<ArgumentException>(() => BufferPool.Create(name, 1, mode));
        Assert.Empty(Shm.EntriesOf(name));
    }

    [Fact]
    public void Open_Missing_ThrowsPoolNotFound_AFileNotFoundException()
    {
        string name = NewName();
        var e = Assert.Throws<PoolNotFoundException>(() => BufferPool.Open(name));
        Assert.IsAssignableFrom<FileNotFoundException>(e);
        Assert.Equal(XmemStatus.NotFound, e.Status);
        Assert.False(BufferPool.Exists(name));
    }

    [Fact]
    public void Remove_DeletesThePoolAndAllItsSegments()
    {
        string name = NewName();
        using (BufferPool pool = BufferPool.Create(name, 4))
        {
            using BufferGuard a = pool.AcquireCpu(100);
            using BufferGuard b = pool.AcquireCpu(5000);
            Assert.Equal(2, Shm.DataSegmentsOf(name).Length);
            Assert.True(BufferPool.Remove(name));
            Assert.Empty(Shm.EntriesOf(name));
            Assert.False(BufferPool.Exists(name));
            Assert.Throws<PoolNotFoundException>(() => BufferPool.Open(name));

            // The attached process keeps its mappings, as with an unlinked file.
            a.Span.Fill(7);
            Assert.Equal(7, a.ReadOnlySpan[99]);
        }

        Assert.Empty(Shm.EntriesOf(name));
        Assert.False(BufferPool.Remove(name));
    }

    [Fact]
    public void Remove_Missing_ReturnsFalse() => Assert.False(BufferPool.Remove(NewName()));

    [Fact]
    public void Remove_ThenCreate_WhileOldInstanceAttached_KeepsThemApart()
    {
        string name = NewName();
        using BufferPool old = BufferPool.Create(name, 2);
        using BufferGuard og = old.AcquireCpu(64);
        og.Span.Fill(1);
        Assert.True(BufferPool.Remove(name));
        using BufferPool fresh = BufferPool.Create(name, 2);
        using BufferGuard fg = fresh.AcquireCpu(64);
        fg.Span.Fill(2);
        Assert.Equal(1, og.ReadOnlySpan[0]);
        Assert.Equal(2, fg.ReadOnlySpan[0]);
        og.Dispose();
        old.Dispose();
        // The old instance going away must not take the new pool with it.
        Assert.True(BufferPool.Exists(name));
        Assert.Equal(1, fresh.RefCount(fg.MetaIndex));
        using BufferPool opened = BufferPool.Open(name);
        using BufferGuard r = opened.Get(fg.MetaIndex);
        Assert.Equal(2, r.ReadOnlySpan[63]);
    }

    [Fact]
    public void Persistent_PoolOutlivesItsProcessesUntilRemoved()
    {
        string name = NewName();
        int index;
        using (BufferPool pool = BufferPool.Create(name, 2, persistent: true))
        {
            Assert.True(pool.IsPersistent);
            index = pool.PreallocateCpu(32, 1)[0];
        }

        Assert.True(BufferPool.Exists(name));
        using (BufferPool again = BufferPool.Open(name))
        {
            Assert.Equal(1, again.RefCount(index));
            Assert.Throws<PoolExistsException>(() => BufferPool.Create(name, 2));
        }

        Assert.True(BufferPool.Remove(name));
        Assert.Empty(Shm.EntriesOf(name));
    }
}
