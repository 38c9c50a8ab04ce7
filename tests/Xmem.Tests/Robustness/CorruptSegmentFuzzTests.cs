using CsCheck;
using Microsoft.Win32.SafeHandles;
using Xmem.Layout;
using Xunit.Abstractions;

namespace Xmem.Tests.Robustness;

/// <summary>
/// "Nothing read from a segment is trusted" (docs/layout.md, "Preconditions"): pools whose segments were damaged by
/// hand — random bytes, and targeted hostile values (indexes and owner tags out of range, states above 2, sizes
/// larger than the mapping, a capacity that does not match the file, hint bits beyond the capacity, huge data
/// capacities, MemGen naming a missing segment, dead entries with huge holdings, process entries in odd states) — are
/// used through the API in a child process (robust-fuzz), so that a SIGSEGV or SIGBUS shows as the child's death and
/// not as the test host's. Every call must end with one of xmem's own exceptions (IXmemError), ArgumentException or
/// ObjectDisposedException, never a crash, never a hang.
/// </summary>
public sealed class CorruptSegmentFuzzTests(ITestOutputHelper output) : PoolTest
{
    /// <summary>Silence longer than this from the child on one pool is a hang. A call may legitimately wait 5 s (a
    /// lock held by a live owner: a forged tag can name the child's own entry) and the script stops after one.</summary>
    private static readonly TimeSpan PerPoolWatchdog = TimeSpan.FromSeconds(45);

    /// <summary>One damaged pool: how it is made (capacity; per used slot its buffer size and what is left of it),
    /// the edits, and the seed of the child's script of calls.</summary>
    public sealed record FuzzCase(int Capacity, (int Size, int Leave)[] Setup, SegmentEdit[] Edits, int ScriptSeed)
    {
        public override string ToString() =>
            $"capacity {Capacity}, setup [{string.Join(", ", Setup.Select(s => $"{s.Size}B {LeaveNames[s.Leave]}"))}], script {ScriptSeed}, edits:\n    {string.Join("\n    ", Edits.Select(e => e.ToString()))}";
    }

    private static readonly string[] LeaveNames = ["live", "free-with-memory", "live-count-2"];

    // ---------------------------------------------------------------- generators

    private static readonly Gen<HostileValue> Value = Gen.Frequency(
        (6, Gen.OneOf<ulong>(0UL, 1UL, 2UL, 3UL, 4UL, 7UL, 15UL, 16UL, 255UL, 256UL, 257UL, 4095UL, 4096UL, 4097UL, 0x7FFF_FFFFUL, 0x8000_0000UL,
            0xFFFF_FFFFUL, 0x1_0000_0000UL, 1UL << 40, (ulong)long.MaxValue, ulong.MaxValue, 0x8000_0000_0000_0000UL).Select(v => new HostileValue('a', (long)v))),
        (2, Gen.ULong.Select(v => new HostileValue('a', (long)v))),
        (2, Gen.Int[-2, 2].Select(d => new HostileValue('c', d))),
        (1, Gen.OneOf(-4096L, -1L, 0L, 1L, 4096L).Select(d => new HostileValue('s', d))));

    private static readonly (string Name, int Offset, int Width)[] HeaderFields =
    [
        ("Magic", 0, 8), ("LayoutVersion", 8, 4), ("State", 12, 4), ("Capacity", 16, 4), ("MaxProcesses", 20, 4),
        ("SegmentSize", 24, 8), ("InstanceId", 32, 8), ("HeaderSize", 40, 4), ("SlotSize", 44, 4),
        ("ProcessTableOffset", 48, 8), ("FreeHintsOffset", 56, 8), ("SlotTableOffset", 64, 8), ("Flags", 72, 4),
        ("Mode", 76, 4), ("CreatorPid", 88, 4), ("FreeEpoch", 128, 4), ("WaitMask", 192, 8),
        ("ChannelTableOffset", 256, 8), ("ChannelCount", 264, 4),
    ];

    private static readonly (string Name, int Offset, int Width)[] SlotFields =
    [
        ("Word", 0, 8), ("Size", 8, 8), ("DataCapacity", 16, 8), ("MemGen", 24, 4), ("Kind", 28, 2), ("DeviceId", 30, 2),
        ("JournalHoldings", 32, 8), ("JournalOwner", 40, 4), ("CudaOffset", 48, 8), ("CudaAllocSize", 56, 8),
        ("DescVersion", 192, 4), ("DType", 196, 1), ("NDim", 197, 1), ("Seq", 200, 8), ("JournalWord", 216, 8),
        ("Shape0", 224, 8), ("Strides0", 288, 8), ("ContentType", 352, 8), ("ProducerTag", 384, 8),
    ];

    private static readonly (string Name, int Offset, int Width)[] EntryFields =
    [
        ("State", 0, 4), ("Pid", 4, 4), ("StartTime", 8, 8), ("Waiters", 16, 4), ("Incarnation", 20, 4), ("Comm", 24, 8),
    ];

    private static readonly Gen<int> Slot = Gen.Int[0, 200];

