using System.Globalization;

namespace Xmem.Tests.Cuda;

/// <summary>
/// Base of the tests that drive the strict stand-in driver (tests/cuda-standin) from real processes: one stand-in
/// per test (its own registry directory and violation log), the <c>cuda-session</c> test children it starts (an
/// exporter that creates the pool, importers that open it), and the few instructions every such test sends them.
/// Children are disposed, then the pool leak check runs, then the stand-in's directory goes.
/// </summary>
public abstract class StandInSessionTest : PoolTest
{
    /// <summary>The buffer size the tests acquire: 3 MiB, so the allocation is two 2 MiB units (4 MiB).</summary>
    private protected const int Size = 3 << 20;

    private readonly List<TestChild> _children = [];

    /// <summary>A stand-in that supports VMM (cuMemCreate, POSIX descriptors) when <paramref name="vmm"/>.</summary>
    protected StandInSessionTest(bool vmm = false) => Driver = new CudaStandIn(vmm: vmm);

    /// <summary>This test's stand-in driver.</summary>
    private protected CudaStandIn Driver { get; }

    /// <summary>A session child that creates pool <paramref name="name"/> (the exporter), on <paramref name="driver"/>
    /// (default: this test's).</summary>
    private protected TestChild Exporter(string name, int capacity = 4, CudaStandIn? driver = null) =>
        Keep((driver ?? Driver).Session("--create", name, capacity.ToString(CultureInfo.InvariantCulture)));

    /// <summary>A session child that opens pool <paramref name="name"/> (an importer).</summary>
    private protected TestChild Importer(string name, CudaStandIn? driver = null) => Keep((driver ?? Driver).Session(name));

    /// <summary>Keeps <paramref name="c"/> for disposal at the end of the test.</summary>
    private protected TestChild Keep(TestChild c)
    {
        _children.Add(c);
        return c;
    }

    /// <summary>Acquires a CUDA buffer in <paramref name="c"/>: its guard's name there and its slot.</summary>
    private protected static (string Guard, int Index) Acquire(TestChild c, long size = Size, int device = 0)
    {
        string[] w = c.AskOk($"acquire {size} {device}").Split(' ');
        return (w[0], int.Parse(w[1], CultureInfo.InvariantCulture));
    }

    /// <summary>Ends <paramref name="c"/> cleanly (it closes its pool) and checks its exit status.</summary>
    private protected static void Exit(TestChild c)
    {
        _ = c.AskOk("exit");
        Assert.Equal(0, c.WaitForExit());
    }

    protected override void Dispose(bool disposing)
    {
        try
        {
            foreach (TestChild c in _children)
            {
                c.Dispose();
            }

            base.Dispose(disposing);
        }
        finally
        {
            Driver.Dispose();
        }
    }
}
