using Xmem.Layout;

namespace Xmem.Tests.Channels;

/// <summary>Buffer descriptions: validated when set, validated again when read, round-trip across processes.</summary>
public sealed class DescriptionTests : PoolTest
{
    [Fact]
    public void Acquire_with_a_tensor_spec_sizes_and_describes_the_buffer()
    {
        using BufferPool pool = NewPool();
        using BufferGuard g = pool.AcquireCpu(new TensorSpec(ElementType.Float32, 2, 3, 4));
        Assert.Equal(96, g.Size);
        BufferDescription d = Assert.NotNull(g.Description);
        TensorSpec t = Assert.NotNull(d.Tensor);
        Assert.Equal(ElementType.Float32, t.ElementType);
        Assert.Equal([2L, 3, 4], t.Shape.ToArray());
        Assert.Equal([48L, 16, 4], t.Strides.ToArray());
        Assert.True(t.IsContiguous);
        Assert.True(d.TimestampNs > 0);
    }

    [Fact]
    public void A_fresh_buffer_has_no_description()
    {
        using BufferPool pool = NewPool();
        using BufferGuard g = pool.AcquireCpu(64);
        Assert.Null(g.Description);
    }

    [Fact]
    public void Every_field_round_trips_through_another_guard()
    {
        using BufferPool pool = NewPool();
        using BufferGuard g = pool.AcquireCpu(4096);
        var spec = TensorSpec.WithStrides(ElementType.UInt16, [4, 8], [256, 2]);
        g.SetDescription(spec, seq: ulong.MaxValue - 1, timestampNs: 77, contentType: "image/ü-16", producerTag: new string('x', 31));
        using BufferGuard other = pool.Get(g.MetaIndex);
        BufferDescription d = Assert.NotNull(other.Description);
        Assert.Equal(spec, d.Tensor);
        Assert.Equal(ulong.MaxValue - 1, d.Seq);
        Assert.Equal(77, d.TimestampNs);
        Assert.Equal("image/ü-16", d.ContentType);
        Assert.Equal(new string('x', 31), d.ProducerTag);
        Assert.False(d.Tensor!.Value.IsContiguous);
    }

    [Fact]
    public void A_description_without_a_tensor_keeps_its_tags()
    {
        using BufferPool pool = NewPool();
        using BufferGuard g = pool.AcquireCpu(10);
        g.SetDescription(null, 5, contentType: "text/plain");
        BufferDescription d = Assert.NotNull(g.Description);
        Assert.Null(d.Tensor);
        Assert.Equal(5UL, d.Seq);
        Assert.Equal("text/plain", d.ContentType);
        Assert.Equal("", d.ProducerTag);
    }

    [Fact]
    public void Descriptions_that_do_not_fit_are_refused_and_change_nothing()
    {
        using BufferPool pool = NewPool();
        using BufferGuard g = pool.AcquireCpu(96);
        g.SetDescription(new TensorSpec(ElementType.Float32, 24), seq: 1);
        Assert.Throws<ArgumentException>(() => g.SetDescription(new TensorSpec(ElementType.Float32, 25)));
        Assert.Throws<ArgumentException>(() => g.SetDescription(TensorSpec.WithStrides(ElementType.Int32, [2, 3], [96, 4])));
        Assert.Throws<ArgumentException>(() => g.SetDescription(null, contentType: new string('a', 32)));
        Assert.Throws<ArgumentException>(() => g.SetDescription(null, producerTag: "a\0b"));
        Assert.Throws<ArgumentException>(() => g.SetDescription(new TensorSpec(ElementType.Int64, long.MaxValue / 4, 8)));
        Assert.Equal(1UL, g.Description!.Value.Seq);
    }

    [Fact]
    public void Invalid_specs_cannot_be_made()
    {
        Assert.Throws<ArgumentException>(() => new TensorSpec(ElementType.Float32, -1));
        Assert.Throws<ArgumentException>(() => new TensorSpec(ElementType.None, 3));
        Assert.Throws<ArgumentException>(() => new TensorSpec((ElementType)99, 3));
        Assert.Throws<ArgumentException>(() => new TensorSpec(ElementType.UInt8, 1, 1, 1, 1, 1, 1, 1, 1, 1));
        Assert.Throws<ArgumentException>(() => TensorSpec.WithStrides(ElementType.Float32, [3], [-4]));
        Assert.Throws<ArgumentException>(() => TensorSpec.WithStrides(ElementType.Float32, [3], [6]));
        Assert.Throws<ArgumentException>(() => TensorSpec.WithStrides(ElementType.Float32, [3, 2], [8]));
        Assert.Throws<ArgumentException>(() => new TensorSpec(ElementType.Float64, long.MaxValue, 2));
    }

