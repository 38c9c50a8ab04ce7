using System.Globalization;

namespace Xmem.TestChild.Commands;

/// <summary>
/// <c>robust-fuzz</c>: the API-calling side of the corrupt-segment fuzz test
/// (tests/Xmem.Tests/Robustness/CorruptSegmentFuzzTests.cs). Reads one line per damaged pool, <c>NAME SEED</c>, and for
/// each replies <c>begin NAME</c>, runs a script of API calls drawn from SEED against it (Open, Get, GetMut and reads
/// and writes of the bytes, AcquireCpu, TryAcquireCpu, AddRef, Release, SetRefCount, RefCount, descriptions,
/// Forget, Dispose, Trim, RecoverDeadProcesses, Dispose of the pool, RemoveIfStale), and replies
/// <c>end NAME opened=0|1 calls=N refused=N</c>; before each call it replies <c>call WHAT</c>. A call may fail only with xmem's own exceptions
/// (<see cref="IXmemError"/>), <see cref="ArgumentException"/> or <see cref="ObjectDisposedException"/>; any other
/// is replied as <c>bad NAME CALL TYPE: MESSAGE</c> (stack trace on stderr). A crash (a signal) or a hang is seen by
/// the test as the end of this process, or as silence. Exits 0 at the end of stdin.
/// </summary>
internal static class RobustFuzzCommand
{
    private const int ScriptLength = 24;

    [ChildCommand("robust-fuzz", "(NAME SEED lines on stdin)")]
    internal static int Run(ChildContext ctx)
    {
        while (ctx.ReadInstruction() is { } line)
        {
            string[] w = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (w.Length != 2)
            {
                continue;
            }

            ctx.Reply($"begin {w[0]}");
            var run = new Script(ctx, w[0], new Random(int.Parse(w[1], CultureInfo.InvariantCulture)));
            run.Execute();
            ctx.Reply(string.Create(CultureInfo.InvariantCulture, $"end {w[0]} opened={(run.Opened ? 1 : 0)} calls={run.Calls} refused={run.Refused}"));
        }

        return 0;
    }

    private sealed class Script(ChildContext ctx, string name, Random rng)
    {
        private readonly List<BufferGuard> _guards = [];
        private BufferPool? _pool;
        private bool _stop;

        public bool Opened { get; private set; }

        public int Calls { get; private set; }

        public int Refused { get; private set; }

        public void Execute()
        {
            _pool = Call("Open", () => BufferPool.Open(name));
            if (_pool is not null)
            {
                Opened = true;
                for (int i = 0; i < ScriptLength && !_stop; i++)
                {
                    OneCall(_pool);
                }

                foreach (BufferGuard g in _guards)
                {
                    _ = Call("guard.Dispose", () => { g.Dispose(); return true; });
                }

                _ = Call("pool.Dispose", () => { _pool.Dispose(); return true; });
            }

            _ = Call("RemoveIfStale", () => BufferPool.RemoveIfStale(name));
        }

        private int AnyIndex(BufferPool pool) => rng.Next(8) switch
        {
            0 => -1,
            1 => pool.Capacity,
            2 => int.MaxValue,
            _ => rng.Next(pool.Capacity),
        };

        private long AnySize() => rng.Next(6) switch
        {
            0 => 1,
            1 => rng.Next(1, 4097),
            2 => rng.Next(4097, 40_000),
            3 => 1L << 20,
            4 => 1L << 62,
            _ => rng.Next(16, 200),
        };

        private BufferGuard? AnyGuard() => _guards.Count == 0 ? null : _guards[rng.Next(_guards.Count)];

        private void OneCall(BufferPool pool)
        {
            switch (rng.Next(16))
            {
                case 0 or 1 or 2:
                {
                    int i = AnyIndex(pool);
                    bool writable = rng.Next(2) == 0;
                    BufferGuard? g = Call(writable ? "GetMut" : "Get", () => writable ? pool.GetMut(i) : pool.Get(i));
                    Touch(g);
                    break;
                }

                case 3 or 4:
                {
                    long size = AnySize();
                    Touch(Call("AcquireCpu", () => pool.AcquireCpu(size)));
                    break;
                }

                case 5:
                {
                    long size = AnySize();
                    Touch(Call("TryAcquireCpu", () => pool.TryAcquireCpu(size, TimeSpan.FromMilliseconds(5), out BufferGuard? g) ? g : null));
                    break;
                }

                case 6:
                {
                    int i = AnyIndex(pool);
                    _ = Call("AddRef", () => pool.AddRef(i));
                    break;
                }

                case 7:
                {
                    int i = AnyIndex(pool);
                    _ = Call("Release", () => pool.Release(i));
                    break;
                }

                case 8:
                {
                    int i = AnyIndex(pool), c = rng.Next(3);
                    _ = Call("SetRefCount", () => { pool.SetRefCount(i, c); return true; });
                    break;
                }

                case 9:
                {
                    int i = AnyIndex(pool);
                    _ = Call("RefCount", () => pool.RefCount(i));
                    break;
                }

                case 10:
                    _ = Call("Trim", pool.Trim);
                    break;
                case 11:
                    _ = Call("RecoverDeadProcesses", pool.RecoverDeadProcesses);
                    break;
                case 12:
                    if (AnyGuard() is { } f)
                    {
                        _ = Call("guard.Forget", () => { f.Forget(); return true; });
                    }

                    break;
                case 13:
                    if (AnyGuard() is { } d)
                    {
                        _ = Call("guard.Description", () => d.Description?.ToString() ?? "none");
                    }

                    break;
                default:
                    if (AnyGuard() is { } g2)
                    {
                        _ = Call("guard.Dispose", () => { g2.Dispose(); return true; });
                    }

                    break;
            }
        }

        /// <summary>Reads (and, when writable, writes) the first and last byte of a guard's buffer, and keeps it.</summary>
        private void Touch(BufferGuard? g)
        {
            if (g is null)
            {
                return;
            }

            _guards.Add(g);
            _ = Call("guard.ReadOnlySpan", () =>
            {
                ReadOnlySpan<byte> r = g.ReadOnlySpan;
                return r[0] + r[^1];
            });
            _ = Call("guard.Description", () => g.Description?.ToString() ?? "none");
            _ = Call("guard.Tensor", () => g.Tensor?.RequiredBytes ?? 0);
            if (!g.IsReadOnly)
            {
                _ = Call("guard.Span", () =>
                {
                    Span<byte> s = g.Span;
                    s[0] = 0x5A;
                    s[^1] = 0xA5;
                    return true;
                });
            }
        }

        /// <summary>Runs one call; a refusal by xmem is counted, anything else is reported. A timeout (a lock held by
        /// a live process, which may be this one under a forged tag) ends the script: every later call on the slot
        /// would wait the same 5 s.</summary>
        private T? Call<T>(string what, Func<T> call)
        {
            Calls++;
            ctx.Reply($"call {what}"); // so that a hang names its call
            try
            {
                return call();
            }
            catch (Exception e) when (e is IXmemError or ArgumentException or ObjectDisposedException)
            {
                Refused++;
                _stop |= e is XmemTimeoutException;
                return default;
            }
            catch (Exception e)
            {
                ctx.Reply($"bad {name} {what} {ChildContext.DescribeError(e)}");
                Console.Error.WriteLine($"{name} {what}: {e}");
                return default;
            }
        }
    }
}
