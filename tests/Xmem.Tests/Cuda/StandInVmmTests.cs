using System.Globalization;
using Xmem.Cuda;
using Xmem.Interop;
using Xmem.Layout;

namespace Xmem.Tests.Cuda;

/// <summary>
/// CUDA buffers that outlive their producer (docs/cuda.md): VMM allocations (cuMemCreate) exported as POSIX file
/// descriptors, handed to importers over the exporter's Unix socket with SCM_RIGHTS, in real processes against the
/// strict stand-in driver with VMM switched on (tests/cuda-standin/vmm.c: a contract checker, not a GPU; its exported
/// descriptors are real memfd descriptors). Each test fails when the stand-in logs a breach of the VMM rules
/// (granularity, map only into reserved VA, access before use, no use after unmap or release) or of stream order.
/// </summary>
[Collection(StandInCollection.Name)]
public sealed unsafe class StandInVmmTests : StandInSessionTest
{
    private const int Capacity = 4;
    private static readonly string AllocBytes = (4L << 20).ToString(CultureInfo.InvariantCulture);
    public StandInVmmTests()
        : base(vmm: true)
    {
    }

    /// <summary>Slot <paramref name="idx"/>'s record bytes from the control segment file.</summary>
    private static byte[] Record(string name, int idx)
    {
        long at = LayoutConstants.SlotTableOffset(Capacity) + ((long)idx * LayoutConstants.SlotSize);
        using var f = new FileStream(Shm.ControlPath(name), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        byte[] r = new byte[LayoutConstants.SlotSize];
        f.Position = at;
        f.ReadExactly(r);
        return r;
    }

    private static ushort KindOf(string name, int idx) => BitConverter.ToUInt16(Record(name, idx), 28);

    [Fact]
    public void Vmm_is_chosen_when_the_device_supports_it_and_ipc_when_it_does_not()
    {
        string name = NewName("vk");
        TestChild a = Exporter(name);
        (string g, int idx) = Acquire(a);
        Assert.Equal(LayoutConstants.KindCudaVmm, KindOf(name, idx));
        byte[] rec = Record(name, idx);
        Assert.Equal(a.Pid, BitConverter.ToInt32(rec, 64)); // CudaVmmExport.ExporterPid
        Assert.NotEqual(0UL, BitConverter.ToUInt64(rec, 72)); // ExporterToken
        Assert.All(rec[80..128], b => Assert.Equal(0, b));
        _ = a.AskOk($"dispose {g}");
        Exit(a);
        Driver.AssertNoViolations();

        using var ipc = new CudaStandIn(vmm: false);
        string name2 = NewName("vi");
        TestChild c = Exporter(name2, driver: ipc);
        TestChild d = Importer(name2, driver: ipc);
        (string g2, int idx2) = Acquire(c);
        Assert.Equal(LayoutConstants.KindCuda, KindOf(name2, idx2));
        _ = c.AskOk($"fill {g2} 3");
        _ = c.AskOk($"forget {g2}");
        string r = d.AskOk($"get {idx2}");
        Assert.Equal("", d.AskOk($"verify {r} 3"));
        _ = d.AskOk($"dispose {r}");
        Assert.Equal("0", d.AskOk($"release {idx2}"));
        Exit(d);
        Exit(c);
        ipc.AssertNoViolations();
    }

    [Fact]
    public void ADriver_without_the_vmm_entry_points_keeps_to_ipc()
    {
        using var old = new CudaStandIn(vmm: true, vmmSymbols: false); // would report VMM, but has no cuMemCreate
        string name = NewName("vo");
        TestChild a = Exporter(name, driver: old);
        TestChild b = Importer(name, driver: old);
        (string g, int idx) = Acquire(a);
        Assert.Equal(LayoutConstants.KindCuda, KindOf(name, idx));
        _ = a.AskOk($"fill {g} 6");
        _ = a.AskOk($"forget {g}");
        string r = b.AskOk($"get {idx}");
        Assert.Equal("", b.AskOk($"verify {r} 6"));
        _ = b.AskOk($"dispose {r}");
        Assert.Equal("0", b.AskOk($"release {idx}"));
        Exit(b);
        Exit(a);
        old.AssertNoViolations();
    }

    [Fact]
    public void A_channel_handoff_of_vmm_memory_delivers_every_byte_and_leaks_no_descriptor()
    {
        string name = NewName("vh");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        int[] aFds = new int[2], bFds = new int[2];
        for (int round = 0; round < 2; round++)
        {
            (string g, _) = Acquire(a);
            _ = a.AskOk($"fill {g} {31 + round}");
            _ = a.AskOk($"send q {g}");
            string got = b.AskOk("recv q");
            Assert.Equal("", b.AskOk($"verify {got} {31 + round}"));
            _ = b.AskOk($"dispose {got}"); // the last guard: unmaps and releases the importer's handle
            aFds[round] = int.Parse(a.AskOk("fds"), CultureInfo.InvariantCulture);
            bFds[round] = int.Parse(b.AskOk("fds"), CultureInfo.InvariantCulture);
        }

        // The first round opened what stays open (the driver's registry, the channel); the second adds nothing: the
        // importer closed the received descriptor after importing it, the exporter the one it made for the reply.
        Assert.Equal(aFds[0], aFds[1]);
        Assert.Equal(bFds[0], bFds[1]);
        Exit(b);
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void The_consumer_reads_every_byte_after_the_producer_is_killed_and_no_one_can_open_it_again()
    {
        string name = NewName("vp");
        TestChild producer = Exporter(name);
        TestChild consumer = Importer(name);
        TestChild late = Importer(name);
        (string g, int idx) = Acquire(producer);
        _ = producer.AskOk($"fill {g} 41");
        _ = producer.AskOk($"forget {g}"); // the reference is in flight
        string r = consumer.AskOk($"get {idx}");
        Assert.Equal("", consumer.AskOk($"verify {r} 41"));

        producer.KillHard(); // SIGKILL while the consumer holds the buffer

        Assert.Equal("", consumer.AskOk($"verify {r} 41")); // every byte, through the consumer's own handle
        string r2 = consumer.AskOk($"get {idx}"); // the cached mapping: the dead exporter's event is not waited on
        Assert.Equal("", consumer.AskOk($"verify {r2} 41"));
        string denied = late.Ask($"get {idx}");
        Assert.StartsWith("error Xmem.CudaException", denied, StringComparison.Ordinal);
        Assert.Contains("which has exited", denied, StringComparison.Ordinal);
        Assert.Contains("copy", denied, StringComparison.OrdinalIgnoreCase);
        _ = late.AskOk("recover"); // the producer's entry; it held no attributed reference to the slot
        Assert.Equal("3", late.AskOk($"refcount {idx}")); // in flight + the consumer's two: the failed get gave its own back
        _ = consumer.AskOk($"dispose {r}");
        Assert.Equal("", consumer.AskOk($"verify {r2} 41"));
        _ = consumer.AskOk($"dispose {r2}"); // unmaps and releases the consumer's handle
        Assert.Equal("0", consumer.AskOk($"release {idx}"));
        (string again, int idx2) = Acquire(consumer); // the slot is taken over: the dead exporter's memory is gone
        _ = consumer.AskOk($"fill {again} 42");
        _ = consumer.AskOk($"forget {again}");
        string lr = late.AskOk($"get {idx2}");
        Assert.Equal("", late.AskOk($"verify {lr} 42"));
        _ = late.AskOk($"dispose {lr}");
        Assert.Equal("0", late.AskOk($"release {idx2}"));
        Exit(late);
        Exit(consumer);
        Driver.AssertNoViolations();
        Assert.Empty(Directory.GetFiles(Driver.Directory, "mem.*")); // VMM memory is a memfd: nothing left behind
    }

    [Fact]
    public void The_exporter_closing_first_leaves_the_importer_its_memory_and_then_frees_it()
    {
        string name = NewName("vc");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 5");
        _ = a.AskOk($"forget {g}");
        string r = b.AskOk($"get {idx}");
        _ = a.AskOk("close"); // the slot is live: its allocation (and the fd server) stay
        Assert.Equal("", b.AskOk($"verify {r} 5"));
        string r2 = b.AskOk($"get {idx}");
        _ = b.AskOk($"dispose {r}");
        _ = b.AskOk($"dispose {r2}");
        Assert.Equal("0", b.AskOk($"release {idx}"));
        Exit(a);
        Exit(b);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void An_importer_closing_first_with_a_guard_held_keeps_it_valid_and_the_slot_live()
    {
        string name = NewName("vf");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 8");
        _ = a.AskOk($"forget {g}");
        string r = b.AskOk($"get {idx}");
        string[] p = b.AskOk($"ptr {r}").Split(' ');
        _ = b.AskOk("close");
        Assert.Equal("", b.AskOk($"verifyptr {p[1]} {p[0]} {Size} 8"));
        Assert.Equal("1", a.AskOk($"release {idx}")); // the importer's pinned reference
        Assert.Equal("0", a.AskOk("trim"));
        _ = b.AskOk($"dispose {r}"); // unmaps, releases its handle, then gives the reference back
        Assert.Equal("0", a.AskOk($"refcount {idx}"));
        Assert.Equal(AllocBytes, a.AskOk("trim"));
        Exit(b);
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void A_killed_importer_does_not_keep_the_exporter_from_releasing()
    {
        string name = NewName("vx");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 9");
        _ = a.AskOk($"forget {g}");
        string r = b.AskOk($"get {idx}");
        Assert.Equal("", b.AskOk($"verify {r} 9"));
        b.KillHard();
        _ = a.AskOk("recover"); // gives the dead importer's reference back
        Assert.Equal("1", a.AskOk($"refcount {idx}"));
        Assert.Equal("0", a.AskOk($"release {idx}"));
        Assert.Equal(AllocBytes, a.AskOk("trim"));
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void A_garbled_or_wrong_request_to_the_fd_server_gets_no_descriptor_and_the_server_keeps_serving()
    {
        string name = NewName("vg");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 17");
        _ = a.AskOk($"forget {g}");
        byte[] rec = Record(name, idx);
        int pid = BitConverter.ToInt32(rec, 64);
        ulong token = BitConverter.ToUInt64(rec, 72);
        uint memGen = BitConverter.ToUInt32(rec, 24);
        ulong instance = ControlInstance(name);

        Assert.Equal((CudaFdProtocol.BadRequest, 0), Exchange(pid, token, [1, 2, 3, 4, 5])); // too short
        var wrongGen = new CudaFdProtocol.Request { Magic = CudaFdProtocol.RequestMagic, Version = CudaFdProtocol.Version, Instance = instance, Slot = idx, MemGen = memGen + 1 };
        Assert.Equal((CudaFdProtocol.UnknownExport, 0), Exchange(pid, token, Bytes(wrongGen)));
        var wrongPool = wrongGen with { MemGen = memGen, Instance = instance ^ 1 };
        Assert.Equal((CudaFdProtocol.UnknownExport, 0), Exchange(pid, token, Bytes(wrongPool)));
        var badMagic = wrongGen with { MemGen = memGen, Magic = 0x12345678 };
        Assert.Equal((CudaFdProtocol.BadRequest, 0), Exchange(pid, token, Bytes(badMagic)));
        var good = wrongGen with { MemGen = memGen };
        Assert.Equal((CudaFdProtocol.Ok, 1), Exchange(pid, token, Bytes(good))); // the same user may: one descriptor

        string r = b.AskOk($"get {idx}"); // the server still serves
        Assert.Equal("", b.AskOk($"verify {r} 17"));
        _ = b.AskOk($"dispose {r}");
        Assert.Equal("0", b.AskOk($"release {idx}"));
        Exit(b);
        Exit(a);
        Driver.AssertNoViolations();
    }

    private static ulong ControlInstance(string name)
    {
        using var f = new FileStream(Shm.ControlPath(name), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        byte[] h = new byte[LayoutConstants.HeaderSize];
        f.ReadExactly(h);
        fixed (byte* p = h)
        {
            return ((PoolHeader*)p)->InstanceId;
        }
    }

    private static byte[] Bytes(CudaFdProtocol.Request req)
    {
        byte[] b = new byte[sizeof(CudaFdProtocol.Request)];
        fixed (byte* p = b)
        {
            *(CudaFdProtocol.Request*)p = req;
        }

        return b;
    }

    /// <summary>Sends one raw message to the fd server from a test child (as <paramref name="user"/> when given);
    /// returns the reply's status (-1: none) and how many descriptors came with it.</summary>
    private static (int Status, int Fds) Exchange(int pid, ulong token, byte[] message, string? user = null)
    {
        using TestChild c = TestChild.Start("fd-request", [pid.ToString(CultureInfo.InvariantCulture), token.ToString("x", CultureInfo.InvariantCulture), Convert.ToHexString(message)], runAsUser: user);
        string[] w = c.ReadLine().Split(' ');
        Assert.Equal(0, c.WaitForExit());
        return w[0] == "status" ? (int.Parse(w[1], CultureInfo.InvariantCulture), int.Parse(w[3], CultureInfo.InvariantCulture)) : (-1, int.Parse(w[2], CultureInfo.InvariantCulture));
    }

    [RootFact]
    public void A_process_of_a_user_outside_the_pool_gets_no_descriptor_even_with_a_well_formed_request()
    {
        Users.EnsurePermissionUsers();
        string name = NewName("vu");
        TestChild a = Exporter(name); // mode 0600: only this user (and root) may use the pool's memory
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"forget {g}");
        byte[] rec = Record(name, idx);
        var req = new CudaFdProtocol.Request
        {
            Magic = CudaFdProtocol.RequestMagic,
            Version = CudaFdProtocol.Version,
            Instance = ControlInstance(name),
            Slot = idx,
            MemGen = BitConverter.ToUInt32(rec, 24),
        };
        // Abstract socket names are listed in /proc/net/unix: anyone may connect; the credentials decide.
        Assert.Equal((CudaFdProtocol.Denied, 0), Exchange(BitConverter.ToInt32(rec, 64), BitConverter.ToUInt64(rec, 72), Bytes(req), Users.Outsider));
        Assert.Equal((CudaFdProtocol.Ok, 1), Exchange(BitConverter.ToInt32(rec, 64), BitConverter.ToUInt64(rec, 72), Bytes(req)));
        Assert.Equal("0", a.AskOk($"release {idx}"));
        Exit(a);
        Driver.AssertNoViolations();
    }
}
