using System.Globalization;
using CsCheck;
using Xmem.Tests.Shared;

namespace Xmem.Tests.Robustness;

/// <summary>
/// Model-based test across two processes: random sequences of API calls, each made by this process or by a child
/// (the <c>session</c> command, driven over stdin/stdout), checked against a simple model of the pool — which slots are
/// live, each slot's count and generation, each guard's process, slot, generation and validity, and what was last
/// written into each live buffer. After every call this process reads every count and compares it with the model.
/// The child is also killed with SIGKILL, or exits, mid-sequence: the references its guards held come back (the next
/// child lands on its entry and recovers it), while in-flight references (Forget, AddRef, SetRefCount) stay, as
/// docs/layout.md says. CsCheck shrinks a failing sequence and prints it.
/// </summary>
public sealed class CrossProcessModelTests
{
    private const int Capacity = 4;

    public enum Kind { Acquire, Get, GetMut, Dispose, Forget, AddRef, Release, SetRefCount, RefCount, Fill, Verify, KillChild, ChildExit }

    /// <summary>One call: by the child or this process; A is a size, an index or a guard pick; B a count or a seed.</summary>
    public sealed record Op(bool ByChild, Kind Kind, int A, int B)
    {
        public override string ToString() => (ByChild ? "child." : "parent.") + Kind switch
        {
            Kind.Acquire => $"Acquire({A})",
            Kind.SetRefCount => $"SetRefCount({A}, {B})",
            Kind.Dispose or Kind.Forget or Kind.Verify => $"{Kind}(guard #{A})",
            Kind.Fill => $"Fill(guard #{A}, seed {B})",
            Kind.KillChild or Kind.ChildExit => Kind.ToString(),
            _ => $"{Kind}({A})",
        };
    }

    private static readonly Gen<int> Index = Gen.Frequency((12, Gen.Int[0, Capacity - 1]), (1, Gen.Const(-1)), (1, Gen.Const(Capacity)));
    private static readonly Gen<int> Size = Gen.OneOf(1, 100, 4096, 5000);
    private static readonly Gen<int> Pick = Gen.Int[0, 1000];
    private static readonly Gen<bool> Who = Gen.Bool;

    private static readonly Gen<Op> AnyOp = Gen.Frequency(
        (6, Gen.Select(Who, Size, (c, s) => new Op(c, Kind.Acquire, s, 0))),
        (4, Gen.Select(Who, Index, (c, i) => new Op(c, Kind.Get, i, 0))),
        (2, Gen.Select(Who, Index, (c, i) => new Op(c, Kind.GetMut, i, 0))),
        (5, Gen.Select(Who, Pick, (c, g) => new Op(c, Kind.Dispose, g, 0))),
        (2, Gen.Select(Who, Pick, (c, g) => new Op(c, Kind.Forget, g, 0))),
        (2, Gen.Select(Who, Index, (c, i) => new Op(c, Kind.AddRef, i, 0))),
        (3, Gen.Select(Who, Index, (c, i) => new Op(c, Kind.Release, i, 0))),
        (2, Gen.Select(Who, Index, Gen.Int[0, 3], (c, i, n) => new Op(c, Kind.SetRefCount, i, n))),
        (1, Gen.Select(Who, Index, (c, i) => new Op(c, Kind.RefCount, i, 0))),
        (3, Gen.Select(Who, Pick, Gen.Int[1, 1000], (c, g, s) => new Op(c, Kind.Fill, g, s))),
        (3, Gen.Select(Who, Pick, (c, g) => new Op(c, Kind.Verify, g, 0))),
        (1, Gen.Const(new Op(true, Kind.KillChild, 0, 0))),
        (1, Gen.Const(new Op(true, Kind.ChildExit, 0, 0))));

    private sealed class SlotModel
    {
        public bool Live;
        public int Count;
        public int Generation;
        public int? Seed;
    }

