namespace Xmem.Tests.Pool;

/// <summary>
/// The core's argument errors carry their own status (<see cref="IXmemError"/>), so that every layer above it — the
/// C ABI, Python — reports the cause the core found without re-checking the argument or guessing from a parameter
/// name; and they stay the .NET exception types a C# caller already catches.
/// </summary>
public sealed class ErrorStatusTests : PoolTest
{
    public static TheoryData<string> InvalidNames => PoolNamingTests.InvalidNames;

    [Theory]
    [MemberData(nameof(InvalidNames))]
    public void InvalidPoolName_CarriesInvalidNameStatus_AndIsAnArgumentException(string name)
    {
        foreach (Action call in new Action[]
                 {
                     () => BufferPool.Create(name, 1).Dispose(),
                     () => BufferPool.Open(name).Dispose(),
                     () => BufferPool.Remove(name),
                     () => BufferPool.Exists(name),
                     () => BufferPool.RemoveIfStale(name),
                 })
        {
            var e = Assert.ThrowsAny<ArgumentException>(call);
            Assert.IsNotType<ArgumentNullException>(e);
            var x = Assert.IsAssignableFrom<IXmemError>(e);
            Assert.Equal(XmemStatus.InvalidName, x.Status);
            Assert.Equal(0, x.NativeError);
            Assert.Contains("pool name", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void BadMetaIndex_CarriesIndexOutOfRangeStatus_OnEveryIndexedCall_AndIsAnArgumentOutOfRangeException()
    {
        using BufferPool pool = NewPool(capacity: 4);
        foreach (int bad in new[] { -1, 4, 5, int.MaxValue, int.MinValue })
        {
            foreach (Action call in new Action[]
                     {
                         () => pool.Get(bad).Dispose(),
                         () => pool.GetMut(bad).Dispose(),
                         () => pool.AddRef(bad),
                         () => pool.Release(bad),
                         () => pool.RefCount(bad),
                         () => pool.SetRefCount(bad, 1),
                     })
            {
                var e = Assert.ThrowsAny<ArgumentOutOfRangeException>(call);
                var x = Assert.IsAssignableFrom<IXmemError>(e);
                Assert.Equal(XmemStatus.IndexOutOfRange, x.Status);
                Assert.Equal("metaIndex", e.ParamName);
                Assert.Equal(bad, e.ActualValue);
                Assert.Contains($"meta index {bad} is outside", e.Message, StringComparison.Ordinal);
            }
        }
    }
}
