namespace Xmem.Cli;

/// <summary>The CLI's exit statuses (docs/cli.md). An interrupted demo exits with 128 + the signal number, as shells do.</summary>
internal static class ExitCodes
{
    internal const int Ok = 0;
    internal const int Error = 1;
    internal const int Usage = 2;
}