    /// <summary>A guard of either process: the real one here, or its id in the child's session.</summary>
    private sealed class GuardModel(bool inChild, BufferGuard? real, string? id, int slot, int generation, bool writable)
    {
        public bool InChild { get; } = inChild;
        public BufferGuard? Real { get; } = real;
        public string? Id { get; } = id;
        public int Slot { get; } = slot;
        public int Generation { get; } = generation;
        public bool Writable { get; } = writable;
        public bool Valid { get; set; } = true;
    }

    private sealed class Run(string name, BufferPool pool)
    {
        public string Name { get; } = name;
        public BufferPool Pool { get; } = pool;
        public SlotModel[] Slots { get; } = Enumerable.Range(0, Capacity).Select(_ => new SlotModel()).ToArray();
        public List<GuardModel> Guards { get; } = [];
        public TestChild? Child { get; set; }
    }

    [Fact]
    public void Random_call_sequences_in_two_processes_match_the_model() =>
        AnyOp.Array[1, 50].Sample(RunSequence, iter: 40, threads: 1, print: ops => string.Join(", ", ops));

    private static void RunSequence(Op[] ops)
    {
        string name = Shm.UniqueName("xmodel");
        try
        {
            using (BufferPool pool = BufferPool.Create(name, Capacity))
            {
                var run = new Run(name, pool);
                try
                {
                    run.Child = StartChild(name);
                    for (int step = 0; step < ops.Length; step++)
                    {
                        try
                        {
                            Apply(run, ops[step]);
                            for (int i = 0; i < Capacity; i++)
                            {
                                SlotModel m = run.Slots[i];
                                Assert.True((m.Live ? m.Count : 0) == pool.RefCount(i), $"slot {i}: count {pool.RefCount(i)}, the model says {(m.Live ? m.Count : 0)}");
                            }
                        }
                        catch (Exception e) when (e is not Xunit.Sdk.XunitException)
                        {
                            throw new Xunit.Sdk.XunitException($"step {step} {ops[step]}: unexpected {e.GetType().Name}: {e.Message}");
                        }
                        catch (Xunit.Sdk.XunitException e)
                        {
                            throw new Xunit.Sdk.XunitException($"step {step} {ops[step]}: {e.Message}");
                        }
                    }

                    // Wind down: the child exits (its guards' references come back), this process disposes its
                    // guards, and what is left in flight is given back by hand.
                    EndChild(run, kill: false);
                    foreach (GuardModel g in run.Guards.Where(g => !g.InChild))
                    {
                        g.Real!.Dispose();
                    }

                    for (int i = 0; i < Capacity; i++)
                    {
                        if (pool.RefCount(i) > 0)
                        {
                            pool.SetRefCount(i, 0);
                        }
                    }
                }
                finally
                {
                    run.Child?.Dispose();
                }
            }

            Assert.Empty(Shm.EntriesOf(name));
        }
        finally
        {
            Shm.ForceRemove(name);
        }
    }

    private static TestChild StartChild(string name)
    {
        TestChild c = TestChild.Start("session", name);
        _ = c.Expect("ready");
        return c;
    }

    /// <summary>Ends the child (SIGKILL, or a clean exit) and applies what must follow in the model: every reference
    /// its guards held is released (by the next attacher's recovery, or by its own detach); its in-flight references
    /// stay.</summary>
    private static void EndChild(Run run, bool kill)
    {
        TestChild child = run.Child!;
        if (kill)
        {
            child.KillHard();
        }
        else
        {
            Assert.Equal("ok", child.Ask("exit"));
            Assert.Equal(0, child.WaitForExit());
        }

        child.Dispose();
        run.Child = null;
        foreach (GuardModel g in run.Guards.Where(g => g.InChild && g.Valid))
        {
            ReleaseOne(run, g);
        }

        run.Guards.RemoveAll(g => g.InChild);
    }

