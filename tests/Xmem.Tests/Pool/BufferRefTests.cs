using System.Globalization;

namespace Xmem.Tests.Pool;

/// <summary>The allocation-free reference API: <see cref="BufferRef"/> from AcquireCpuRef, GetRef, GetMutRef and
/// ReceiveRef. The same counts as guards, copies that cannot release twice or act on a later reference, nothing
/// allocated in the steady state, and real processes on both sides of a channel and killed while holding them.</summary>
public sealed class BufferRefTests : PoolTest
{
    private static readonly ulong[] Ids = [1, 2];

    [Fact]
    public void AcquireCpuRef_IsAReadWriteReferenceWithCountOne_AndDisposeReleasesIt()
    {
        using BufferPool pool = NewPool(4);
        BufferRef b = pool.AcquireCpuRef(100);
        Assert.True(b.IsValid);
        Assert.False(b.IsReadOnly);
        Assert.False(b.IsCuda);
        Assert.Equal(100, b.Size);
        Assert.Equal(100, b.Span.Length);
        Assert.NotEqual(0, b.CpuPointer);
        int s = b.MetaIndex;
        Assert.Equal(1, pool.RefCount(s));
        b.Span.Fill(7);
        Assert.Equal(7, b.ReadOnlySpan[99]);
        b.Dispose();
        Assert.False(b.IsValid);
        Assert.Equal(0, pool.RefCount(s));
    }

    [Fact]
    public void GetRef_IsReadOnly_GetMutRef_IsWritable_EachCountsOne()
    {
        using BufferPool pool = NewPool(4);
        using BufferRef owner = pool.AcquireCpuRef(64);
        int s = owner.MetaIndex;
        owner.Span[3] = 42;
        using (BufferRef ro = pool.GetRef(s))
        using (BufferRef rw = pool.GetMutRef(s))
        {
            Assert.Equal(3, pool.RefCount(s));
            Assert.True(ro.IsReadOnly);
            Assert.Equal(42, ro.ReadOnlySpan[3]);
            Assert.Throws<BufferReadOnlyException>(() => ro.Span.Length);
            Assert.Throws<BufferReadOnlyException>(() => ro.SetDescription(new BufferDescription(null, 1)));
            rw.Span[3] = 43;
            Assert.Equal(43, ro.ReadOnlySpan[3]);
        }

        Assert.Equal(1, pool.RefCount(s));
    }

    [Fact]
    public void A_copy_disposed_twice_releases_once_and_every_copy_then_refuses_use()
    {
        using BufferPool pool = NewPool(4);
        using BufferRef keep = pool.AcquireCpuRef(64);
        int s = keep.MetaIndex;
        BufferRef a = pool.GetRef(s);
        BufferRef copy = a;
        Assert.Equal(a, copy);
        Assert.Equal(2, pool.RefCount(s));
        a.Dispose();
        copy.Dispose();
        a.Dispose();
        Assert.Equal(1, pool.RefCount(s));
        Assert.False(copy.IsValid);
        Assert.Throws<BufferGuardInvalidException>(() => copy.MetaIndex);
        Assert.Throws<BufferGuardInvalidException>(() => copy.Size);
        Assert.Throws<BufferGuardInvalidException>(() => copy.ReadOnlySpan.Length);
        Assert.Throws<BufferGuardInvalidException>(() => copy.CpuPointer);
        Assert.Throws<BufferGuardInvalidException>(() => copy.Description);
        Assert.Throws<BufferGuardInvalidException>(copy.Forget);
    }

    [Fact]
    public void A_stale_copy_never_acts_on_the_later_reference_that_reuses_its_object()
    {
        using BufferPool pool = NewPool(4);
        BufferRef first = pool.AcquireCpuRef(64);
        BufferRef stale = first;
        first.Dispose();
        // The pool's guard cache hands the same object to the next reference (as long as nothing else took it):
        // the stale copy must see a different incarnation, not the new buffer.
        using BufferRef second = pool.AcquireCpuRef(128);
        Assert.NotEqual(stale, second);
        Assert.False(stale.IsValid);
        Assert.Throws<BufferGuardInvalidException>(() => stale.Size);
        Assert.Throws<BufferGuardInvalidException>(() => stale.Span.Length);
        stale.Dispose();
        Assert.True(second.IsValid);
        Assert.Equal(128, second.Size);
        Assert.Equal(1, pool.RefCount(second.MetaIndex));
        Assert.Throws<BufferGuardInvalidException>(() => pool.Channel("c", 4).Send(stale));
    }

    [Fact]
    public void The_default_value_names_no_reference()
    {
        BufferRef none = default;
        Assert.False(none.IsValid);
        none.Dispose();
        var e = Assert.Throws<BufferGuardInvalidException>(() => none.MetaIndex);
        Assert.Contains("default value", e.Message, StringComparison.Ordinal);
        Assert.Throws<BufferGuardInvalidException>(none.Forget);
    }

