using System.Diagnostics;

namespace Xmem.Cli.Demo;

/// <summary>Starts a demo consumer written in Python: <c>python/examples/consumer.py</c> of this source checkout, run
/// by <c>/usr/bin/python3</c> with <c>XMEM_LIBRARY</c> pointing at the built <c>artifacts/native/libxmem.so</c> (and the
/// package from <c>python/</c>), or, when that is not built, by the Python of a venv that has the xmem wheel
/// installed (<c>.venv</c>, <c>artifacts/venv-python</c>).</summary>
internal sealed class PythonConsumer
{
    private const string Script = "python/examples/consumer.py";
    private const string SystemPython = "/usr/bin/python3";

    private PythonConsumer(string interpreter, string script, string? library, string? packageDir)
    {
        Interpreter = interpreter;
        ScriptPath = script;
        Library = library;
        PackageDirectory = packageDir;
    }

    /// <summary>The Python that runs the consumer.</summary>
    internal string Interpreter { get; }

    /// <summary>consumer.py.</summary>
    internal string ScriptPath { get; }

    /// <summary>XMEM_LIBRARY for the consumer, or null (the venv's installed package finds its own).</summary>
    internal string? Library { get; }

    /// <summary>PYTHONPATH for the consumer (the source package), or null.</summary>
    internal string? PackageDirectory { get; }

    /// <summary>What runs the consumer, for the header line.</summary>
    internal string Describe() => Library is null ? $"{Interpreter} (installed xmem wheel)" : $"{Interpreter}, XMEM_LIBRARY={Library}";

    /// <summary>Finds consumer.py, a Python and the native library. Throws with one line that says what to do.</summary>
    internal static PythonConsumer Locate()
    {
        string root = FindCheckout()
            ?? throw new InvalidOperationException($"--python needs {Script} of an xmem source checkout, and no checkout was found above {AppContext.BaseDirectory}; run xmem from the checkout (./xmem demo --python).");
        string script = Path.Combine(root, Script);
        PythonConsumer found = FindPython(root, script);
        return File.Exists(script)
            ? found
            : throw new InvalidOperationException($"--python needs {script}, which is missing; update the checkout.");
    }

    /// <summary>XMEM_LIBRARY when set, else the built library with /usr/bin/python3, else a venv with the wheel.</summary>
    private static PythonConsumer FindPython(string root, string script)
    {
        string packageDir = Path.Combine(root, "python");
        if (Environment.GetEnvironmentVariable("XMEM_LIBRARY") is { Length: > 0 } explicitLibrary)
        {
            return File.Exists(explicitLibrary)
                ? new PythonConsumer(SystemPython, script, Path.GetFullPath(explicitLibrary), packageDir)
                : throw new InvalidOperationException($"XMEM_LIBRARY is '{explicitLibrary}', which does not exist: run scripts/build-native.sh (it builds artifacts/native/libxmem.so) or unset XMEM_LIBRARY.");
        }

        string built = Path.Combine(root, "artifacts", "native", "libxmem.so");
        if (File.Exists(built))
        {
            return File.Exists(SystemPython)
                ? new PythonConsumer(SystemPython, script, built, packageDir)
                : throw new InvalidOperationException($"--python runs the consumer with {SystemPython}, which is missing; install Python 3 with numpy (scripts/install-deps.sh).");
        }

        foreach (string venv in new[] { ".venv", "artifacts/venv-python" })
        {
            string python = Path.Combine(root, venv, "bin", "python");
            string lib = Path.Combine(root, venv, "lib");
            if (File.Exists(python) && Directory.Exists(lib)
                && Directory.EnumerateFiles(lib, "libxmem.so", SearchOption.AllDirectories).Any(p => p.Contains("site-packages", StringComparison.Ordinal)))
            {
                return new PythonConsumer(python, script, null, null);
            }
        }

        throw new InvalidOperationException("--python needs the native library, which is not built: run scripts/build-native.sh (it builds artifacts/native/libxmem.so).");
    }

    /// <summary>The start info of consumer <paramref name="index"/>: stdin and stdout piped, stderr shared.</summary>
    internal ProcessStartInfo StartInfo(string pool, int depth, bool fanOut, int index)
    {
        var psi = new ProcessStartInfo
        {
            FileName = Interpreter,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = false,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-u"); // unbuffered stdout: the producer reads the protocol lines as they come
        psi.ArgumentList.Add(ScriptPath);
        foreach (string a in ConsumerArguments(pool, depth, fanOut, index))
        {
            psi.ArgumentList.Add(a);
        }

        if (Library is not null)
        {
            psi.Environment["XMEM_LIBRARY"] = Library;
        }

        if (PackageDirectory is not null)
        {
            string? existing = Environment.GetEnvironmentVariable("PYTHONPATH");
            psi.Environment["PYTHONPATH"] = string.IsNullOrEmpty(existing) ? PackageDirectory : PackageDirectory + Path.PathSeparator + existing;
        }

        return psi;
    }

    /// <summary>The command line consumer.py takes in the demo.</summary>
    private static IEnumerable<string> ConsumerArguments(string pool, int depth, bool fanOut, int index)
    {
        yield return "--demo";
        yield return pool;
        yield return "--channel";
        yield return DemoProtocol.ChannelName;
        yield return "--depth";
        yield return depth.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (fanOut)
        {
            yield return "--fanout";
        }

        _ = index;
    }

    /// <summary>The source checkout this program was built from: the first directory above it with xmem.slnx.</summary>
    private static string? FindCheckout()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "xmem.slnx")))
            {
                return d.FullName;
            }
        }

        return null;
    }
}
