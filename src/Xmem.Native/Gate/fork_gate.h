/* The fork gate of libxmem, in C so that it counts a thread in *before* the thread enters the .NET runtime
 * (fork_gate.c has the why and the invariants). Linked into libxmem.so; nothing here is exported. */
#ifndef XMEM_FORK_GATE_H
#define XMEM_FORK_GATE_H

#include <stdint.h>

#define XMEM_GATE_HIDDEN __attribute__((visibility("hidden")))

/* Counts the calling thread in (once, however deeply it nests); waits in the kernel while a fork is prepared. */
XMEM_GATE_HIDDEN void xmem_gate_enter(void);

/* Counts the calling thread out (the last of nested entries does). */
XMEM_GATE_HIDDEN void xmem_gate_leave(void);

/* The entry points below are called by the managed part of libxmem (DirectPInvoke "xmemgate"). */

/* fork()'s prepare handler, first step: closes the gate and waits until no other thread is inside. */
XMEM_GATE_HIDDEN void xmem_gate_close(void);

/* fork()'s parent handler: opens the gate once every fork under way is done, and wakes the waiters. */
XMEM_GATE_HIDDEN void xmem_gate_open(void);

/* fork()'s child handler: the gate open and empty but for the forking thread's own count. */
XMEM_GATE_HIDDEN void xmem_gate_reset_in_child(void);

/* futex(FUTEX_WAIT) on a word shared between processes, stepped out of the gate while it sleeps when the caller is
 * inside it: syscall(2)'s result (-1 with errno: EAGAIN, ETIMEDOUT, EINTR). timeout_ns < 0: no limit. */
XMEM_GATE_HIDDEN int64_t xmem_gate_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns);

/* The DLPack deleter for a DLManagedTensorVersioned (versioned != 0) or a DLManagedTensor (dlpack_deleters.c). */
XMEM_GATE_HIDDEN void *xmem_gate_dlpack_deleter(int32_t versioned);

#endif