    [Fact]
    public void Forget_leaves_the_count_in_flight_for_another_process()
    {
        using BufferPool pool = NewPool(4);
        BufferRef b = pool.AcquireCpuRef(64);
        int s = b.MetaIndex;
        b.Forget();
        Assert.False(b.IsValid);
        b.Dispose();
        Assert.Equal(1, pool.RefCount(s));
        Assert.Equal(0, pool.Release(s));
    }

    [Fact]
    public void Description_round_trips_through_a_reference()
    {
        using BufferPool pool = NewPool(4);
        using BufferRef b = pool.AcquireCpuRef(64);
        b.SetDescription(new BufferDescription(null, 77, 5, "image/raw", "cam0"));
        using BufferRef r = pool.GetRef(b.MetaIndex);
        BufferDescription d = r.Description!.Value;
        Assert.Equal(77UL, d.Seq);
        Assert.Equal("image/raw", d.ContentType);
        Assert.Equal("cam0", d.ProducerTag);
    }

    [Fact]
    public void TryAcquireCpuRef_on_a_full_pool_times_out_with_the_default_value()
    {
        using BufferPool pool = NewPool(1);
        using BufferRef only = pool.AcquireCpuRef(64);
        Assert.False(pool.TryAcquireCpuRef(64, TimeSpan.FromMilliseconds(20), out BufferRef none));
        Assert.Equal(default, none);
        Assert.Throws<PoolFullException>(() => pool.AcquireCpuRef(64));
    }

    [Fact]
    public void Send_and_ReceiveRef_hand_a_reference_on_and_spend_the_sent_value()
    {
        using BufferPool pool = NewPool(4);
        using BufferChannel ch = pool.Channel("refs", 4);
        BufferRef b = pool.AcquireCpuRef(64);
        int s = b.MetaIndex;
        b.Span[0] = 9;
        ch.Send(b);
        Assert.False(b.IsValid);
        Assert.Throws<BufferGuardInvalidException>(() => ch.Send(b));
        Assert.Equal(1, pool.RefCount(s));
        using (BufferRef got = ch.ReceiveRef())
        {
            Assert.Equal(s, got.MetaIndex);
            Assert.True(got.IsReadOnly);
            Assert.Equal(9, got.ReadOnlySpan[0]);
        }

        Assert.Equal(0, pool.RefCount(s));
        Assert.False(ch.TryReceiveRef(TimeSpan.Zero, out BufferRef none));
        Assert.False(none.IsValid);
    }

    [Fact]
    public void A_guard_sent_is_received_as_a_reference_and_a_reference_sent_as_a_guard()
    {
        using BufferPool pool = NewPool(4);
        using BufferChannel ch = pool.Channel("mixed", 4);
        BufferGuard g = pool.AcquireCpu(64);
        ch.Send(g);
        using (BufferRef r = ch.ReceiveRef(writable: true))
        {
            Assert.False(r.IsReadOnly);
            r.Span[0] = 1;
        }

        ch.Send(pool.AcquireCpuRef(64));
        using BufferGuard back = ch.Receive();
        Assert.Equal(1, pool.RefCount(back.MetaIndex));
    }

    [Fact]
    public void Closing_the_pool_releases_what_references_still_held_and_their_Dispose_then_does_nothing()
    {
        BufferPool pool = NewPool(4);
        BufferRef b = pool.AcquireCpuRef(64);
        BufferRef c = pool.GetRef(b.MetaIndex);
        pool.Dispose();
        b.Dispose();
        c.Dispose();
        Assert.False(b.IsValid);
    }

    [Fact]
    public void Steady_state_acquire_get_send_and_receive_allocate_nothing()
    {
        using BufferPool pool = NewPool(8);
        using BufferChannel ch = pool.Channel("alloc", 4);
        void Round()
        {
            BufferRef a = pool.AcquireCpuRef(4096);
            a.Span[0] = 1;
            using (BufferRef g = pool.GetRef(a.MetaIndex))
            {
                _ = g.ReadOnlySpan[0];
            }

            ch.Send(a);
            using BufferRef r = ch.ReceiveRef();
            _ = r.ReadOnlySpan[0];
        }

        for (int i = 0; i < 1000; i++)
        {
            Round(); // warm: the cache, the mappings, tiered compilation
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++)
        {
            Round();
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"10,000 rounds of acquire + get + send + receive allocated {allocated} bytes");
        for (int i = 0; i < pool.Capacity; i++)
        {
            Assert.Equal(0, pool.RefCount(i));
        }
    }

