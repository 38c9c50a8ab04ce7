/* The DLPack deleters libxmem hands out in its managed tensors: a consumer (PyTorch, CuPy, …) calls them from any of
 * its threads, so they enter the fork gate before the runtime, as the exported functions do (fork_gate.c). */
#include "fork_gate.h"

/* The managed implementations (DLPackExports.cs), not exported. */
void xmemi_dlpack_delete_versioned(void *managed);
void xmemi_dlpack_delete_unversioned(void *managed);

static void delete_versioned(void *managed)
{
    xmem_thread_gate *gate = xmem_gate_enter();
    xmemi_dlpack_delete_versioned(managed);
    xmem_gate_leave(gate);
}

static void delete_unversioned(void *managed)
{
    xmem_thread_gate *gate = xmem_gate_enter();
    xmemi_dlpack_delete_unversioned(managed);
    xmem_gate_leave(gate);
}

/* The deleter to store in a DLManagedTensorVersioned (versioned != 0) or a DLManagedTensor. */
XMEM_GATE_HIDDEN void *xmem_gate_dlpack_deleter(int32_t versioned)
{
    return versioned ? (void *)delete_versioned : (void *)delete_unversioned;
}
