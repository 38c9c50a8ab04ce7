using System.Globalization;
using Xmem.Tests.Shared;

namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>robust-killloop POOL SEED</c>: the victim of the kill test (tests/Xmem.Tests/Robustness/KillTests.cs). Replies
/// <c>opening PID</c>, opens the pool, replies <c>looping</c>, then loops at full speed until it is killed (or the
/// test closes stdin): acquire, <c>Get</c>, <c>GetMut</c> and guard <c>Dispose</c> on random slots, <c>Trim</c>, and now and then
/// a detach (the pool's <c>Dispose</c>, guards still held) and a new <c>Open</c>, replying <c>reattaching</c>. Never
/// <c>Forget</c>, <c>AddRef</c> or <c>Release</c>: every reference it takes is held through a guard, so its death
/// must give every one of them back.
/// <para>
/// Data is stamped and checked across processes. An acquirer fills its buffer from byte 16 on with a pattern seeded
/// by a token unique to this process and acquire, then writes <c>~token ^ generation</c> at byte 8 and, last with
/// release ordering, the token at byte 0. The owner checks the whole buffer before it disposes its guard. A getter
/// that finds a complete stamp of its guard's generation checks the pattern, and checks the stamp again before it
/// lets go: a slot handed out twice, or memory recycled under a reference, shows as a changed stamp. Each broken
/// check is replied as <c>violation ...</c>; every 1024 operations it replies <c>progress N</c>.
/// </para>
/// </summary>
internal static unsafe class RobustKillLoopCommand
{
    private const int MaxOwned = 4;
    private const int MaxGets = 3;

    [ChildCommand("robust-killloop", "POOL SEED")]
    internal static int Run(ChildContext ctx)
    {
        string name = ctx.Arg(0);
        int seed = ctx.IntArg(1);

        // A victim must never outlive its test: when the test closes stdin (or dies), exit.
        var stdinWatch = new Thread(() =>
        {
            while (ctx.ReadInstruction() is not null)
            {
            }

            Environment.Exit(0);
        })
        { IsBackground = true, Name = "stdin-watch" };
        stdinWatch.Start();

        ctx.Reply($"opening {Environment.ProcessId}");
        BufferPool pool = BufferPool.Open(name);
        ctx.Reply("looping");
        Loop(ctx, name, pool, new Random(seed));
        return 0;
    }

    private readonly record struct Owned(BufferGuard Guard, ulong Token);

    private readonly record struct Borrowed(BufferGuard Guard, ulong Stamp);

    private static void Loop(ChildContext ctx, string name, BufferPool pool, Random rng)
    {
        var owned = new List<Owned>();
        var borrowed = new List<Borrowed>();
        ulong counter = 0;
        ulong pid = (ulong)Environment.ProcessId;
        for (long n = 1; ; n++)
        {
            if ((n & 1023) == 0)
            {
                ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"progress {n}"));
            }

            if (rng.Next(256) == 0)
            {
                // Detach and attach again, without disposing the guards first: Dispose gives their references back.
                // A kill lands inside Dispose or Open now and then.
                pool.Dispose();
                owned.Clear();
                borrowed.Clear();
                ctx.Reply("reattaching");
                pool = BufferPool.Open(name);
                continue;
            }

