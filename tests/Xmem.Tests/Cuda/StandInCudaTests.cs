namespace Xmem.Tests.Cuda;

/// <summary>
/// The real function-pointer binding (CudaDriver over libcuda.so.1) end to end, from two real processes, against the
/// strict stand-in driver (tests/cuda-standin: a contract checker, not a GPU). Each test fails when the stand-in logs
/// a violation of the CUDA driver API's documented rules (a missing context, a damaged handle, a use of freed memory
/// or a destroyed event, a free with an importer still open, unordered access across processes) as well as when a
/// byte or a count is wrong.
/// </summary>
[Collection(StandInCollection.Name)]
public sealed class StandInCudaTests : StandInSessionTest
{
    [Fact]
    public void The_stand_in_exports_exactly_the_entry_points_the_binding_resolves()
    {
        string interop = File.ReadAllText(Path.Combine(BuildPaths.RepoRoot, "src", "Xmem", "Interop", "Interop.Cuda.cs"));
        string[] bound = System.Text.RegularExpressions.Regex.Matches(interop, @"(?:Optional)?Sym\(lib, ""(\w+)""")
            .Select(m => m.Groups[1].Value).Order(StringComparer.Ordinal).ToArray();
        var psi = new System.Diagnostics.ProcessStartInfo("nm", ["-D", "--defined-only", Driver.Library]) { RedirectStandardOutput = true };
        using var nm = System.Diagnostics.Process.Start(psi)!;
        string[] exported = nm.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ')[^1]).Where(n => n.StartsWith("cu", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
        nm.WaitForExit();
        Assert.Equal(28 + 11, bound.Length); // 28 required, 11 optional (VMM)
        Assert.Equal(bound, exported);
    }

