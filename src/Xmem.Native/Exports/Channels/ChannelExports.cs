using System.Runtime.InteropServices;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Channel exports (xmem.h, "channels"): bounded queues of buffer references in shared memory. A send moves
/// the guard's reference into the channel (the guard handle is destroyed); a receive returns a new guard that owns
/// the reference it took out. The skeleton (<see cref="Export.OnChannel"/>) counts in the channel handle and the pool
/// handle, so that neither the channel's segment nor the pool is closed under a call in flight on another thread.
/// Fan-out subscriptions are in <see cref="SubscriptionExports"/>.</summary>
internal static unsafe class ChannelExports
{
    internal const int ModeQueue = 0, ModeFanOut = 1;
    internal const uint ReceiveWritable = 0x1;

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_channel")]
    internal static int PoolChannel(ulong pool, byte* name, int depth, int mode, ulong* outChannel) =>
        Export.OnPool(pool, new Open(name, depth, mode, outChannel));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_channel_close")]
    internal static int ChannelClose(ulong channel) => Export.Removing(HandleTables.Channels, "channel", channel, default(Close));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_channel_info")]
    internal static int ChannelInfo(ulong channel, ChannelInfoOut* outInfo) => Export.OnChannel(channel, new Info(outInfo));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_channel_send")]
    internal static int ChannelSend(ulong channel, ulong guard, long timeoutNs) => Export.OnChannel(channel, new Send(guard, timeoutNs));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_channel_receive")]
    internal static int ChannelReceive(ulong channel, long timeoutNs, uint flags, ulong* outGuard, BufferInfo* outInfo) =>
        Export.OnChannel(channel, new Receive(timeoutNs, flags, outGuard, outInfo));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_channel_set_spin")]
    internal static int ChannelSetSpin(ulong channel, long spinNs) => Export.OnChannel(channel, new SetSpin(spinNs));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_channel_subscribe")]
    internal static int ChannelSubscribe(ulong channel, ulong* outSubscription) =>
        Export.OnChannel(channel, new Subscribe(channel, outSubscription));

    private readonly struct Open(byte* name, int depth, int mode, ulong* outChannel) : IExportBody<PoolHandle>
    {
        public int Check()
        {
            int rc = Export.NotNull(name, "name", outChannel, "out_channel");
            return rc != 0 || mode is ModeQueue or ModeFanOut
                ? rc
                : LastError.Set(XmemStatus.InvalidArgument, $"channel mode {mode} is neither XMEM_CHANNEL_QUEUE (0) nor XMEM_CHANNEL_FANOUT (1).");
        }

        public int Run(PoolHandle p)
        {
            string n = Marshal.PtrToStringUTF8((nint)name)!;
            BufferChannel ch = p.Pool.Channel(n, depth, mode == ModeFanOut ? ChannelMode.FanOut : ChannelMode.Queue);
            try
            {
                *outChannel = HandleTables.Channels.Add(new ChannelHandle(ch, p));
            }
            catch
            {
                ch.Dispose();
                throw;
            }

            return 0;
        }
    }

    private readonly struct Close : IExportBody<ChannelHandle>
    {
        public int Check() => 0;

        public int Run(ChannelHandle c)
        {
            c.Exit(); // drops the table's count: closes now, or when the last call in flight (or subscription) ends
            return 0;
        }
    }

    private readonly struct Info(ChannelInfoOut* outInfo) : IExportBody<ChannelHandle>
    {
        public int Check() => Export.NotNull(outInfo, "out_info");

        public int Run(ChannelHandle c)
        {
            outInfo->Depth = c.Channel.Depth;
            outInfo->Mode = c.Channel.Mode == ChannelMode.FanOut ? ModeFanOut : ModeQueue;
            outInfo->Count = c.Channel.Count;
            outInfo->Reserved = 0;
            return 0;
        }
    }

    /// <summary>The handle's <see cref="BufferChannel.SpinDuration"/> (its subscriptions receive through it too).</summary>
    private readonly struct SetSpin(long spinNs) : IExportBody<ChannelHandle>
    {
        internal const long MaxSpinNs = 1_000_000_000;

        public int Check() => spinNs is >= 0 and <= MaxSpinNs
            ? 0
            : LastError.Set(XmemStatus.InvalidArgument, $"spin_ns is {spinNs}; it must be 0 (sleep at once) to {MaxSpinNs} (one second).");

        public int Run(ChannelHandle c)
        {
            c.Channel.SpinDuration = TimeSpan.FromTicks(spinNs / 100);
            return 0;
        }
    }

    /// <summary>The guard handle is looked up by <see cref="Check"/>, before the channel's.</summary>
    private struct Send(ulong guard, long timeoutNs) : IExportBody<ChannelHandle>
    {
        private GuardHandle _g;