    /// <summary>A dimension or a stride: small, zero, negative, or large enough to overflow a product.</summary>
    private static readonly Gen<long> Dimension = Gen.Frequency(
        (4, Gen.Long[0, 64]), (1, Gen.OneOf(-1L, 1L << 31, 1L << 32, 1L << 62, long.MaxValue, long.MinValue)), (1, Gen.Long));
    private static readonly Gen<int> Entry = Gen.OneOf(0, 0, 1, 1, 2, 3, 255);

    /// <summary>Owner tags: mostly none or a dead entry's; rarely 1, the entry a lone opener lands on (a lock it
    /// then waits on for 5 s, as on any live owner); above 256, corrupt.</summary>
    private static readonly Gen<int> Owner = Gen.Frequency((40, Gen.Const(0)), (30, Gen.Int[2, 4]), (10, Gen.OneOf(256, 257, 4095)), (1, Gen.Const(1)));

    private static readonly Gen<SegmentEdit> Edit = Gen.Frequency(
        (8, Gen.Select(Slot, Gen.OneOf(0, 1, 2, 0xFF_FFFF), Gen.OneOf(0, 1, 2, 2, 3, 15), Owner, Gen.Frequency((4, Gen.Const(-1)), (1, Gen.Int[0, 3])),
            (s, c, st, o, g) => (SegmentEdit)new SlotWordEdit(s, c, st, o, g))),
        (8, Gen.Select(Slot, Gen.Int[0, SlotFields.Length - 1], Value,
            (s, f, v) => (SegmentEdit)new SlotFieldEdit(s, SlotFields[f].Name, SlotFields[f].Offset, SlotFields[f].Width, v))),
        (3, Gen.Select(Gen.Int[0, HeaderFields.Length - 1], Value,
            (f, v) => (SegmentEdit)new HeaderFieldEdit(HeaderFields[f].Name, HeaderFields[f].Offset, HeaderFields[f].Width, v))),
        (4, Gen.Select(Entry, Gen.Int[0, EntryFields.Length - 1], Value,
            (e, f, v) => (SegmentEdit)new EntryFieldEdit(e, EntryFields[f].Name, EntryFields[f].Offset, EntryFields[f].Width, v))),
        (5, Gen.Select(Entry, Gen.OneOf(1u, 1u, 2u, 3u, 0xFFFF_FFFFu), Slot, Gen.OneOf(1u, 2u, 0xFF_FFFFu, 0x7FFF_FFFFu, 0x8000_0000u, 0xFFFF_FFFFu),
            Gen.Frequency((4, Gen.Const(-1)), (1, Gen.Int[0, 3])), Gen.Frequency((6, Gen.Const(-1L)), (1, Gen.OneOf(0L, 7L, 8L, 4095L))),
            (e, st, s, c, g, l) => (SegmentEdit)new DeadHoldingsEdit(e, st, s, c, g, l))),
        (3, Gen.Select(Gen.Int[0, 7], Gen.Frequency((2, Gen.Const(ulong.MaxValue)), (1, Gen.ULong)), (w, v) => (SegmentEdit)new HintEdit(w, v))),
        (4, Gen.Select(Gen.OneOf("header", "processes", "hints", "slots", "slots"), Gen.Long[0, 1 << 20], Gen.Byte.Array[1, 24],
            (r, o, b) => (SegmentEdit)new RawBytesEdit(r, o, b))),
        (3, Gen.Select(Slot, Gen.OneOf(-1L, -1L, 0L, 1L, 4095L), (s, l) => (SegmentEdit)new DataSegmentEdit(s, l))),
        (4, Gen.Select(Slot, Gen.OneOf(2u, 2u, 4u, 1u, 0xFFFF_FFFEu), Gen.Int[0, 20].Select(b => (byte)b), Gen.Int[0, 10].Select(b => (byte)b),
            Dimension.Array[0, 8], Dimension.Array[0, 8], Gen.Frequency((3, Gen.Const(Array.Empty<byte>())), (1, Gen.Byte.Array[1, 32])),
            (s, v, t, n, sh, st, ct) => (SegmentEdit)new DescriptionEdit(s, v, t, n, sh, st, ct))),
        (1, Gen.OneOf(0, 1, 2, 3, 100, 4096, 4097, 1 << 20, (1 << 20) + 1).Select(c => (SegmentEdit)new CapacityEdit(c))),
        (1, Gen.Frequency((2, Gen.OneOf(-4096L, -512L, -1L, 4096L).Select(d => new HostileValue('s', d))), (1, Gen.OneOf(0L, 100L, 4095L, 4096L).Select(d => new HostileValue('a', d))))
            .Select(v => (SegmentEdit)new TruncateEdit(v))));

    private static readonly Gen<(int, int)> SetupSlot = Gen.Select(Gen.OneOf(16, 100, 4096, 5000, 20_000), Gen.Int[0, 2], (s, l) => (s, l));

    private static readonly Gen<FuzzCase> Case =
        Gen.Select(Gen.OneOf(1, 2, 4, 8, 64, 65, 130), SetupSlot.Array[0, 6], Edit.Array[1, 6], Gen.Int,
            (cap, setup, edits, seed) => new FuzzCase(cap, setup.Take(cap).ToArray(), edits, seed));

