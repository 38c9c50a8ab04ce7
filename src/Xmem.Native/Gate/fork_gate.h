/* The fork gate of libxmem, in C so that it counts a thread in *before* the thread enters the .NET runtime
 * (fork_gate.c has the why and the invariants). Linked into libxmem.so; nothing here is exported. */
#ifndef XMEM_FORK_GATE_H
#define XMEM_FORK_GATE_H

#include <stdatomic.h>
#include <stdint.h>

#define XMEM_GATE_HIDDEN __attribute__((visibility("hidden")))

/* The gate's state (fork_gate.c has the invariants); the hot path below is inline in every exported wrapper. */
typedef struct
{
    int depth;      /* nesting depth inside the gate */
    int stripe;     /* 0 until the thread's first entry, then 1..XMEM_GATE_STRIPES */
    int registered; /* the exit key is set (fork_gate.c: the thread's exit is counted in too) */
} xmem_thread_gate;

#define XMEM_GATE_STRIPES 32

/* One counter per 128 bytes (two cache lines: the adjacent-line prefetcher would otherwise pair them). */
typedef struct { _Alignas(128) atomic_int value; } xmem_gate_counter;

extern XMEM_GATE_HIDDEN xmem_gate_counter xmem_gate_stripes[XMEM_GATE_STRIPES];
extern XMEM_GATE_HIDDEN atomic_int xmem_gate_closed;
extern XMEM_GATE_HIDDEN __thread xmem_thread_gate xmem_gate_thread;

/* The slow paths of xmem_gate_enter: a thread's first entry, and waiting while a fork is prepared. */
XMEM_GATE_HIDDEN void xmem_gate_first_entry(xmem_thread_gate *t);
XMEM_GATE_HIDDEN void xmem_gate_wait_while_closed(atomic_int *stripe);

/* Counts the calling thread in (once, however deeply it nests); waits in the kernel while a fork is prepared.
 * Returns the thread's gate state, for xmem_gate_leave (one TLS lookup per call, not two). */
static inline xmem_thread_gate *xmem_gate_enter(void)
{
    xmem_thread_gate *t = &xmem_gate_thread;
    if (t->depth++ == 0)
    {
        if (__builtin_expect(!t->registered, 0))
        {
            xmem_gate_first_entry(t);
        }
        else
        {
            atomic_int *c = &xmem_gate_stripes[t->stripe - 1].value;
            /* Dekker with the preparer: a full fence (seq_cst) between counting in and reading closed. */
            atomic_fetch_add_explicit(c, 1, memory_order_seq_cst);
            if (__builtin_expect(atomic_load_explicit(&xmem_gate_closed, memory_order_seq_cst) != 0, 0))
            {
                xmem_gate_wait_while_closed(c);
            }
        }
    }

    return t;
}

/* Counts the calling thread out (the last of nested entries does). Release: everything it did inside, its return
 * out of the runtime included, is done before a preparer's acquire read sees it out. */
static inline void xmem_gate_leave(xmem_thread_gate *t)
{
    if (--t->depth == 0)
    {
        atomic_fetch_sub_explicit(&xmem_gate_stripes[t->stripe - 1].value, 1, memory_order_release);
    }
}

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
