using System.Reflection;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: Xunit.TestFramework("Xmem.Tests.Infrastructure.XmemTestFramework", "Xmem.Tests")]

namespace Xmem.Tests.Infrastructure;

/// <summary>
/// xunit's own framework, except that the tests of <see cref="SuiteEndChecks"/> run after every other test of the
/// assembly has finished: they are the assembly-level checks (nothing left in the shared-memory directory).
/// </summary>
public sealed class XmemTestFramework : XunitTestFramework
{
    public XmemTestFramework(IMessageSink messageSink)
        : base(messageSink)
    {
        // The stale-pool sweep (a process's first Create/Open removes pools with no live process) is off in the test
        // host and so in the children it starts, which inherit its environment: tests of `xmem gc`, RemoveIfStale
        // and Create-replaces-a-stale-pool look at a stale pool before it is removed, and a sweep run meanwhile by
        // another test's process would remove it under them. StalePoolSweepTests turn it on in their children.
        Environment.SetEnvironmentVariable("XMEM_STALE_SWEEP", "0");
    }

    protected override ITestFrameworkExecutor CreateExecutor(AssemblyName assemblyName) =>
        new Executor(assemblyName, SourceInformationProvider, DiagnosticMessageSink);

    private sealed class Executor(AssemblyName assemblyName, ISourceInformationProvider sourceInformationProvider, IMessageSink diagnosticMessageSink)
        : XunitTestFrameworkExecutor(assemblyName, sourceInformationProvider, diagnosticMessageSink)
    {
        protected override async void RunTestCases(IEnumerable<IXunitTestCase> testCases, IMessageSink executionMessageSink, ITestFrameworkExecutionOptions executionOptions)
        {
            using var runner = new LastChecksRunner(TestAssembly, testCases, DiagnosticMessageSink, executionMessageSink, executionOptions);
            await runner.RunAsync();
        }
    }

    private sealed class LastChecksRunner(ITestAssembly testAssembly, IEnumerable<IXunitTestCase> testCases, IMessageSink diagnosticMessageSink, IMessageSink executionMessageSink, ITestFrameworkExecutionOptions executionOptions)
        : XunitTestAssemblyRunner(testAssembly, testCases, diagnosticMessageSink, executionMessageSink, executionOptions)
    {
        protected override async Task<RunSummary> RunTestCollectionsAsync(IMessageBus messageBus, CancellationTokenSource cancellationTokenSource)
        {
            List<IXunitTestCase> all = TestCases.ToList();
            List<IXunitTestCase> last = all.Where(IsEndCheck).ToList();
            if (last.Count == 0)
            {
                return await base.RunTestCollectionsAsync(messageBus, cancellationTokenSource);
            }

            try
            {
                TestCases = all.Where(t => !IsEndCheck(t)).ToList();
                RunSummary summary = TestCases.Any() ? await base.RunTestCollectionsAsync(messageBus, cancellationTokenSource) : new RunSummary();
                TestCases = last;
                summary.Aggregate(await base.RunTestCollectionsAsync(messageBus, cancellationTokenSource));
                return summary;
            }
            finally
            {
                TestCases = all;
            }
        }

        private static bool IsEndCheck(IXunitTestCase t) => t.TestMethod.TestClass.Class.Name == typeof(SuiteEndChecks).FullName;
    }
}