    /// <summary>The model of one attributed release: only a guard of the slot's current generation counts.</summary>
    private static void ReleaseOne(Run run, GuardModel g)
    {
        SlotModel m = run.Slots[g.Slot];
        if (m.Live && m.Generation == g.Generation)
        {
            m.Count--;
            if (m.Count == 0)
            {
                m.Live = false;
                m.Seed = null;
            }
        }
    }

    private static bool IsCurrent(Run run, GuardModel g) => run.Slots[g.Slot].Live && run.Slots[g.Slot].Generation == g.Generation;

    /// <summary>The outcome of a call in this process: "ok [value]" or "error FullTypeName".</summary>
    private static string Here(Func<string> call)
    {
        try
        {
            string v = call();
            return v.Length == 0 ? "ok" : "ok " + v;
        }
        catch (Exception e) when (e is IXmemError or ArgumentException or ObjectDisposedException)
        {
            return "error " + e.GetType().FullName;
        }
    }

    /// <summary>The outcome of an instruction in the child, in the same form.</summary>
    private static string There(Run run, string instruction)
    {
        string line = run.Child!.Ask(instruction);
        if (line.StartsWith("error ", StringComparison.Ordinal))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            return colon < 0 ? line : line[..colon];
        }

        return line;
    }

    private static string Do(Run run, Op op, Func<string> here, string there) => op.ByChild ? There(run, there) : Here(here);

    private static void Expect(string expected, string actual) =>
        Assert.True(expected == actual || (expected == "ok" && actual.StartsWith("ok ", StringComparison.Ordinal)), $"expected '{expected}', got '{actual}'");

    private static string ExpectIndexError(int i, SlotModel[] slots) =>
        (uint)i >= Capacity ? $"error {typeof(MetaIndexOutOfRangeException).FullName}" : !slots[i].Live ? "error Xmem.SlotNotLiveException" : "ok";

    private static void Apply(Run run, Op op)
    {
        BufferPool pool = run.Pool;
        SlotModel[] slots = run.Slots;
        string C(int v) => v.ToString(CultureInfo.InvariantCulture);
        GuardModel? Pick()
        {
            var mine = run.Guards.Where(g => g.InChild == op.ByChild).ToList();
            return mine.Count == 0 ? null : mine[op.A % mine.Count];
        }

        switch (op.Kind)
        {
            case Kind.Acquire:
            {
                var free = Enumerable.Range(0, Capacity).Where(i => !slots[i].Live).ToList();
                BufferGuard? real = null;
                string r = Do(run, op, () => { real = pool.AcquireCpu(op.A); return C(real.MetaIndex); }, $"acquire {op.A}");
                if (free.Count == 0)
                {
                    Expect("error Xmem.PoolFullException", r);
                    return;
                }

                Expect("ok", r);
                string[] w = r.Split(' ');
                int s = int.Parse(w[^1], CultureInfo.InvariantCulture);
                Assert.Contains(s, free);
                SlotModel m = slots[s];
                m.Live = true;
                m.Count = 1;
                m.Generation++;
                m.Seed = null;
                run.Guards.Add(new GuardModel(op.ByChild, real, op.ByChild ? w[1] : null, s, m.Generation, writable: true));
                return;
            }

            case Kind.Get or Kind.GetMut:
            {
                bool writable = op.Kind == Kind.GetMut;
                BufferGuard? real = null;
                string r = Do(run, op, () => { real = writable ? pool.GetMut(op.A) : pool.Get(op.A); return ""; }, $"{(writable ? "getmut" : "get")} {op.A}");
                Expect(ExpectIndexError(op.A, slots), r);
                if (r.StartsWith("ok", StringComparison.Ordinal))
                {
                    SlotModel m = slots[op.A];
                    m.Count++;
                    run.Guards.Add(new GuardModel(op.ByChild, real, op.ByChild ? r.Split(' ')[1] : null, op.A, m.Generation, writable));
                }

                return;
            }

            case Kind.Dispose:
            {
                if (Pick() is not { } g)
                {
                    return;
                }

                Expect("ok", Do(run, op, () => { g.Real!.Dispose(); return ""; }, $"dispose {g.Id}"));
                if (g.Valid)
                {
                    g.Valid = false;
                    ReleaseOne(run, g);
                }

                return;
            }

            case Kind.Forget:
            {
                if (Pick() is not { } g)
                {
                    return;
                }

                string r = Do(run, op, () => { g.Real!.Forget(); return ""; }, $"forget {g.Id}");
                Expect(g.Valid ? "ok" : "error Xmem.BufferGuardInvalidException", r);
                g.Valid = false; // the count stays, now in flight
                return;
            }

            case Kind.AddRef:
            {
                string r = Do(run, op, () => C(pool.AddRef(op.A)), $"addref {op.A}");
                Expect(ExpectIndexError(op.A, slots), r);
                if (r.StartsWith("ok", StringComparison.Ordinal))
                {
                    Assert.Equal($"ok {++slots[op.A].Count}", r);
                }

                return;
            }

            case Kind.Release:
            {
                string r = Do(run, op, () => C(pool.Release(op.A)), $"release {op.A}");
                Expect(ExpectIndexError(op.A, slots), r);
                if (r.StartsWith("ok", StringComparison.Ordinal))
                {
                    SlotModel m = slots[op.A];
                    Assert.Equal($"ok {--m.Count}", r);
                    if (m.Count == 0)
                    {
                        m.Live = false;
                        m.Seed = null;
                    }
                }

                return;
            }

            case Kind.SetRefCount:
            {
                string r = Do(run, op, () => { pool.SetRefCount(op.A, op.B); return ""; }, $"set {op.A} {op.B}");
                Expect(ExpectIndexError(op.A, slots), r);
                if (r.StartsWith("ok", StringComparison.Ordinal))
                {
                    SlotModel m = slots[op.A];
                    m.Count = op.B;
                    if (op.B == 0)
                    {
                        m.Live = false;
                        m.Seed = null;
                    }
                }

                return;
            }

            case Kind.RefCount:
            {
                string r = Do(run, op, () => C(pool.RefCount(op.A)), $"refcount {op.A}");
                if ((uint)op.A >= Capacity)
                {
                    Expect($"error {typeof(MetaIndexOutOfRangeException).FullName}", r);
                }
                else
                {
                    Assert.Equal($"ok {(slots[op.A].Live ? slots[op.A].Count : 0)}", r);
                }

                return;
            }

            case Kind.Fill:
            {
                // Writing through a guard whose slot was recycled would scribble on another owner's buffer: the
                // model only writes through guards of the current generation (or invalid ones, which must refuse).
                if (Pick() is not { } g || (g.Valid && !IsCurrent(run, g)))
                {
                    return;
                }

                string r = Do(run, op, () => { BytePattern.Fill(g.Real!.Span, op.B); return ""; }, $"fill {g.Id} {op.B}");
                Expect(!g.Valid ? "error Xmem.BufferGuardInvalidException" : !g.Writable ? "error Xmem.BufferReadOnlyException" : "ok", r);
                if (g.Valid && g.Writable)
                {
                    slots[g.Slot].Seed = op.B;
                }

                return;
            }

            case Kind.Verify:
            {
                if (Pick() is not { } g || (g.Valid && (!IsCurrent(run, g) || slots[g.Slot].Seed is null)))
                {
                    return;
                }

                int seed = slots[g.Slot].Seed ?? 0;
                string r = Do(run, op, () => { long at = BytePattern.FirstMismatch(g.Real!.ReadOnlySpan, seed); return at < 0 ? "" : "mismatch " + C((int)at); }, $"verify {g.Id} {seed}");
                Assert.Equal(g.Valid ? "ok" : "error Xmem.BufferGuardInvalidException", r);
                return;
            }

            case Kind.KillChild or Kind.ChildExit:
                EndChild(run, kill: op.Kind == Kind.KillChild);
                run.Child = StartChild(run.Name); // lands on the ended child's entry (recovering it after a kill)
                return;
        }
    }
}
