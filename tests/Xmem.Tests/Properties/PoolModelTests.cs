using CsCheck;

namespace Xmem.Tests.Properties;

/// <summary>
/// Random sequences of API calls (acquire, get, get_mut, add_ref, release, set_ref_count, ref_count, guard dispose,
/// forget and access, trim) on a small pool, each checked against a simple in-memory model of counts, live slots,
/// guards and kept memory. CsCheck shrinks a failing sequence to a short one and prints it with its seed.
/// </summary>
public sealed class PoolModelTests
{
    private const int Capacity = 4;
    private const long Page = 4096;

    public enum Kind { Acquire, Get, GetMut, AddRef, Release, SetRefCount, RefCount, DisposeGuard, ForgetGuard, AccessGuard, Trim }

    public sealed record Op(Kind Kind, int A, int B)
    {
        public override string ToString() => Kind switch
        {
            Kind.Acquire => $"Acquire({A})",
            Kind.SetRefCount => $"SetRefCount({A}, {B})",
            Kind.DisposeGuard or Kind.ForgetGuard or Kind.AccessGuard => $"{Kind}(guard #{A})",
            Kind.Trim => "Trim()",
            _ => $"{Kind}({A})",
        };
    }

    private static readonly Gen<int> Index = Gen.Frequency((10, Gen.Int[0, Capacity - 1]), (1, Gen.Const(-1)), (1, Gen.Const(Capacity)));
    private static readonly int[] Sizes = [1, 100, 4096, 4097, 9000, 20_000];
    private static readonly Gen<int> Size = Gen.Int[0, Sizes.Length - 1].Select(i => Sizes[i]);
    private static readonly Gen<int> GuardPick = Gen.Int[0, 1000];

    private static readonly Gen<Op> AnyOp = Gen.Frequency(
        (6, Size.Select(s => new Op(Kind.Acquire, s, 0))),
        (3, Index.Select(i => new Op(Kind.Get, i, 0))),
        (2, Index.Select(i => new Op(Kind.GetMut, i, 0))),
        (2, Index.Select(i => new Op(Kind.AddRef, i, 0))),
        (3, Index.Select(i => new Op(Kind.Release, i, 0))),
        (2, Gen.Select(Index, Gen.Int[0, 3], (i, c) => new Op(Kind.SetRefCount, i, c))),
        (1, Index.Select(i => new Op(Kind.RefCount, i, 0))),
        (5, GuardPick.Select(g => new Op(Kind.DisposeGuard, g, 0))),
        (2, GuardPick.Select(g => new Op(Kind.ForgetGuard, g, 0))),
        (2, GuardPick.Select(g => new Op(Kind.AccessGuard, g, 0))),
        (1, Gen.Const(new Op(Kind.Trim, 0, 0))));

    private sealed class SlotModel
    {
        public bool Live;
        public int Count;
        public int Generation;
        public long KeptCapacity;
        public byte Marker;
    }

    private sealed class GuardModel(BufferGuard real, int slot, int generation, bool readOnly)
    {
        public BufferGuard Real { get; } = real;
        public int Slot { get; } = slot;
        public int Generation { get; } = generation;
        public bool ReadOnly { get; } = readOnly;
        public bool Valid { get; set; } = true;
    }

    [Fact]
    public void RandomCallSequences_MatchTheModel() =>
        AnyOp.Array[1, 60].Sample(Run, iter: 300, print: ops => string.Join(", ", ops));

    private static void Run(Op[] ops)
    {
        string name = Shm.UniqueName("model");
        var slots = Enumerable.Range(0, Capacity).Select(_ => new SlotModel()).ToArray();
        var guards = new List<GuardModel>();
        byte marker = 0;
        try
        {
            using (BufferPool pool = BufferPool.Create(name, Capacity))
            {
                for (int step = 0; step < ops.Length; step++)
                {
                    Op op = ops[step];
                    try
                    {
                        Apply(pool, op, slots, guards, ref marker);
                        for (int i = 0; i < Capacity; i++)
                        {
                            Assert.Equal(slots[i].Live ? slots[i].Count : 0, pool.RefCount(i));
                        }
                    }
                    catch (Exception e) when (e is not Xunit.Sdk.XunitException)
                    {
                        throw new Xunit.Sdk.XunitException($"step {step} {op}: unexpected {e.GetType().Name}: {e.Message}");
                    }
                    catch (Xunit.Sdk.XunitException e)
                    {
                        throw new Xunit.Sdk.XunitException($"step {step} {op}: {e.Message}");
                    }
                }

                foreach (GuardModel g in guards)
                {
                    g.Real.Dispose();
                }

                for (int i = 0; i < Capacity; i++)
                {
                    if (pool.RefCount(i) > 0)
                    {
                        pool.SetRefCount(i, 0);
                    }
                }
            }

            Assert.Empty(Shm.EntriesOf(name));
        }
        finally
        {
            Shm.ForceRemove(name);
        }
    }

