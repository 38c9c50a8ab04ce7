using System.Runtime.InteropServices;
using Xmem.Native.Handles;
using Xmem.Pool;

namespace Xmem.Native.Exports;

/// <summary>Guard exports (xmem.h, "guards"): a guard's info and CPU pointer, and its two ends — release (the
/// reference goes back) and forget (the reference stays, in flight, for another process to take).</summary>
internal static unsafe class GuardExports
{
    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_info")]
    internal static int GuardInfo(ulong guard, BufferInfo* outInfo) => Export.OnGuard(guard, new Info(outInfo));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_cpu_ptr")]
    internal static int GuardCpuPtr(ulong guard, nint* outPtr) => Export.OnGuard(guard, new CpuPtr(outPtr, mutable: false));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_cpu_ptr_mut")]
    internal static int GuardCpuPtrMut(ulong guard, nint* outPtr) => Export.OnGuard(guard, new CpuPtr(outPtr, mutable: true));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_release")]
    internal static int GuardRelease(ulong guard) => Export.Removing(HandleTables.Guards, "guard", guard, default(Release));

    [UnmanagedCallersOnly(EntryPoint = "xmemi_guard_forget")]
    internal static int GuardForget(ulong guard) => Export.Removing(HandleTables.Guards, "guard", guard, default(Forget));

    private readonly struct Info(BufferInfo* outInfo) : IExportBody<GuardHandle>
    {
        public int Check() => Export.NotNull(outInfo, "out_info");

        public int Run(GuardHandle g)
        {
            BufferInfo.Fill(outInfo, g.Ref); // an ended reference is GuardInvalid
            return 0;
        }
    }

    private readonly struct CpuPtr(nint* outPtr, bool mutable) : IExportBody<GuardHandle>
    {
        public int Check() => Export.NotNull(outPtr, "out_ptr");

        public int Run(GuardHandle g)
        {
            if (mutable && g.Ref.IsReadOnly)
            {
                return LastError.Set(XmemStatus.ReadOnly, $"the guard on slot {g.Ref.MetaIndex} is read-only (from get); take it with get_mut for write access.");
            }

            *outPtr = g.Ref.CpuPointer; // read between two checks of the reference: an ended one is GuardInvalid
            return 0;
        }
    }

    private readonly struct Release : IExportBody<GuardHandle>
    {
        public int Check() => 0;

        public int Run(GuardHandle g)
        {
            GuardHandles.Release(g);
            return 0;
        }
    }

    private readonly struct Forget : IExportBody<GuardHandle>
    {
        public int Check() => 0;

        public int Run(GuardHandle g)
        {
            try
            {
                if (!g.Owner.TryEnter())
                {
                    int slot = g.Ref.MetaIndex;
                    g.Owner.WaitDisposed();
                    g.Ref.Dispose();
                    return LastError.Set(XmemStatus.Disposed, $"the pool was closed before forget, and closing released this guard's reference to slot {slot}; nothing is left to hand off. Forget guards before closing the pool.");
                }

                try
                {
                    g.Ref.Forget();
                }
                finally
                {
                    g.Owner.Exit();
                }

                return 0;
            }
            catch (Exception e)
            {
                // The handle is gone: a forget that failed gives the reference back rather than leak it.
                int rc = LastError.Fail(e);
                try
                {
                    g.Ref.Dispose();
                }
                catch (Exception)
                {
                    // The forget's own error is the one to report; a reference not given back here is reclaimed at detach.
                }

                return rc;
            }
        }
    }
}
