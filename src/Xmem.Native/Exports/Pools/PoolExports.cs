using System.Runtime.InteropServices;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Pool lifetime and properties (xmem.h, "pools"): create, open, close, remove, exists, name, capacity and
/// the CUDA get-waits switch. The skeleton (<see cref="Export"/>) enters the gate and the pool handle; each body
/// calls the .NET API, whose errors carry their status.</summary>
internal static unsafe class PoolExports
{
    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_create")]
    internal static int PoolCreate(byte* name, int capacity, uint mode, int persistent, ulong* outPool) =>
        Export.Run(new Create(name, capacity, mode, persistent, outPool));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_open")]
    internal static int PoolOpen(byte* name, ulong* outPool) => Export.Run(new Open(name, outPool));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_close")]
    internal static int PoolClose(ulong pool) => Export.Removing(HandleTables.Pools, "pool", pool, default(Close));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_remove")]
    internal static int PoolRemove(byte* name, int* outRemoved) => Export.Run(new Remove(name, outRemoved));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_exists")]
    internal static int PoolExists(byte* name, int* outExists) => Export.Run(new Exists(name, outExists));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_name")]
    internal static int PoolName(ulong pool, byte* buf, nuint bufSize, nuint* outLength) =>
        Export.OnPool(pool, new Name(buf, bufSize, outLength));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_capacity")]
    internal static int PoolCapacity(ulong pool, int* outCapacity) => Export.OnPool(pool, new Capacity(outCapacity));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_set_cuda_get_waits")]
    internal static int PoolSetCudaGetWaits(ulong pool, int on) => Export.OnPool(pool, new SetCudaGetWaits(on));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_pool_cuda_get_waits")]
    internal static int PoolCudaGetWaits(ulong pool, int* outOn) => Export.OnPool(pool, new CudaGetWaits(outOn));

    private readonly struct Create(byte* name, int capacity, uint mode, int persistent, ulong* outPool) : IExportBody
    {
        public int Check() => Export.NotNull(name, "name", outPool, "out_pool");

        public int Run()
        {
            string n = Marshal.PtrToStringUTF8((nint)name)!;
            if (mode > 0x1FF)
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"mode 0{Convert.ToString(mode, 8)} is not permission bits within 0777; use 0600 or 0660.");
            }

#pragma warning disable CA2000 // ownership passes to Register: to the handle table, or disposed when registering fails
            return Register(BufferPool.Create(n, capacity, (int)mode, persistent != 0), outPool);
#pragma warning restore CA2000
        }
    }

    private readonly struct Open(byte* name, ulong* outPool) : IExportBody
    {
        public int Check() => Export.NotNull(name, "name", outPool, "out_pool");

#pragma warning disable CA2000 // ownership passes to Register: to the handle table, or disposed when registering fails
        public int Run() => Register(BufferPool.Open(Marshal.PtrToStringUTF8((nint)name)!), outPool);
#pragma warning restore CA2000
    }

    /// <summary>Puts a new pool in the table; disposes it when that fails.</summary>
    private static int Register(BufferPool pool, ulong* outPool)
    {
        try
        {
            *outPool = HandleTables.Pools.Add(new PoolHandle(pool));
            return 0;
        }
        catch
        {
            pool.Dispose();
            throw;
        }
    }

    private readonly struct Close : IExportBody<PoolHandle>
    {
        public int Check() => 0;

        public int Run(PoolHandle p)
        {
            try
            {
                p.BeginClose(); // blocked calls on this pool wake and fail; new ones (through its channels) are refused
            }
            catch (Exception)
            {
                // Waking is a courtesy: the waiters still end within one slice; the close itself goes on.
            }

            CountedTarget.AwaitBriefCalls(); // the calls that took no count (they never sleep) are over
            p.Exit(); // drops the table's count: disposes now, or when the last blocking call in flight returns
            return 0;
        }
    }

    private readonly struct Remove(byte* name, int* outRemoved) : IExportBody
    {
        public int Check() => Export.NotNull(name, "name");

        public int Run()
        {
            bool removed = BufferPool.Remove(Marshal.PtrToStringUTF8((nint)name)!);
            if (outRemoved is not null)
            {
                *outRemoved = removed ? 1 : 0;
            }

            return 0;
        }
    }

    private readonly struct Exists(byte* name, int* outExists) : IExportBody
    {
        public int Check() => Export.NotNull(name, "name", outExists, "out_exists");

        public int Run()
        {
            *outExists = BufferPool.Exists(Marshal.PtrToStringUTF8((nint)name)!) ? 1 : 0;
            return 0;
        }
    }

    private readonly struct Name(byte* buf, nuint bufSize, nuint* outLength) : IExportBody<PoolHandle>
    {
        public int Check() => 0;

        public int Run(PoolHandle p)
        {
            string name = p.Pool.Name;
            int n = System.Text.Encoding.UTF8.GetByteCount(name);
            if (outLength is not null)
            {
                *outLength = (nuint)n;
            }

            if (buf is null || bufSize < (nuint)n + 1)
            {
                return LastError.Set(XmemStatus.InvalidArgument, $"the name buffer holds {bufSize} bytes; the name needs {n + 1} (with its NUL).");
            }

            System.Text.Encoding.UTF8.GetBytes(name, new Span<byte>(buf, n));
            buf[n] = 0;
            return 0;
        }
    }

    private readonly struct Capacity(int* outCapacity) : IExportBody<PoolHandle>
    {
        public int Check() => Export.NotNull(outCapacity, "out_capacity");

        public int Run(PoolHandle p)
        {
            *outCapacity = p.Pool.Capacity;
            return 0;
        }
    }

    private readonly struct SetCudaGetWaits(int on) : IExportBody<PoolHandle>
    {
        public int Check() => 0;

        public int Run(PoolHandle p)
        {
            p.Pool.CudaGetWaitsForWrites = on != 0;
            return 0;
        }
    }

    private readonly struct CudaGetWaits(int* outOn) : IExportBody<PoolHandle>
    {
        public int Check() => Export.NotNull(outOn, "out_on");

        public int Run(PoolHandle p)
        {
            *outOn = p.Pool.CudaGetWaitsForWrites ? 1 : 0;
            return 0;
        }
    }
}