    [Fact]
    public void A_fan_out_send_to_three_subscribers_allocates_nothing_and_gives_each_its_reference()
    {
        using BufferPool pool = NewPool(8);
        using BufferChannel ch = pool.Channel("fan", 4, ChannelMode.FanOut);
        using ChannelSubscription a = ch.Subscribe(), b = ch.Subscribe(), c = ch.Subscribe();
        void Round(byte mark)
        {
            BufferRef frame = pool.AcquireCpuRef(4096);
            frame.Span[0] = mark;
            ch.Send(frame);
            using BufferRef ra = a.ReceiveRef(), rb = b.ReceiveRef(), rc = c.ReceiveRef();
            if (ra.ReadOnlySpan[0] != mark || rb.ReadOnlySpan[0] != mark || rc.ReadOnlySpan[0] != mark || pool.RefCount(ra.MetaIndex) != 3)
            {
                throw new InvalidOperationException($"round {mark}: a subscriber got another buffer, or the count is not 3");
            }
        }

        for (int i = 0; i < 500; i++)
        {
            Round((byte)i);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5000; i++)
        {
            Round((byte)i);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"5,000 fan-out rounds allocated {allocated} bytes");
        for (int i = 0; i < pool.Capacity; i++)
        {
            Assert.Equal(0, pool.RefCount(i));
        }
    }

    [Fact]
    public void Racing_copies_across_threads_release_each_reference_exactly_once()
    {
        using BufferPool pool = NewPool(16);
        const int Threads = 4, Rounds = 5000;
        var barrier = new Barrier(Threads);
        var shared = new BufferRef[Threads];
        var gate = new Lock(); // a BufferRef is two words: copies between threads go through a lock, as any struct
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            barrier.SignalAndWait();
            for (int i = 0; i < Rounds; i++)
            {
                BufferRef b = pool.AcquireCpuRef(64);
                BufferRef other;
                lock (gate)
                {
                    shared[t] = b;
                    other = shared[(t + 1) % Threads];
                }

                // Dispose our own and, racing with its owner, a neighbour's (possibly stale) copy: every reference
                // must still be released once, and no copy may release a later reference of the same object.
                other.Dispose();
                b.Dispose();
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        for (int i = 0; i < pool.Capacity; i++)
        {
            Assert.Equal(0, pool.RefCount(i));
        }
    }

    [Fact]
    public void Producers_and_consumers_in_other_processes_mix_references_and_guards_exactly_once()
    {
        const int PerProducer = 500;
        using BufferPool pool = NewPool(capacity: 32);
        using BufferChannel ch = pool.Channel("work", depth: 8);
        var consumers = new[] { TestChild.Start("ref-consume", pool.Name, "work", "8"), TestChild.Start("channel-consume", pool.Name, "work", "8") };
        var producers = new[]
        {
            TestChild.Start("ref-produce", pool.Name, "work", "8", "1", PerProducer.ToString(CultureInfo.InvariantCulture)),
            TestChild.Start("channel-produce", pool.Name, "work", "8", "2", PerProducer.ToString(CultureInfo.InvariantCulture)),
        };
        try
        {
            foreach (TestChild c in consumers.Concat(producers))
            {
                _ = c.Expect("ready");
            }

            foreach (TestChild p in producers)
            {
                Assert.Equal(PerProducer.ToString(CultureInfo.InvariantCulture), p.Expect("sent"));
            }

            for (int i = 0; i < consumers.Length; i++)
            {
                BufferRef stop = pool.AcquireCpuRef(8);
                stop.SetDescription(new BufferDescription(null, 0, 0, "stop"));
                ch.Send(stop);
            }

            var all = new List<ulong>();
            foreach (TestChild c in consumers)
            {
                string[] parts = c.Expect("got").Split(' ');
                if (int.Parse(parts[0], CultureInfo.InvariantCulture) > 0)
                {
                    all.AddRange(parts[1].Split(',').Select(x => ulong.Parse(x, NumberStyles.HexNumber, CultureInfo.InvariantCulture)));
                }
            }

            var expected = Ids.SelectMany(id => Enumerable.Range(0, PerProducer).Select(i => (id << 32) | (uint)i)).Order();
            Assert.Equal(expected, all.Order());
            foreach (TestChild c in consumers.Concat(producers))
            {
                c.Send("exit");
                Assert.Equal(0, c.WaitForExit());
            }

            for (int i = 0; i < pool.Capacity; i++)
            {
                Assert.Equal(0, pool.RefCount(i));
            }
        }
        finally
        {
            foreach (TestChild c in consumers.Concat(producers))
            {
                c.Dispose();
            }
        }
    }

    [Fact]
    public void References_of_a_killed_process_are_given_back_by_recovery()
    {
        using BufferPool pool = NewPool(capacity: 8);
        using var child = TestChild.Start("ref-hold", pool.Name, "3");
        _ = child.Expect("ready");
        int[] held = child.Expect("held").Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(3, held.Length);
        Assert.All(held, s => Assert.Equal(2, pool.RefCount(s)));
        child.KillHard();
        Assert.Equal(1, pool.RecoverDeadProcesses());
        Assert.All(held, s => Assert.Equal(0, pool.RefCount(s)));
    }
}