        public int Check()
        {
            if (timeoutNs < -1)
            {
                return TimeoutRange(timeoutNs);
            }

            return HandleTables.Guards.TryGet(guard, out _g) ? 0 : LastError.InvalidHandle("guard", guard);
        }

        public readonly int Run(ChannelHandle c)
        {
            GuardHandle g = _g;
            if (!ReferenceEquals(g.Owner, c.Owner))
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"the guard on slot {g.Ref.Guard.MetaIndex} belongs to another pool handle than channel '{c.Channel.Name}'; send guards taken from the pool the channel was opened on.");
            }

            bool sent;
            try
            {
                if (timeoutNs < 0)
                {
                    c.Channel.Send(g.Ref);
                    sent = true;
                }
                else
                {
                    sent = c.Channel.TrySend(g.Ref, TimeSpan.FromTicks(timeoutNs / 100));
                }
            }
            finally
            {
                // The reference left the guard (sent, or given back by a send that failed after taking it): the
                // handle is spent. A send that never took the reference leaves the guard as it was.
                if (!g.Ref.IsValid)
                {
                    _ = HandleTables.Guards.TryRemove(guard, out _);
                }
            }

            if (!sent)
            {
                return timeoutNs == 0
                    ? LastError.Set(XmemStatus.WouldBlock, $"channel '{c.Channel.Name}' is full ({c.Channel.Depth} messages); the guard is still yours. Wait (timeout), or receive faster.")
                    : LastError.Set(XmemStatus.Timeout, $"channel '{c.Channel.Name}' stayed full for {timeoutNs / 1e9:0.###} s; the guard is still yours. Receive faster, wait longer, or open the channel with a larger depth.");
            }

            return 0;
        }
    }

    private readonly struct Receive(long timeoutNs, uint flags, ulong* outGuard, BufferInfo* outInfo) : IExportBody<ChannelHandle>
    {
        public int Check() => CheckReceive(timeoutNs, flags, outGuard);

        public int Run(ChannelHandle c)
        {
            try
            {
                bool writable = (flags & ReceiveWritable) != 0;
                BufferRef r;
                if (timeoutNs < 0)
                {
                    r = c.Channel.ReceiveRef(writable);
                }
                else if (!c.Channel.TryReceiveRef(TimeSpan.FromTicks(timeoutNs / 100), out r, writable))
                {
                    return NothingReceived(c.Channel.Name, timeoutNs);
                }

                return GuardHandles.Register(r, c.Owner, outGuard, outInfo);
            }
            catch (InvalidOperationException e)
            {
                return LastError.Set(XmemStatus.InvalidArgument, e.Message); // a fan-out channel: receive by subscription
            }
        }
    }

    private readonly struct Subscribe(ulong channel, ulong* outSubscription) : IExportBody<ChannelHandle>
    {
        public int Check() => Export.NotNull(outSubscription, "out_subscription");

        public int Run(ChannelHandle c)
        {
            ChannelSubscription sub;
            try
            {
                sub = c.Channel.Subscribe();
            }
            catch (InvalidOperationException e)
            {
                return LastError.Set(XmemStatus.InvalidArgument, e.Message); // a queue channel: receive from it directly
            }

            // The subscription keeps one use of the channel handle (given back when it closes): the ring it reads
            // lives in the channel's segment.
            if (!c.TryEnter())
            {
                sub.Dispose();
                return LastError.InvalidHandle("channel", channel);
            }

            try
            {
                *outSubscription = HandleTables.Subscriptions.Add(new SubscriptionHandle(sub, c));
            }
            catch
            {
                sub.Dispose();
                c.Exit();
                throw;
            }

            return 0;
        }
    }

    /// <summary>The checks of both receives (from a channel and from a subscription), before any handle.</summary>
    internal static int CheckReceive(long timeoutNs, uint flags, ulong* outGuard)
    {
        if (outGuard is null)
        {
            return LastError.NullArgument("out_guard");
        }

        if (timeoutNs < -1)
        {
            return TimeoutRange(timeoutNs);
        }

        if ((flags & ~ReceiveWritable) != 0)
        {
            return LastError.Set(XmemStatus.InvalidArgument, $"receive flags 0x{flags:x} are not XMEM_RECEIVE_WRITABLE.");
        }

        return 0;
    }

    internal static int NothingReceived(string name, long timeoutNs) =>
        timeoutNs == 0
            ? LastError.Set(XmemStatus.WouldBlock, $"channel '{name}' is empty.")
            : LastError.Set(XmemStatus.Timeout, $"nothing arrived in channel '{name}' within {timeoutNs / 1e9:0.###} s.");

    private static int TimeoutRange(long timeoutNs) =>
        LastError.Set(XmemStatus.InvalidArgument, $"timeout_ns is {timeoutNs}; use -1 (wait as long as it takes), 0 (do not wait) or a number of nanoseconds.");
}
