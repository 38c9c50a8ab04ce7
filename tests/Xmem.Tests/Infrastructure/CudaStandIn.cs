using System.Diagnostics;

namespace Xmem.Tests.Infrastructure;

/// <summary>
/// One run of the strict stand-in driver (tests/cuda-standin: a contract checker, not a GPU): a fresh directory for
/// its registry and device memory, a violation log, and the environment that makes a child process load it
/// (<c>XMEM_LIBCUDA</c>). The library is built (tests/cuda-standin/build.sh, gcc) on first use. Dispose removes the
/// directory; <see cref="Violations"/> is what a test asserts empty.
/// </summary>
internal sealed class CudaStandIn : IDisposable
{
    private static readonly Lazy<string> s_library = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <param name="vmm">Whether the stand-in's devices report VMM with POSIX file descriptor handles
    /// (XMEM_CUDA_STANDIN_VMM): then xmem allocates with cuMemCreate and shares by file descriptor.</param>
    /// <param name="vmmSymbols">False: the variant library without the VMM entry points (a driver that predates
    /// VMM).</param>
    public CudaStandIn(int devices = 2, int deviceMiB = 256, bool vmm = false, bool vmmSymbols = true)
    {
        Library = vmmSymbols ? s_library.Value : Path.Combine(Path.GetDirectoryName(s_library.Value)!, "no-vmm", "libcuda.so.1");
        Directory = System.IO.Directory.CreateTempSubdirectory("xmem-cuda-standin.").FullName;
        LogPath = Path.Combine(Directory, "violations.log");
        Environment = new Dictionary<string, string?>
        {
            ["XMEM_LIBCUDA"] = Library,
            ["XMEM_CUDA_STANDIN_DIR"] = Directory,
            ["XMEM_CUDA_STANDIN_LOG"] = LogPath,
            ["XMEM_CUDA_STANDIN_DEVICES"] = devices.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["XMEM_CUDA_STANDIN_DEVICE_MIB"] = deviceMiB.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["XMEM_CUDA_STANDIN_VMM"] = vmm ? "1" : "0",
        };
    }

    /// <summary>The stand-in libcuda.so.1.</summary>
    public string Library { get; }

    /// <summary>The registry and device-memory directory of this run.</summary>
    public string Directory { get; }

    /// <summary>The violation log (absent or empty: no rule was broken).</summary>
    public string LogPath { get; }

    /// <summary>What a child needs in its environment to use this run's stand-in.</summary>
    public IReadOnlyDictionary<string, string?> Environment { get; }

    /// <summary>The violations logged so far, one per line.</summary>
    public string[] Violations() => File.Exists(LogPath) ? File.ReadAllLines(LogPath) : [];

    /// <summary>Starts a <c>cuda-session</c> test child on this stand-in.</summary>
    public TestChild Session(params string[] args)
    {
        TestChild c = TestChild.Start("cuda-session", args, environment: Environment);
        _ = c.Expect("ready");
        return c;
    }

    /// <summary>Fails with every logged violation unless there is none.</summary>
    public void AssertNoViolations()
    {
        string[] v = Violations();
        Assert.True(v.Length == 0, $"the stand-in CUDA driver logged {v.Length} violation(s):\n{string.Join('\n', v)}");
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static string Build()
    {
        string script = Path.Combine(BuildPaths.RepoRoot, "tests", "cuda-standin", "build.sh");
        var psi = new ProcessStartInfo(script) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using Process p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        _ = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(120_000) || p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{script} failed (gcc is installed by scripts/install-deps.sh): {err}");
        }

        return Path.Combine(BuildPaths.RepoRoot, "artifacts", "cuda-standin", "libcuda.so.1");
    }
}