    [Fact]
    public void The_stand_in_reports_a_read_that_waited_for_no_recorded_write()
    {
        string name = NewName("so");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 13");
        _ = a.AskOk($"forget {g}");
        _ = b.AskOk("waits off"); // the caller orders work itself, and here does not
        string r = b.AskOk($"get {idx}");
        Assert.Equal("", b.AskOk($"verify {r} 13")); // the stand-in copies at once: the bytes are there...
        string[] v = Driver.Violations();
        Assert.Single(v); // ...but a GPU could have run the read first
        Assert.Contains("did not wait for an event recorded after that write", v[0], StringComparison.Ordinal);
        File.Delete(Driver.LogPath);
        _ = b.AskOk($"dispose {r}");
        Assert.Equal("0", b.AskOk($"release {idx}"));
        Exit(b);
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void The_stand_in_refuses_an_ipc_handle_damaged_in_the_slot_record()
    {
        const int capacity = 4;
        string name = NewName("sd");
        TestChild a = Exporter(name, capacity);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"forget {g}");
        long handleAt = Xmem.Layout.LayoutConstants.SlotTableOffset(capacity) + ((long)idx * Xmem.Layout.LayoutConstants.SlotSize) + 64 + 40;
        using (var f = new FileStream(Shm.ControlPath(name), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            f.Position = handleAt;
            int old = f.ReadByte();
            f.Position = handleAt;
            f.WriteByte((byte)(old ^ 0x5A)); // one byte of CudaIpcMemHandle, past its magic and id
        }

        string answer = b.Ask($"get {idx}");
        Assert.StartsWith("error Xmem.CudaException", answer, StringComparison.Ordinal);
        Assert.Contains("cuIpcOpenMemHandle", answer, StringComparison.Ordinal);
        string[] v = Driver.Violations();
        Assert.Single(v);
        Assert.Contains("differs from what cuIpcGetMemHandle gave at byte 40", v[0], StringComparison.Ordinal);
        File.Delete(Driver.LogPath);
        Assert.Equal("1", b.AskOk($"refcount {idx}")); // the failed get gave its reference back
        Assert.Equal("0", a.AskOk($"release {idx}"));
        Exit(b);
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void Bytes_written_by_the_exporter_are_read_by_an_importer_within_theDriver_contract()
    {
        string name = NewName("sx");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 7");
        _ = a.AskOk($"forget {g}"); // records the writes; the reference is in flight
        string r = b.AskOk($"get {idx}");
        Assert.Equal("", b.AskOk($"verify {r} 7"));
        string r2 = b.AskOk($"get {idx}"); // cached mapping
        Assert.Equal("", b.AskOk($"verify {r2} 7"));
        _ = b.AskOk($"dispose {r}");
        _ = b.AskOk($"dispose {r2}");
        Assert.Equal("0", b.AskOk($"release {idx}"));
        Exit(b);
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void Reacquiring_a_kept_allocation_waits_for_the_last_recorded_writes()
    {
        string name = NewName("sw");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 1");
        _ = a.AskOk($"forget {g}");
        string m = b.AskOk($"getmut {idx}");
        _ = b.AskOk($"fill {m} 2"); // the consumer's writes, recorded when its guard is released
        _ = b.AskOk($"dispose {m}");
        Assert.Equal("0", a.AskOk($"release {idx}"));
        (string again, int idx2) = Acquire(a);
        Assert.Equal(idx, idx2); // the kept allocation
        _ = a.AskOk($"fill {again} 3"); // must be ordered after the consumer's writes
        _ = a.AskOk($"dispose {again}");
        Exit(b);
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void An_importer_closes_its_mapping_before_its_last_reference_goes_so_the_exporter_may_free_at_once()
    {
        string name = NewName("sf");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 4");
        _ = a.AskOk($"forget {g}");
        string r = b.AskOk($"get {idx}");
        Assert.Equal("", b.AskOk($"verify {r} 4"));
        _ = b.AskOk($"dispose {r}"); // the importer's last guard: it closes the mapping
        Assert.Equal("0", b.AskOk($"release {idx}"));
        Assert.Equal((4L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), a.AskOk("trim"));
        Driver.AssertNoViolations();
        string again = b.AskOk($"acquire {Size} 0").Split(' ')[0]; // the importer's own allocation now
        _ = b.AskOk($"dispose {again}");
        Exit(b);
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void Closing_the_exporter_with_an_importer_still_open_frees_nothing_the_importer_uses()
    {
        string name = NewName("sc");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 5");
        _ = a.AskOk($"forget {g}");
        string r = b.AskOk($"get {idx}");
        Assert.Equal("", b.AskOk($"verify {r} 5"));
        _ = a.AskOk("close"); // detaches while the importer holds a guard: frees nothing the importer uses
        Assert.Equal("", b.AskOk($"verify {r} 5"));
        _ = b.AskOk($"dispose {r}");
        Assert.Equal("0", b.AskOk($"release {idx}"));
        Driver.AssertNoViolations();
        Exit(a);
        Exit(b);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void A_guard_released_after_close_records_on_no_destroyed_event_and_its_memory_stays_valid()
    {
        string name = NewName("sg");
        TestChild a = Exporter(name);
        (string g, _) = Acquire(a);
        _ = a.AskOk($"fill {g} 6");
        string[] p = a.AskOk($"ptr {g}").Split(' ');
        _ = a.AskOk("close");
        Assert.Equal("", a.AskOk($"verifyptr {p[1]} {p[0]} {Size} 6")); // still the guard's memory
        _ = a.AskOk($"dispose {g}"); // a writable guard records its writes: not on a destroyed event
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void An_importer_closing_first_with_guards_held_keeps_them_valid_until_released()
    {
        string name = NewName("si");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 8");
        _ = a.AskOk($"forget {g}");
        string r = b.AskOk($"get {idx}");
        string[] p = b.AskOk($"ptr {r}").Split(' ');
        _ = b.AskOk("close"); // the guard's mapping outlives the pool, and keeps the slot live (in flight)
        Assert.Equal("", b.AskOk($"verifyptr {p[1]} {p[0]} {Size} 8"));
        Assert.Equal("1", a.AskOk($"release {idx}")); // the importer's pinned reference remains
        Assert.Equal("0", a.AskOk("trim")); // nothing to free: the slot is live
        _ = b.AskOk($"dispose {r}"); // closes the mapping, then gives the reference back
        Assert.Equal("0", a.AskOk($"refcount {idx}"));
        Exit(b);
        Assert.Equal((4L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), a.AskOk("trim"));
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void A_killed_importer_does_not_keep_the_exporter_from_freeing()
    {
        string name = NewName("sk");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 9");
        _ = a.AskOk($"forget {g}");
        string r = b.AskOk($"get {idx}");
        Assert.Equal("", b.AskOk($"verify {r} 9"));
        b.KillHard(); // holds a reference and an open mapping
        Assert.Equal("2", a.AskOk($"refcount {idx}"));
        _ = a.AskOk("recover"); // gives the dead importer's reference back
        Assert.Equal("1", a.AskOk($"refcount {idx}"));
        Assert.Equal("0", a.AskOk($"release {idx}"));
        Assert.Equal((4L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), a.AskOk("trim"));
        Exit(a);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void A_killed_exporter_leaves_the_importer_working()
    {
        string name = NewName("se");
        TestChild a = Exporter(name);
        TestChild b = Importer(name);
        (string g, int idx) = Acquire(a);
        _ = a.AskOk($"fill {g} 10");
        _ = a.AskOk($"forget {g}");
        string r = b.AskOk($"get {idx}");
        Assert.Equal("", b.AskOk($"verify {r} 10"));
        _ = b.AskOk($"dispose {r}");
        Assert.Equal("0", b.AskOk($"release {idx}"));
        a.KillHard();
        (string mine, _) = Acquire(b, Size * 2L);
        _ = b.AskOk($"fill {mine} 11");
        Assert.Equal("", b.AskOk($"verify {mine} 11"));
        _ = b.AskOk($"dispose {mine}");
        Exit(b);
        Driver.AssertNoViolations();
    }

    [Fact]
    public void Copies_across_kinds_and_devices_and_a_channel_handoff_keep_the_contract()
    {
        string name = NewName("sy");
        TestChild a = Exporter(name, capacity: 8);
        TestChild b = Importer(name);
        string[] c = a.AskOk($"acquirecpu {Size}").Split(' ');
        _ = a.AskOk($"fillcpu {c[0]} 12");
        string d0 = a.AskOk($"copycuda {c[0]} 0").Split(' ')[0];
        string d1 = a.AskOk($"copycuda {d0} 1");
        _ = a.AskOk($"send q {d1}");
        string got = b.AskOk("recv q");
        Assert.Equal("", b.AskOk($"verify {got} 12"));
        string back = b.AskOk($"copycpu {got}");
        Assert.Equal("", b.AskOk($"verifycpu {back} 12"));
        string again = b.AskOk($"copycuda {got} 1");
        Assert.Equal("", b.AskOk($"verify {again} 12"));
        foreach (string x in new[] { got, back, again })
        {
            _ = b.AskOk($"dispose {x}");
        }

        foreach (string x in new[] { c[0], d0 })
        {
            _ = a.AskOk($"dispose {x}");
        }

        Exit(b);
        Exit(a);
        Driver.AssertNoViolations();
    }
}

/// <summary>The stand-in tests start several processes each: run them one at a time on a small machine.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class StandInCollection
{
    public const string Name = "cuda stand-in";
}