    private static void Apply(BufferPool pool, Op op, SlotModel[] slots, List<GuardModel> guards, ref byte marker)
    {
        bool inRange = (uint)op.A < Capacity;
        bool live = inRange && slots[op.A].Live;
        switch (op.Kind)
        {
            case Kind.Acquire:
            {
                var free = Enumerable.Range(0, Capacity).Where(i => !slots[i].Live).ToList();
                if (free.Count == 0)
                {
                    Assert.Throws<PoolFullException>(() => pool.AcquireCpu(op.A));
                    return;
                }

                BufferGuard g = pool.AcquireCpu(op.A);
                int s = g.MetaIndex;
                Assert.Contains(s, free);
                if (free.Any(i => slots[i].KeptCapacity >= op.A))
                {
                    Assert.True(slots[s].KeptCapacity >= op.A, $"slot {s} (kept {slots[s].KeptCapacity} bytes) chosen although a free slot's memory fits {op.A}");
                }

                SlotModel m = slots[s];
                if (m.KeptCapacity < op.A)
                {
                    m.KeptCapacity = (op.A + Page - 1) / Page * Page;
                }

                m.Live = true;
                m.Count = 1;
                m.Generation++;
                m.Marker = ++marker;
                Assert.Equal(op.A, g.Size);
                g.Span[0] = m.Marker;
                g.Span[op.A - 1] = m.Marker;
                guards.Add(new GuardModel(g, s, m.Generation, readOnly: false));
                return;
            }

            case Kind.Get:
            case Kind.GetMut:
            {
                bool ro = op.Kind == Kind.Get;
                Func<BufferGuard> call = ro ? () => pool.Get(op.A) : () => pool.GetMut(op.A);
                if (!ExpectIndexErrors(call, inRange, live))
                {
                    return;
                }

                BufferGuard g = call();
                SlotModel m = slots[op.A];
                m.Count++;
                Assert.Equal(ro, g.IsReadOnly);
                Assert.Equal(m.Marker, g.ReadOnlySpan[0]);
                guards.Add(new GuardModel(g, op.A, m.Generation, ro));
                return;
            }

            case Kind.AddRef:
                if (ExpectIndexErrors(() => pool.AddRef(op.A), inRange, live))
                {
                    Assert.Equal(++slots[op.A].Count, pool.AddRef(op.A));
                }

                return;
            case Kind.Release:
                if (ExpectIndexErrors(() => pool.Release(op.A), inRange, live))
                {
                    SlotModel m = slots[op.A];
                    Assert.Equal(--m.Count, pool.Release(op.A));
                    m.Live = m.Count > 0;
                }

                return;
            case Kind.SetRefCount:
                if (ExpectIndexErrors(() => { pool.SetRefCount(op.A, op.B); return 0; }, inRange, live))
                {
                    pool.SetRefCount(op.A, op.B);
                    slots[op.A].Count = op.B;
                    slots[op.A].Live = op.B > 0;
                }

                return;
            case Kind.RefCount:
                if (!inRange)
                {
                    Assert.Throws<MetaIndexOutOfRangeException>(() => pool.RefCount(op.A));
                }
                else
                {
                    Assert.Equal(live ? slots[op.A].Count : 0, pool.RefCount(op.A));
                }

                return;
            case Kind.DisposeGuard:
            {
                if (guards.Count == 0)
                {
                    return;
                }

                GuardModel g = guards[op.A % guards.Count];
                g.Real.Dispose();
                if (g.Valid)
                {
                    g.Valid = false;
                    SlotModel m = slots[g.Slot];
                    if (m.Live && m.Generation == g.Generation)
                    {
                        m.Count--;
                        m.Live = m.Count > 0;
                    }
                }

                Assert.False(g.Real.IsValid);
                return;
            }

            case Kind.ForgetGuard:
            {
                if (guards.Count == 0)
                {
                    return;
                }

                GuardModel g = guards[op.A % guards.Count];
                if (g.Valid)
                {
                    g.Real.Forget();
                    g.Valid = false; // the count stays, in flight
                }
                else
                {
                    Assert.Throws<BufferGuardInvalidException>(() => g.Real.Forget());
                }

                Assert.False(g.Real.IsValid);
                return;
            }

            case Kind.AccessGuard:
            {
                if (guards.Count == 0)
                {
                    return;
                }

                GuardModel g = guards[op.A % guards.Count];
                Assert.Equal(g.Valid, g.Real.IsValid);
                if (!g.Valid)
                {
                    Assert.Throws<BufferGuardInvalidException>(() => g.Real.ReadOnlySpan.Length);
                    Assert.Throws<BufferGuardInvalidException>(() => g.Real.CpuPointer);
                    return;
                }

                if (g.ReadOnly)
                {
                    Assert.Throws<BufferReadOnlyException>(() => g.Real.Span.Length);
                }
                else
                {
                    Assert.Equal(g.Real.Size, g.Real.Span.Length);
                }

                SlotModel m = slots[g.Slot];
                if (m.Live && m.Generation == g.Generation)
                {
                    Assert.Equal(m.Marker, g.Real.ReadOnlySpan[0]);
                }

                return;
            }

            case Kind.Trim:
            {
                long expected = 0;
                foreach (SlotModel m in slots.Where(m => !m.Live))
                {
                    expected += m.KeptCapacity;
                    m.KeptCapacity = 0;
                }

                Assert.Equal(expected, pool.Trim());
                return;
            }
        }
    }

    /// <summary>Checks the errors of an index call on a slot that is out of range or not live (and that they change
    /// no count: the caller compares every count after each step). True when the call should succeed.</summary>
    private static bool ExpectIndexErrors<T>(Func<T> call, bool inRange, bool live)
    {
        if (!inRange)
        {
            Assert.Throws<MetaIndexOutOfRangeException>(() => call());
            return false;
        }

        if (!live)
        {
            Assert.Throws<SlotNotLiveException>(() => call());
            return false;
        }

        return true;
    }
}
