using System.Globalization;

namespace Xmem.TestChild.Commands;

/// <summary>
/// The child side of the full-/dev/shm test (tests/Xmem.Tests/Robustness/FullSharedMemoryTests.cs). Both commands
/// point xmem at DIR (a small tmpfs) by setting <c>XMEM_SHM_DIR</c> in this process only.
/// </summary>
internal static class RobustFullShmCommands
{
    private const int Page = 4096;

    /// <summary>
    /// <c>robust-fillshm DIR POOL</c>: creates the pool in DIR and acquires buffers (1 MiB, then 64 KiB, then 4 KiB)
    /// until an acquire fails, writing every page of every buffer it gets (a page the file system cannot back would be
    /// a SIGBUS here). Replies <c>full acquired=N bytes=B error=TYPE</c> (TYPE: the first failure's type) and waits for
    /// a line. Then: a second attach of the same pool from this process (<c>reattach=ok|TYPE</c>), all buffers
    /// released, the same buffers acquired again in the memory they kept, Trim, and one buffer of a quarter of what
    /// was had before (<c>usable reacquired=N big=ok|TYPE</c>). Detaches (removing the pool) and replies <c>done</c>.
    /// </summary>
    [ChildCommand("robust-fillshm", "DIR POOL")]
    internal static int Fill(ChildContext ctx)
    {
        Environment.SetEnvironmentVariable("XMEM_SHM_DIR", ctx.Arg(0));
        string name = ctx.Arg(1);
        using BufferPool pool = BufferPool.Create(name, capacity: 512);
        var guards = new List<BufferGuard>();
        long bytes = 0;
        string error = "none";
        foreach (long size in new long[] { 1 << 20, 64 << 10, Page })
        {
            while (true)
            {
                try
                {
                    BufferGuard g = pool.AcquireCpu(size);
                    TouchEveryPage(g);
                    guards.Add(g);
                    bytes += size;
                }
                catch (Exception e)
                {
                    if (error == "none")
                    {
                        error = e.GetType().FullName!;
                    }

                    if (e is not XmemOutOfMemoryException)
                    {
                        Console.Error.WriteLine(e);
                    }

                    break;
                }
            }
        }

        ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"full acquired={guards.Count} bytes={bytes} error={error}"));
        _ = ctx.ReadInstruction();

        string reattach;
        try
        {
            using BufferPool second = BufferPool.Open(name);
            reattach = "ok";
        }
        catch (Exception e) when (e is IXmemError)
        {
            reattach = e.GetType().FullName!;
        }

        long[] sizes = [.. guards.Select(g => g.Size)];
        guards.ForEach(g => g.Dispose());
        guards.Clear();
        int reacquired = 0;
        foreach (long size in sizes)
        {
            BufferGuard g = pool.AcquireCpu(size); // fits in the memory its slot kept: no new page needed
            TouchEveryPage(g);
            guards.Add(g);
            reacquired++;
        }

        guards.ForEach(g => g.Dispose());
        _ = pool.Trim();
        string big;
        try
        {
            using BufferGuard g = pool.AcquireCpu(bytes / 4 / Page * Page);
            TouchEveryPage(g);
            big = "ok";
        }
        catch (Exception e) when (e is IXmemError)
        {
            big = e.GetType().FullName!;
        }

        ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"usable reattach={reattach} reacquired={reacquired} big={big}"));
        pool.Dispose();
        ctx.Reply("done");
        return 0;
    }

    /// <summary>
    /// <c>robust-shmprobe DIR POOL</c>: while another process holds the pool's file system full, attaches and tries
    /// to acquire one page. Replies <c>open=ok|TYPE acquire=ok|TYPE|-</c> and detaches.
    /// </summary>
    [ChildCommand("robust-shmprobe", "DIR POOL")]
    internal static int Probe(ChildContext ctx)
    {
        Environment.SetEnvironmentVariable("XMEM_SHM_DIR", ctx.Arg(0));
        string open, acquire = "-";
        BufferPool? pool = null;
        try
        {
            pool = BufferPool.Open(ctx.Arg(1));
            open = "ok";
        }
        catch (Exception e) when (e is IXmemError)
        {
            open = e.GetType().FullName!;
        }

        if (pool is not null)
        {
            try
            {
                using BufferGuard g = pool.AcquireCpu(Page);
                TouchEveryPage(g);
                acquire = "ok";
            }
            catch (Exception e) when (e is IXmemError)
            {
                acquire = e.GetType().FullName!;
            }

            pool.Dispose();
        }

        ctx.Reply($"open={open} acquire={acquire}");
        return 0;
    }

    private static void TouchEveryPage(BufferGuard g)
    {
        Span<byte> s = g.Span;
        for (int i = 0; i < s.Length; i += Page)
        {
            s[i] = 1;
        }

        s[^1] = 1;
    }
}
