using Xmem.Core;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xmem.Native.Exports;
using Xmem.Pool;

namespace Xmem.Native.DLPack;

/// <summary>
/// DLPack for Python (xmem.h, "DLPack"): the capsule names, and the capsule destructor that frees a tensor no
/// consumer took. The bindings hand over PyCapsule_IsValid and PyCapsule_GetPointer once (init_python), so the
/// library links against no Python.
/// </summary>
internal static unsafe class DLPackCapsules
{
    // PyCapsule_IsValid(PyObject*, const char*) and PyCapsule_GetPointer(PyObject*, const char*), given by the bindings.
    private static delegate* unmanaged<nint, byte*, int> s_capsuleIsValid;
    private static delegate* unmanaged<nint, byte*, nint> s_capsuleGetPointer;

    private static readonly byte[] s_nameUnversioned = PinnedName("dltensor");
    private static readonly byte[] s_nameVersioned = PinnedName("dltensor_versioned");

    [UnmanagedCallersOnly(EntryPoint = "xmemi_dlpack_capsule_name")]
    internal static byte* CapsuleName(int versioned) => AddressOf(versioned != 0 ? s_nameVersioned : s_nameUnversioned);

    [UnmanagedCallersOnly(EntryPoint = "xmemi_dlpack_init_python")]
    internal static int InitPython(nint isValid, nint getPointer) => Export.Run(new Init(isValid, getPointer));

    private readonly struct Init(nint isValid, nint getPointer) : IExportBody
    {
        public int Check() => isValid == 0 || getPointer == 0
            ? LastError.NullArgument(isValid == 0 ? "py_capsule_is_valid" : "py_capsule_get_pointer")
            : 0;

        public int Run()
        {
            s_capsuleIsValid = (delegate* unmanaged<nint, byte*, int>)isValid;
            s_capsuleGetPointer = (delegate* unmanaged<nint, byte*, nint>)getPointer;
            return 0;
        }
    }

    /// <summary>PyCapsule destructor: runs with the GIL held when a capsule dies. A consumer renames the capsules it
    /// takes ("used_dltensor…"), so a capsule that still has its first name was never consumed, and its tensor is
    /// freed here; otherwise the consumer owns it and calls the deleter itself.</summary>
    [UnmanagedCallersOnly(EntryPoint = "xmemi_dlpack_capsule_destructor")]
    internal static void CapsuleDestructor(nint capsule)
    {
        try
        {
            if (capsule == 0 || s_capsuleIsValid is null)
            {
                return;
            }

            if (s_capsuleIsValid(capsule, AddressOf(s_nameVersioned)) != 0)
            {
                var m = (DLManagedTensorVersioned*)s_capsuleGetPointer(capsule, AddressOf(s_nameVersioned));
                if (m is not null)
                {
                    DLPackExports.Free((nint)m, m->ManagerCtx);
                }
            }
            else if (s_capsuleIsValid(capsule, AddressOf(s_nameUnversioned)) != 0)
            {
                var m = (DLManagedTensor*)s_capsuleGetPointer(capsule, AddressOf(s_nameUnversioned));
                if (m is not null)
                {
                    DLPackExports.Free((nint)m, m->ManagerCtx);
                }
            }
        }
        catch (Exception)
        {
            // A destructor must not fail; at worst one mapping stays leased until the process exits.
        }
    }

    private static byte[] PinnedName(string s)
    {
        byte[] b = GC.AllocateArray<byte>(s.Length + 1, pinned: true);
        for (int i = 0; i < s.Length; i++)
        {
            b[i] = (byte)s[i];
        }

        return b;
    }

    // Safe: pinned-heap arrays held by static fields never move or die.
    private static byte* AddressOf(byte[] pinned) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
}
