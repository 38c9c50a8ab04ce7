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
        ArgumentException tooBig = Assert.Throws<ArgumentException>(() => g.SetDescription(new TensorSpec(ElementType.Float32, 25)));
        Assert.Contains("does not fit this buffer: the tensor reaches 100 bytes but the buffer has 96", tooBig.Message);
        Assert.Throws<ArgumentException>(() => g.SetDescription(TensorSpec.WithStrides(ElementType.Int32, [2, 3], [96, 4])));
        Assert.Throws<ArgumentException>(() => g.SetDescription(default(TensorSpec)));
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
    public void A_reused_slot_describes_only_its_new_buffer()
    {
        // The acquirer leaves the last buffer's fields in place (DescVersion 0 alone says "none") and a writer stores
        // only what differs: nothing of the old description may show through, in any field.
        using BufferPool pool = NewPool(capacity: 1);
        using (BufferGuard first = pool.AcquireCpu(4096))
        {
            first.SetDescription(TensorSpec.WithStrides(ElementType.UInt16, [4, 8, 2], [512, 4, 2]), 5, 50, "image/rgb8", "cam0");
            Assert.Equal("cam0", first.Description!.Value.ProducerTag);
        }

        using BufferGuard g = pool.AcquireCpu(4096);
        Assert.Equal(0, g.MetaIndex);
        Assert.Null(g.Description);
        g.SetDescription(new TensorSpec(ElementType.Float32, 16), 6, 60);
        BufferDescription d = Assert.NotNull(g.Description);
        Assert.Equal(new TensorSpec(ElementType.Float32, 16), d.Tensor);
        Assert.Equal([16L], d.Tensor!.Value.Shape.ToArray());
        Assert.Equal([4L], d.Tensor!.Value.Strides.ToArray());
        Assert.Equal((6UL, 60L, "", ""), (d.Seq, d.TimestampNs, d.ContentType, d.ProducerTag));

        // And back: the reader's per-slot cache of the last decoded spec and tags follows every change.
        g.SetDescription(TensorSpec.WithStrides(ElementType.UInt16, [4, 8, 2], [512, 4, 2]), 7, 70, "image/rgb8", "cam1");
        d = Assert.NotNull(g.Description);
        Assert.Equal(TensorSpec.WithStrides(ElementType.UInt16, [4, 8, 2], [512, 4, 2]), d.Tensor);
        Assert.Equal(("image/rgb8", "cam1"), (d.ContentType, d.ProducerTag));
        g.SetDescription(null, 8, 80, "image/rgb8");
        d = Assert.NotNull(g.Description);
        Assert.Null(d.Tensor);
        Assert.Equal(("image/rgb8", ""), (d.ContentType, d.ProducerTag));
    }

    [Fact]
    public void A_decoded_spec_that_no_longer_fits_the_buffer_reads_as_none()
    {
        // The reader reuses its last decoded spec when the stored bytes match it, and still checks it against the
        // size of the buffer it reads now.
        using BufferPool pool = NewPool(capacity: 1);
        var spec = new TensorSpec(ElementType.UInt8, 64);
        using (BufferGuard big = pool.AcquireCpu(64))
        {
            big.SetDescription(spec, 1);
            Assert.Equal(spec, big.Description!.Value.Tensor);
        }

        using BufferGuard small = pool.AcquireCpu(16);
        Assert.Equal(0, small.MetaIndex);
        long slot = LayoutConstants.SlotTableOffset(1) + (small.MetaIndex * LayoutConstants.SlotSize);
        WriteControl(pool.Name, slot + 192, BitConverter.GetBytes(2u)); // a hostile "described" version over the old fields
        Assert.Null(small.Description);
    }

    [Fact]
    public void Describing_and_reading_the_same_kind_of_frame_again_allocates_nothing()
    {
        using BufferPool pool = NewPool(capacity: 2);
        BufferRef g = pool.AcquireCpuRef(1920 * 1080 * 3);
        try
        {
            var spec = new TensorSpec(ElementType.UInt8, 1080, 1920, 3);
            ulong seen = 0;
            for (int round = 0; round < 2; round++)
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 1000; i++)
                {
                    g.SetDescription(new BufferDescription(spec, (ulong)i, i, "image/rgb8", "cam0"));
                    BufferDescription d = g.Description!.Value;
                    seen += d.Seq + (ulong)d.ContentType.Length + (ulong)d.ProducerTag.Length + (ulong)d.Tensor!.Value.Rank;
                }

                long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                if (round == 1)
                {
                    Assert.Equal(0, allocated); // round 0 decoded the spec and the tags once
                }
            }

            Assert.Equal(2 * ((999 * 1000 / 2) + (1000 * (10 + 4 + 3))), (long)seen);
        }
        finally
        {
            g.Dispose();
        }
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
