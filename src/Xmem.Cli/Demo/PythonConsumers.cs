namespace Xmem.Cli.Demo;

/// <summary>Which consumers of <c>xmem demo</c> are Python processes.</summary>
internal enum PythonConsumers
{
    /// <summary>All are <c>xmem __consumer</c>.</summary>
    None,

    /// <summary>The last one is python/examples/consumer.py.</summary>
    One,

    /// <summary>All are python/examples/consumer.py.</summary>
    All,
}
