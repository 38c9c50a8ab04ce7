namespace Xmem.Tests.Infrastructure;

/// <summary>Checks of the whole suite, run after every other test (see <see cref="XmemTestFramework"/>).</summary>
public sealed class SuiteEndChecks
{
    [Fact]
    public void SuiteLeavesNoChildRunning_AndNothingInTheSharedMemoryDirectory()
    {
        // A child process still running could still make segments: stop those first (and report them).
        List<string> children = TestChild.KillForgottenChildren();

        // Finalizers of guards dropped without Dispose may still be pending: let them run first.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        string[] left = Shm.SuiteEntries();
        foreach (string f in left)
        {
            File.Delete(Path.Combine(Shm.Directory, f));
        }

        Assert.True(children.Count == 0, $"tests left {children.Count} test children running: {string.Join("; ", children)}");
        Assert.True(left.Length == 0, $"the suite left {left.Length} entries with its prefix '{Shm.SuitePrefix}' in {Shm.Directory}: {string.Join(", ", left)}");
    }
}
