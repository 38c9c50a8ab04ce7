using System.Runtime.ExceptionServices;

namespace Xmem.Tests.Infrastructure;

/// <summary>A blocking call run on its own thread (a futex wait must not sit on a pool thread), joined with a
/// watchdog.</summary>
internal sealed class BackgroundCall<T>
{
    private readonly Thread _thread;
    private T? _result;
    private ExceptionDispatchInfo? _error;

    public BackgroundCall(Func<T> call)
    {
        _thread = new Thread(() =>
        {
            try
            {
                _result = call();
            }
            catch (Exception e)
            {
                _error = ExceptionDispatchInfo.Capture(e);
            }
        })
        { IsBackground = true, Name = "test-background-call" };
        _thread.Start();
    }

    /// <summary>Waits for the call (fails the test after the watchdog) and returns its result or rethrows.</summary>
    public T Join(TimeSpan? watchdog = null)
    {
        TimeSpan limit = watchdog ?? TestChild.Watchdog;
        if (!_thread.Join(limit))
        {
            throw new TimeoutException($"watchdog: the background call did not return within {limit.TotalSeconds:0} s");
        }

        _error?.Throw();
        return _result!;
    }
}
