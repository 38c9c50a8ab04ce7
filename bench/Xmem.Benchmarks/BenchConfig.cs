using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Xmem.Benchmarks;

/// <summary>
/// The default BenchmarkDotNet configuration of this project: a short job (1 launch, 3 warm-ups, 7 iterations) run
/// in process, so that a run does not build a generated project and does not hold the shared 2-vCPU machine for
/// minutes. Pass <c>--job default</c> (or any other BenchmarkDotNet job option) for a longer, more careful run.
/// </summary>
internal static class BenchConfig
{
    internal static IConfig Create(bool userChoseJob)
    {
        ManualConfig config = ManualConfig.Create(DefaultConfig.Instance)
            .AddDiagnoser(MemoryDiagnoser.Default);
        if (!userChoseJob)
        {
            _ = config.AddJob(Job.Default
                .WithToolchain(InProcessEmitToolchain.Instance)
                .WithLaunchCount(1)
                .WithWarmupCount(3)
                .WithIterationCount(7)
                .WithId("short-inproc"));
        }

        return config;
    }
}
