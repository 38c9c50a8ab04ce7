using System.Globalization;
using Xmem.Tests.Shared;

namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>session &lt;pool&gt;</c> (open) or <c>session --create &lt;pool&gt; [capacity] [mode-octal]</c>: attaches to a pool,
/// replies <c>ready &lt;pid&gt;</c>, then runs one instruction per stdin line and answers each with one line:
/// <c>ok [values...]</c> or <c>error &lt;ExceptionType&gt;: &lt;message&gt;</c>. Guards are kept in a table under ids
/// (g1, g2, ...) so the test can act on them later. Instructions:
/// <code>
/// acquire SIZE                  ok GUARD INDEX
/// tryacquire SIZE TIMEOUT_MS    ok GUARD INDEX | timeout
/// get INDEX | getmut INDEX      ok GUARD
/// fill GUARD SEED               ok              (writes BytePattern over the whole buffer)
/// verify GUARD SEED             ok | mismatch POSITION
/// dispose GUARD | forget GUARD  ok
/// addref I | release I          ok NEWCOUNT
/// set I COUNT                   ok
/// refcount I                    ok COUNT
/// channel NAME                  ok              (opens, creating it if needed, a queue channel of depth 8)
/// recover                       ok N            (RecoverDeadProcesses)
/// remove                        ok True|False   (BufferPool.Remove of this pool)
/// exit                          ok              (disposes the pool and exits 0; end of stdin does the same)
/// </code>
/// </summary>
internal static class PoolSessionCommand
{
    [ChildCommand("session", "[--create] POOL [CAPACITY] [MODE-OCTAL]")]
    internal static int Run(ChildContext ctx)
    {
        bool create = ctx.Arg(0) == "--create";
        int at = create ? 1 : 0;
        string name = ctx.Arg(at);
        BufferPool pool = create
            ? BufferPool.Create(name, int.Parse(ctx.ArgOr(at + 1, "1024"), CultureInfo.InvariantCulture), Convert.ToInt32(ctx.ArgOr(at + 2, "600"), 8))
            : BufferPool.Open(name);
        var guards = new Dictionary<string, BufferGuard>(StringComparer.Ordinal);
        int nextGuard = 0;
        string Keep(BufferGuard g)
        {
            string id = "g" + (++nextGuard).ToString(CultureInfo.InvariantCulture);
            guards[id] = g;
            return id;
        }

        using (pool)
        {
            ctx.Reply($"ready {Environment.ProcessId}");
            while (ctx.ReadInstruction() is { } line)
            {
                string[] w = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (w.Length == 0)
                {
                    continue;
                }

                if (w[0] == "exit")
                {
                    ctx.Reply("ok");
                    break;
                }

                try
                {
                    ctx.Reply(Execute(pool, w, guards, Keep));
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    ctx.Reply(ChildContext.DescribeError(e));
                }
            }
        }

        return 0;
    }

    private static string Execute(BufferPool pool, string[] w, Dictionary<string, BufferGuard> guards, Func<BufferGuard, string> keep)
    {
        int I(int k) => int.Parse(w[k], CultureInfo.InvariantCulture);
        long L(int k) => long.Parse(w[k], CultureInfo.InvariantCulture);
        BufferGuard G(int k) => guards.TryGetValue(w[k], out BufferGuard? g) ? g : throw new ArgumentException($"no guard '{w[k]}' in this session");
        switch (w[0])
        {
            case "acquire":
            {
                BufferGuard g = pool.AcquireCpu(L(1));
                return $"ok {keep(g)} {g.MetaIndex}";
            }

            case "tryacquire":
                return pool.TryAcquireCpu(L(1), TimeSpan.FromMilliseconds(I(2)), out BufferGuard? got) ? $"ok {keep(got)} {got.MetaIndex}" : "timeout";
            case "get":
                return $"ok {keep(pool.Get(I(1)))}";
            case "getmut":
                return $"ok {keep(pool.GetMut(I(1)))}";
            case "fill":
                BytePattern.Fill(G(1).Span, I(2));
                return "ok";
            case "verify":
            {
                long at = BytePattern.FirstMismatch(G(1).ReadOnlySpan, I(2));
                return at < 0 ? "ok" : $"mismatch {at}";
            }

            case "dispose":
                G(1).Dispose();
                return "ok";
            case "forget":
                G(1).Forget();
                return "ok";
            case "addref":
                return $"ok {pool.AddRef(I(1))}";
            case "release":
                return $"ok {pool.Release(I(1))}";
            case "set":
                pool.SetRefCount(I(1), I(2));
                return "ok";
            case "refcount":
                return $"ok {pool.RefCount(I(1))}";
            case "channel":
                pool.Channel(w[1], depth: 8).Dispose();
                return "ok";
            case "recover":
                return $"ok {pool.RecoverDeadProcesses()}";
            case "remove":
                return $"ok {BufferPool.Remove(pool.Name)}";
            default:
                throw new ArgumentException($"unknown instruction '{w[0]}'");
        }
    }
}
