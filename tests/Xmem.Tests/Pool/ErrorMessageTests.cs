using System.Reflection;
using System.Text.RegularExpressions;

namespace Xmem.Tests.Pool;

/// <summary>
/// The core's messages reach C# callers, C callers (xmem_last_error) and Python unchanged, so they name operations
/// ("wait for a free slot with a timeout", "open it by name"), never a member of the C# API (TryAcquireCpu,
/// BufferPool.Open, GetMut, Dispose): each failure below says what to do in words that read right in all three.
/// </summary>
public sealed partial class ErrorMessageTests : PoolTest
{
    [Fact]
    public void PoolFull_SaysToWaitForAFreeSlot()
    {
        using BufferPool pool = NewPool(capacity: 1);
        using BufferGuard held = pool.AcquireCpu(8);
        AssertMessage(Assert.Throws<PoolFullException>(() => pool.AcquireCpu(8)), "wait for a free slot with a timeout");
    }

    [Fact]
    public void MissingPool_SaysToCreateItFirst()
    {
        string name = NewName();
        AssertMessage(Assert.Throws<PoolNotFoundException>(() => BufferPool.Open(name)), "Create the pool first");
    }

    [Fact]
    public void ExistingPool_SaysToOpenItByName()
    {
        using BufferPool pool = NewPool();
        AssertMessage(Assert.Throws<PoolExistsException>(() => BufferPool.Create(pool.Name, 2)), "Open it by name instead");
    }

    [Fact]
    public void SlotNotLive_SaysToKeepAReference()
    {
        using BufferPool pool = NewPool();
        AssertMessage(Assert.Throws<SlotNotLiveException>(() => pool.Get(0)), "hold a guard, or add a reference (or set the count)");
    }

    [Fact]
    public void ReleasedGuard_SaysToGetTheSlotAgain()
    {
        using BufferPool pool = NewPool();
        BufferGuard g = pool.AcquireCpu(8);
        g.Dispose();
        AssertMessage(Assert.Throws<BufferGuardInvalidException>(g.Forget), "get the slot again for a new one");
    }

    [Fact]
    public void ReadOnlyGuard_SaysToGetTheSlotWritable()
    {
        using BufferPool pool = NewPool();
        using BufferGuard w = pool.AcquireCpu(8);
        using BufferGuard r = pool.Get(w.MetaIndex);
        AssertMessage(Assert.Throws<BufferReadOnlyException>(() => r.Span.Length), "get the slot writable for write access");
    }

    [Fact]
    public void ClosedPool_SaysToOpenItAgainByName()
    {
        BufferPool pool = NewPool();
        pool.Dispose();
        AssertMessage(Assert.Throws<ObjectDisposedException>(() => pool.AcquireCpu(8)), "the pool was closed; open it again by name");
    }

    [Fact]
    public void ReceiveFromAFanOutChannel_SaysToSubscribe()
    {
        using BufferPool pool = NewPool();
        using BufferChannel ch = pool.Channel("fan", 4, ChannelMode.FanOut);
        AssertMessage(Assert.Throws<InvalidOperationException>(() => ch.Receive()), "subscribe to it and receive through the subscription");
    }

    [Fact]
    public void CudaPointerOfACpuBuffer_SaysToUseTheCpuMemory()
    {
        using BufferPool pool = NewPool();
        using BufferGuard g = pool.AcquireCpu(8);
        AssertMessage(Assert.ThrowsAny<XmemException>(() => g.CudaPointer), "it has no CUDA device pointer");
    }

    [Fact]
    public void NegativeTimeout_SaysNonNegativeOrInfinite()
    {
        using BufferPool pool = NewPool();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => pool.TryAcquireCpu(8, TimeSpan.FromSeconds(-2), out _));
        AssertMessage(e, "the timeout must be non-negative, or infinite");
    }

    [Fact]
    public void EmptyTensorSpec_SaysToGiveATypeAndShape()
    {
        using BufferPool pool = NewPool();
        AssertMessage(Assert.ThrowsAny<ArgumentException>(() => pool.AcquireCpu(default(TensorSpec))), "give it an element type and a shape");
    }

    [Fact]
    public void TheMemberCheck_FindsTheMemberNamesTheOldMessagesHad()
    {
        foreach (string old in new[]
                 {
                     "wait with TryAcquireCpu/AcquireCpuAsync", "Open it with BufferPool.Open", "take a new one with Get/GetMut",
                     "use GetMut for write access", "detach some (Dispose)", "use CudaPointer, or CopyToCpu()",
                     "Use CpuPointer/Span", "(Subscribe())", "guard, AddRef or SetRefCount",
                 })
        {
            Assert.NotEmpty(CSharpMembersIn(old));
        }
    }

    /// <summary>The message has the operation's words, and no name of a public type or member of the C# API.</summary>
    private static void AssertMessage(Exception e, string words)
    {
        string m = e.Message;
        Assert.Contains(words, m, StringComparison.Ordinal);
        Assert.Empty(CSharpMembersIn(m));
    }

    /// <summary>The C# API names in <paramref name="message"/>: a type or member whose name has two or more words
    /// (GetMut, TryAcquireCpu, BufferPool) anywhere, and a one-word member (Get, Dispose, Span) where it reads as
    /// code: called, qualified or in parentheses.</summary>
    private static List<string> CSharpMembersIn(string message)
    {
        var found = new List<string>();
        foreach (string name in PublicNames.Value)
        {
            string n = Regex.Escape(name);
            string pattern = CompoundWord().IsMatch(name) ? $@"\b{n}\b" : $@"\b{n}\(|\.{n}\b|\({n}\)|/{n}\b|\b{n}/";
            if (Regex.IsMatch(message, pattern))
            {
                found.Add(name);
            }
        }

        return found;
    }

    private static readonly Lazy<HashSet<string>> PublicNames = new(() =>
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (Type t in typeof(BufferPool).Assembly.GetExportedTypes())
        {
            names.Add(t.Name.Split('`')[0]);
            foreach (MemberInfo m in t.GetMembers(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            {
                if (m is MethodInfo { IsSpecialName: true } || m.Name.StartsWith("op_", StringComparison.Ordinal) || m.Name == ".ctor")
                {
                    continue;
                }

                names.Add(m.Name);
            }
        }

        return names;
    });

    [GeneratedRegex(@"^[A-Z][a-z0-9]+[A-Z]")]
    private static partial Regex CompoundWord();
}