            int op = rng.Next(100);
            if (op == 99)
            {
                // Gives back the memory of free slots (claiming each while it drops it): killed inside, it leaves a
                // slot claimed and a data segment half-removed for recovery to finish.
                _ = pool.Trim();
            }
            else if (op < 30 && owned.Count < MaxOwned)
            {
                long size = rng.Next(3) == 0 ? rng.Next(4097, 3 * 4096) : rng.Next(16, 4097);
                BufferGuard? g;
                try
                {
                    if (rng.Next(6) == 0)
                    {
                        // Waits for a slot (Waiters counted): a death while waiting must leave no waiter behind.
                        _ = pool.TryAcquireCpu(size, TimeSpan.FromMilliseconds(rng.Next(1, 4)), out g);
                    }
                    else
                    {
                        g = pool.AcquireCpu(size);
                    }
                }
                catch (PoolFullException)
                {
                    g = null;
                }

                if (g is null)
                {
                    continue;
                }

                ulong token = (pid << 32) | ++counter;
                Stamp(g, token);
                owned.Add(new Owned(g, token));
            }
            else if (op < 55 && owned.Count > 0)
            {
                int k = rng.Next(owned.Count);
                Owned o = owned[k];
                owned.RemoveAt(k);
                CheckOwned(ctx, o);
                o.Guard.Dispose();
            }
            else if (op < 85 && borrowed.Count < MaxGets)
            {
                int index = rng.Next(pool.Capacity);
                BufferGuard r;
                try
                {
                    r = rng.Next(2) == 0 ? pool.Get(index) : pool.GetMut(index);
                }
                catch (SlotNotLiveException)
                {
                    continue;
                }

                ulong stamp = ReadStamp(ctx, r);
                if (rng.Next(2) == 0)
                {
                    borrowed.Add(new Borrowed(r, stamp));
                }
                else
                {
                    CheckBorrowed(ctx, new Borrowed(r, stamp));
                    r.Dispose();
                }
            }
            else if (borrowed.Count > 0)
            {
                int k = rng.Next(borrowed.Count);
                Borrowed b = borrowed[k];
                borrowed.RemoveAt(k);
                CheckBorrowed(ctx, b);
                b.Guard.Dispose();
            }
        }
    }

    /// <summary>Word <paramref name="i"/> (0 or 1) of the stamp. Safety: every buffer is at least 16 bytes and its
    /// mapping is page aligned; the guard keeps it mapped.</summary>
    private static ref ulong Word(BufferGuard g, int i) => ref ((ulong*)g.CpuPointer)[i];

    private static int PatternSeed(ulong token) => (int)(token ^ (token >> 29));

    private static void Stamp(BufferGuard g, ulong token)
    {
        Span<byte> span = g.Span;
        BytePattern.Fill(span[16..], PatternSeed(token));
        Volatile.Write(ref Word(g, 1), ~token ^ g.Generation);
        Volatile.Write(ref Word(g, 0), token); // release: the pattern and word 1 are visible before the token
    }

    /// <summary>The token of a complete stamp of the guard's generation, else 0 (not stamped yet, or an older
    /// generation's stamp). A complete stamp's pattern is checked.</summary>
    private static ulong ReadStamp(ChildContext ctx, BufferGuard g)
    {
        ulong token = Volatile.Read(ref Word(g, 0)); // acquire: word 1 and the pattern are read after it
        ulong check = Volatile.Read(ref Word(g, 1));
        if (token == 0 || check != (~token ^ g.Generation))
        {
            return 0;
        }

        long bad = BytePattern.FirstMismatch(g.ReadOnlySpan[16..], PatternSeed(token));
        if (bad >= 0)
        {
            ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"violation slot {g.MetaIndex} gen {g.Generation}: a getter found token {token:x16} with its pattern broken at byte {bad + 16}"));
        }

        return token;
    }

    private static void CheckBorrowed(ChildContext ctx, Borrowed b)
    {
        if (b.Stamp == 0)
        {
            return;
        }

        ulong now = Volatile.Read(ref Word(b.Guard, 0));
        if (now != b.Stamp)
        {
            ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"violation slot {b.Guard.MetaIndex} gen {b.Guard.Generation}: a getter saw token {b.Stamp:x16} change to {now:x16} while it held a reference"));
        }
    }

    private static void CheckOwned(ChildContext ctx, Owned o)
    {
        BufferGuard g = o.Guard;
        ulong token = Volatile.Read(ref Word(g, 0));
        ulong check = Volatile.Read(ref Word(g, 1));
        long bad = BytePattern.FirstMismatch(g.ReadOnlySpan[16..], PatternSeed(o.Token));
        if (token != o.Token || check != (~o.Token ^ g.Generation) || bad >= 0)
        {
            ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"violation slot {g.MetaIndex} gen {g.Generation}: the owner's stamp {o.Token:x16} reads {token:x16}/{check:x16}, pattern broken at {bad}: the slot was handed out twice"));
        }
    }
}
