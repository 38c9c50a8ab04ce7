using System.Reflection;

namespace Xmem.Tests.Infrastructure;

/// <summary>Where the repository and the built helper programs are (recorded at build time, see the csproj).</summary>
internal static class BuildPaths
{
    private static string Metadata(string key) =>
        typeof(BuildPaths).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value
        ?? throw new InvalidOperationException($"assembly metadata {key} is empty");

    /// <summary>The repository root.</summary>
    public static string RepoRoot => Metadata("XmemRepoRoot");

    /// <summary>The build configuration the tests were built with (Debug, Release).</summary>
    public static string Configuration => Metadata("XmemConfiguration");

    /// <summary>The output folder of project <paramref name="projectDir"/> (relative to the repository root) built
    /// with the same configuration and framework as the tests.</summary>
    public static string OutputOf(string projectDir) =>
        Path.Combine(RepoRoot, projectDir, "bin", Configuration, Metadata("XmemTargetFramework"));

    /// <summary>The test child's entry assembly.</summary>
    public static string TestChildDll => Path.Combine(OutputOf("tests/Xmem.TestChild"), "Xmem.TestChild.dll");

    /// <summary>The dotnet host that runs the tests (so children run on the same runtime).</summary>
    public static string DotnetHost
    {
        get
        {
            string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(host) && File.Exists(host))
            {
                return host;
            }

            string? self = Environment.ProcessPath;
            return self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";
        }
    }
}