    // ---------------------------------------------------------------- the test

    private int _tried, _crashes, _hangs, _bad, _opened, _calls, _refused;
    private long _slowestMs;

    /// <summary>50 batches of 20 damaged pools, one child process per batch: 1000 damaged pools.</summary>
    [Fact]
    public void Damaged_segments_are_refused_with_xmem_errors_never_a_crash_or_a_hang()
    {
        try
        {
            Case.Array[20, 20].Sample(RunBatch, iter: 50, threads: 1, print: b => "\n  " + string.Join("\n  ", b.Select(c => c.ToString())));
        }
        finally
        {
            string figures = RobustnessFigures.Record("fuzz",
                ("corrupt_segments", _tried), ("crashes", _crashes), ("hangs", _hangs), ("foreign_exceptions", _bad),
                ("opened", _opened), ("calls", _calls), ("refused_by_xmem", _refused), ("slowest_pool_ms", _slowestMs));
            output.WriteLine(figures);
        }
    }

    private void RunBatch(FuzzCase[] batch)
    {
        var names = new List<string>();
        var failures = new List<string>();
        try
        {
            foreach (FuzzCase c in batch)
            {
                names.Add(Make(c));
            }

            TestChild child = TestChild.Start("robust-fuzz");
            try
            {
                for (int i = 0; i < batch.Length; i++)
                {
                    _tried++;
                    string name = names[i];
                    child.Send($"{name} {batch[i].ScriptSeed}");
                    long start = Environment.TickCount64;
                    try
                    {
                        _ = child.Expect("begin ");
                        string lastCall = "-";
                        while (true)
                        {
                            string line;
                            try
                            {
                                line = child.ReadLine(PerPoolWatchdog);
                            }
                            catch (TimeoutException e)
                            {
                                throw new TimeoutException($"no answer within {PerPoolWatchdog.TotalSeconds:0} s, in {lastCall}. {e.Message}");
                            }

                            if (line.StartsWith("call ", StringComparison.Ordinal))
                            {
                                lastCall = line;
                                continue;
                            }

                            if (line.StartsWith("end ", StringComparison.Ordinal))
                            {
                                Count(line);
                                _slowestMs = Math.Max(_slowestMs, Environment.TickCount64 - start);
                                break;
                            }

                            _bad++;
                            failures.Add($"{line}\n  on {batch[i]}");
                        }
                    }
                    catch (InvalidOperationException e)
                    {
                        // The child died (a signal, or an exit): it crashed on this pool.
                        _crashes++;
                        failures.Add($"the child crashed on {batch[i]}:\n{e.Message}");
                        child.Dispose();
                        child = TestChild.Start("robust-fuzz");
                    }
                    catch (TimeoutException e)
                    {
                        _hangs++;
                        failures.Add($"the child hung on {batch[i]}:\n{e.Message}");
                        child.KillHard();
                        child.Dispose();
                        child = TestChild.Start("robust-fuzz");
                    }
                }
            }
            finally
            {
                child.Dispose(); // closes stdin: the child exits
            }
        }
        finally
        {
            foreach (string name in names)
            {
                Shm.ForceRemove(name);
            }
        }

        if (failures.Count > 0)
        {
            throw new Xunit.Sdk.XunitException($"{failures.Count} damaged pools were not refused cleanly:\n{string.Join("\n", failures)}");
        }
    }

    private void Count(string end)
    {
        foreach (string part in end.Split(' '))
        {
            int eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0)
            {
                continue;
            }

            int v = int.Parse(part[(eq + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            switch (part[..eq])
            {
                case "opened":
                    _opened += v;
                    break;
                case "calls":
                    _calls += v;
                    break;
                case "refused":
                    _refused += v;
                    break;
            }
        }
    }

    /// <summary>Makes a persistent pool (so it outlives this process's handle), leaves its slots as the setup says
    /// (live buffers in flight, free slots that keep their memory), detaches, then damages it.</summary>
    private string Make(FuzzCase c)
    {
        string name = NewName("fuzz");
        ulong instance;
        using (BufferPool pool = BufferPool.Create(name, c.Capacity, persistent: true))
        {
            var guards = new List<(BufferGuard Guard, int Leave)>();
            foreach ((int size, int leave) in c.Setup)
            {
                BufferGuard g = pool.AcquireCpu(size);
                g.Span.Fill((byte)size);
                guards.Add((g, leave));
            }

            foreach ((BufferGuard g, int leave) in guards)
            {
                if (leave == 2)
                {
                    pool.Get(g.MetaIndex).Forget();
                }

                if (leave == 1)
                {
                    g.Dispose();
                }
                else
                {
                    g.Forget();
                }
            }

            instance = Shm.ReadControl(name, 32, 8);
        }

        using SafeFileHandle control = File.OpenHandle(Shm.ControlPath(name), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var target = new EditTarget(name, c.Capacity, instance, control);
        foreach (SegmentEdit e in c.Edits)
        {
            e.Apply(target);
        }

        return name;
    }
}