    [Fact]
    public void A_read_only_guard_cannot_describe()
    {
        using BufferPool pool = NewPool();
        using BufferGuard g = pool.AcquireCpu(8);
        using BufferGuard ro = pool.Get(g.MetaIndex);
        Assert.Throws<BufferReadOnlyException>(() => ro.SetDescription(null, 1));
    }

    [Fact]
    public void Empty_and_scalar_tensors_are_valid()
    {
        using BufferPool pool = NewPool();
        using BufferGuard g = pool.AcquireCpu(new TensorSpec(ElementType.Bool, 0, 5));
        Assert.Equal(1, g.Size);
        Assert.Equal(0, g.Tensor!.Value.RequiredBytes);
        using BufferGuard h = pool.AcquireCpu(2);
        h.SetDescription(new TensorSpec(ElementType.BFloat16));
        Assert.Equal(0, h.Tensor!.Value.Rank);
        Assert.Equal(2, h.Tensor!.Value.RequiredBytes);
    }

    [Fact]
    public unsafe void A_corrupt_description_reads_as_none_never_out_of_bounds()
    {
        using BufferPool pool = NewPool(capacity: 4);
        using BufferGuard g = pool.AcquireCpu(16);
        g.SetDescription(new TensorSpec(ElementType.UInt8, 16), 3, contentType: "ok");
        long slot = LayoutConstants.SlotTableOffset(4) + (g.MetaIndex * LayoutConstants.SlotSize);

        WriteControl(pool.Name, slot + 224, BitConverter.GetBytes(1L << 40)); // Shape[0] far beyond the buffer
        Assert.Null(g.Description);
        WriteControl(pool.Name, slot + 224, BitConverter.GetBytes(16L));
        Assert.NotNull(g.Description);

        WriteControl(pool.Name, slot + 197, [9]); // NDim 9
        Assert.Null(g.Description);
        WriteControl(pool.Name, slot + 197, [1]);

        WriteControl(pool.Name, slot + 196, [200]); // unknown element type
        Assert.Null(g.Description);
        WriteControl(pool.Name, slot + 196, [(byte)ElementType.UInt8]);

        WriteControl(pool.Name, slot + 352, [.. Enumerable.Repeat((byte)'a', 32)]); // content type not terminated
        Assert.Null(g.Description);
        WriteControl(pool.Name, slot + 352, [.. "ok"u8, .. new byte[30]]);
        Assert.Equal("ok", g.Description!.Value.ContentType);

        // A writer that died mid-write leaves the version odd: readers give up, never hang.
        WriteControl(pool.Name, slot + 192, BitConverter.GetBytes(7u));
        Assert.Null(g.Description);
        g.SetDescription(null, 9); // the next writer (holding the slot lock) takes over
        Assert.Equal(9UL, g.Description!.Value.Seq);
    }

    [Fact]
    public void A_description_crosses_processes_with_the_buffer()
    {
        using BufferPool pool = NewPool(capacity: 8);
        using BufferChannel ch = pool.Channel("desc");
        using var child = TestChild.Start("channel-describe", pool.Name, "desc");
        int index = int.Parse(child.Expect("sent"), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(ch.TryReceive(TestChild.Watchdog, out BufferGuard? g));
        using (g)
        {
            Assert.Equal(index, g.MetaIndex);
            BufferDescription d = Assert.NotNull(g.Description);
            Assert.Equal(new TensorSpec(ElementType.Float32, 2, 3, 4), d.Tensor);
            Assert.Equal(42UL, d.Seq);
            Assert.Equal(123456789, d.TimestampNs);
            Assert.Equal("image/rgb8", d.ContentType);
            Assert.Equal("cam0", d.ProducerTag);
            Assert.Equal(2.5f, g.AsReadOnlySpan<float>()[23]);
        }

        child.Send("exit");
        Assert.Equal(0, child.WaitForExit());
    }

    private static void WriteControl(string pool, long offset, byte[] bytes)
    {
        using var fs = new FileStream(Shm.ControlPath(pool), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        fs.Position = offset;
        fs.Write(bytes);
    }
}
