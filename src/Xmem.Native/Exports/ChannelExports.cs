using Xmem.Core;
using System.Runtime.InteropServices;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Channel exports (xmem.h, "channels"): bounded queues of buffer references in shared memory. A send moves
/// the guard's reference into the channel (the guard handle is destroyed); a receive returns a new guard that owns
/// the reference it took out. Every call enters the channel handle and the pool handle, so that neither the channel's
/// segment nor the pool is closed under a call in flight on another thread.</summary>
internal static unsafe class ChannelExports
{
    internal const int ModeQueue = 0, ModeFanOut = 1;
    internal const uint ReceiveWritable = 0x1;

    [UnmanagedCallersOnly(EntryPoint = "xmem_pool_channel")]
    internal static int PoolChannel(ulong pool, byte* name, int depth, int mode, ulong* outChannel)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (name is null)
        {
            return LastError.NullArgument("name");
        }

        if (outChannel is null)
        {
            return LastError.NullArgument("out_channel");
        }

        if (mode is not (ModeQueue or ModeFanOut))
        {
            return LastError.Set(XmemStatus.InvalidArgument, $"channel mode {mode} is neither XMEM_CHANNEL_QUEUE (0) nor XMEM_CHANNEL_FANOUT (1).");
        }

        PoolHandle? p = PoolExports.Enter(pool);
        if (p is null)
        {
            return LastError.InvalidHandle("pool", pool);
        }

        try
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
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            p.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_channel_close")]
    internal static int ChannelClose(ulong channel)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        ChannelHandle? c = HandleTables.Channels.Remove(channel);
        if (c is null)
        {
            return LastError.InvalidHandle("channel", channel);
        }

