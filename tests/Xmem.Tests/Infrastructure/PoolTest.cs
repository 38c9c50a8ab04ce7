namespace Xmem.Tests.Infrastructure;

/// <summary>
/// Base of the tests that make pools: hands out unique names and, after each test, checks that every pool it named
/// left nothing in the shared-memory directory (then removes what was left, so one leak does not cascade).
/// </summary>
public abstract class PoolTest : IDisposable
{
    private readonly List<string> _names = [];

    /// <summary>A fresh unique pool name for this test.</summary>
    protected string NewName(string tag = "p")
    {
        string name = Shm.UniqueName(tag);
        _names.Add(name);
        return name;
    }

    /// <summary>Creates a pool under a fresh name.</summary>
    protected BufferPool NewPool(int capacity = 8, int mode = 0x180, string tag = "p") => BufferPool.Create(NewName(tag), capacity, mode);

    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>The leak check; a derived test disposes its own resources after it (in a finally).</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (!disposing)
        {
            return;
        }

        var leaks = new List<string>();
        foreach (string name in _names)
        {
            string[] left = Shm.EntriesOf(name);
            if (left.Length > 0)
            {
                leaks.AddRange(left);
                Shm.ForceRemove(name);
            }
        }

        if (leaks.Count > 0)
        {
            throw new Xunit.Sdk.XunitException($"the test left {leaks.Count} entries in {Shm.Directory}: {string.Join(", ", leaks)}");
        }
    }
}
