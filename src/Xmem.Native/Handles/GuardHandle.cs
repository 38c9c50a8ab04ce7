namespace Xmem.Native.Handles;

/// <summary>A guard behind a C handle, with the pool handle it came from (to order its release against a close).</summary>
internal sealed class GuardHandle(BufferGuard guard, PoolHandle owner)
{
    internal BufferGuard Guard { get; } = guard;

    internal PoolHandle Owner { get; } = owner;
}