        c.Exit(); // drops the table's count: closes now, or when the last call in flight (or subscription) ends
        return 0;
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_channel_info")]
    internal static int ChannelInfo(ulong channel, ChannelInfoOut* outInfo)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outInfo is null)
        {
            return LastError.NullArgument("out_info");
        }

        ChannelHandle? c = EnterChannel(channel, out int rc);
        if (c is null)
        {
            return rc;
        }

        try
        {
            outInfo->Depth = c.Channel.Depth;
            outInfo->Mode = c.Channel.Mode == ChannelMode.FanOut ? ModeFanOut : ModeQueue;
            outInfo->Count = c.Channel.Count;
            outInfo->Reserved = 0;
            return 0;
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            ExitChannel(c);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_channel_send")]
    internal static int ChannelSend(ulong channel, ulong guard, long timeoutNs)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (timeoutNs < -1)
        {
            return LastError.Set(XmemStatus.InvalidArgument, $"timeout_ns is {timeoutNs}; use -1 (wait as long as it takes), 0 (do not wait) or a number of nanoseconds.");
        }

        GuardHandle? g = HandleTables.Guards.Get(guard);
        if (g is null)
        {
            return LastError.InvalidHandle("guard", guard);
        }

        ChannelHandle? c = EnterChannel(channel, out int rc);
        if (c is null)
        {
            return rc;
        }

        try
        {
            if (!ReferenceEquals(g.Owner, c.Owner))
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"the guard on slot {g.Guard.MetaIndex} belongs to another pool handle than channel '{c.Channel.Name}'; send guards taken from the pool the channel was opened on.");
            }

            bool sent;
            try
            {
                sent = timeoutNs < 0 ? Send(c.Channel, g.Guard) : c.Channel.TrySend(g.Guard, TimeSpan.FromTicks(timeoutNs / 100));
            }
            finally
            {
                // The reference left the guard (sent, or given back by a send that failed after taking it): the
                // handle is spent. A send that never took the reference leaves the guard as it was.
                if (!g.Guard.IsValid)
                {
                    _ = HandleTables.Guards.Remove(guard);
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
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            ExitChannel(c);
        }
    }

    private static bool Send(BufferChannel channel, BufferGuard guard)
    {
        channel.Send(guard);
        return true;
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_channel_receive")]
    internal static int ChannelReceive(ulong channel, long timeoutNs, uint flags, ulong* outGuard, BufferInfo* outInfo)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        int rc = CheckReceive(timeoutNs, flags, outGuard);
        if (rc != 0)
        {
            return rc;
        }

        ChannelHandle? c = EnterChannel(channel, out rc);
        if (c is null)
        {
            return rc;
        }

        try
        {
            bool writable = (flags & ReceiveWritable) != 0;
            BufferGuard? g = timeoutNs < 0
                ? c.Channel.Receive(writable)
                : c.Channel.TryReceive(TimeSpan.FromTicks(timeoutNs / 100), out BufferGuard? got, writable) ? got : null;
            return g is null ? NothingReceived(c.Channel.Name, timeoutNs) : PoolExports.RegisterGuard(g, c.Owner, outGuard, outInfo);
        }
        catch (InvalidOperationException e)
        {
            return LastError.Set(XmemStatus.InvalidArgument, e.Message); // a fan-out channel: receive by subscription
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            ExitChannel(c);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_channel_subscribe")]
    internal static int ChannelSubscribe(ulong channel, ulong* outSubscription)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        if (outSubscription is null)
        {
            return LastError.NullArgument("out_subscription");
        }

        ChannelHandle? c = EnterChannel(channel, out int rc);
        if (c is null)
        {
            return rc;
        }

        try
        {
            ChannelSubscription sub = c.Channel.Subscribe();
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
        catch (InvalidOperationException e)
        {
            return LastError.Set(XmemStatus.InvalidArgument, e.Message);
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            ExitChannel(c);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_subscription_receive")]
    internal static int SubscriptionReceive(ulong subscription, long timeoutNs, uint flags, ulong* outGuard, BufferInfo* outInfo)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        int rc = CheckReceive(timeoutNs, flags, outGuard);
        if (rc != 0)
        {
            return rc;
        }

        SubscriptionHandle? s = HandleTables.Subscriptions.Get(subscription);
        if (s is null || !s.TryEnter())
        {
            return LastError.InvalidHandle("subscription", subscription);
        }

        try
        {
            ChannelHandle c = s.Channel;
            if (!c.Owner.TryEnter())
            {
                return LastError.Set(XmemStatus.Disposed, $"the pool of channel '{c.Channel.Name}' was closed; open it again to receive.");
            }

            try
            {
                bool writable = (flags & ReceiveWritable) != 0;
                BufferGuard? g = timeoutNs < 0
                    ? s.Subscription.Receive(writable)
                    : s.Subscription.TryReceive(TimeSpan.FromTicks(timeoutNs / 100), out BufferGuard? got, writable) ? got : null;
                return g is null ? NothingReceived(c.Channel.Name, timeoutNs) : PoolExports.RegisterGuard(g, c.Owner, outGuard, outInfo);
            }
            finally
            {
                c.Owner.Exit();
            }
        }
        catch (Exception e)
        {
            return LastError.Fail(e);
        }
        finally
        {
            s.Exit();
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "xmem_subscription_close")]
    internal static int SubscriptionClose(ulong subscription)
    {
        using ForkGate.Scope fork = ForkGate.Enter();

        SubscriptionHandle? s = HandleTables.Subscriptions.Remove(subscription);
        if (s is null)
        {
            return LastError.InvalidHandle("subscription", subscription);
        }

        s.Exit(); // leaves the channel now, or when the last receive in flight returns
        return 0;
    }

    // ------------------------------------------------------------------ helpers

    private static int CheckReceive(long timeoutNs, uint flags, ulong* outGuard)
    {
        if (outGuard is null)
        {
            return LastError.NullArgument("out_guard");
        }

        if (timeoutNs < -1)
        {
            return LastError.Set(XmemStatus.InvalidArgument, $"timeout_ns is {timeoutNs}; use -1 (wait as long as it takes), 0 (do not wait) or a number of nanoseconds.");
        }

        if ((flags & ~ReceiveWritable) != 0)
        {
            return LastError.Set(XmemStatus.InvalidArgument, $"receive flags 0x{flags:x} are not XMEM_RECEIVE_WRITABLE.");
        }

        return 0;
    }

    private static int NothingReceived(string name, long timeoutNs) =>
        timeoutNs == 0
            ? LastError.Set(XmemStatus.WouldBlock, $"channel '{name}' is empty.")
            : LastError.Set(XmemStatus.Timeout, $"nothing arrived in channel '{name}' within {timeoutNs / 1e9:0.###} s.");

    /// <summary>The channel behind the handle with its pool, both counted in; null (and <paramref name="rc"/> set)
    /// when the handle is not live or the pool was closed.</summary>
    private static ChannelHandle? EnterChannel(ulong channel, out int rc)
    {
        ChannelHandle? c = HandleTables.Channels.Get(channel);
        if (c is null || !c.TryEnter())
        {
            rc = LastError.InvalidHandle("channel", channel);
            return null;
        }

        if (!c.Owner.TryEnter())
        {
            c.Exit();
            rc = LastError.Set(XmemStatus.Disposed, $"the pool of channel '{c.Channel.Name}' was closed; open the pool and the channel again.");
            return null;
        }

        rc = 0;
        return c;
    }

    private static void ExitChannel(ChannelHandle c)
    {
        c.Owner.Exit();
        c.Exit();
    }
}

/// <summary><c>xmem_channel_properties</c> in xmem.h (16 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct ChannelInfoOut
{
    [FieldOffset(0)] internal int Depth;
    [FieldOffset(4)] internal int Mode;
    [FieldOffset(8)] internal int Count;
    [FieldOffset(12)] internal uint Reserved;
}
