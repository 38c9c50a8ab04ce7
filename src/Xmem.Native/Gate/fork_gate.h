/* The fork gate of libxmem, in C so that it counts a thread in *before* the thread enters the .NET runtime
 * (fork_gate.c has the why and the invariants). Linked into libxmem.so; nothing here is exported. */
#ifndef XMEM_FORK_GATE_H
#define XMEM_FORK_GATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define XMEM_GATE_HIDDEN __attribute__((visibility("hidden")))

/* A thread's counter, read by fork()'s prepare handler (fork_gate.c has the invariants). Nodes are made on a
 * thread's first entry, linked into a list that only grows, and handed to a later thread once their thread exits.
 * Alone on its 128 bytes (two cache lines: the adjacent-line prefetcher would otherwise pair them). */
typedef struct xmem_gate_node
{
    _Alignas(128) atomic_int inside;    /* 1 while its thread is inside (0/1; the shared overflow node: a count) */
    atomic_uint leaves;                 /* +1 after each time its thread is counted out (xmem_gate_wait_calls_in_flight) */
    atomic_int owned;                   /* 1 while a live thread owns it */
    struct xmem_gate_node *_Atomic next;
} xmem_gate_node;

/* The gate's state of one thread. */
typedef struct
{
    int depth;            /* nesting depth inside the gate */
    int fast;             /* its node is its own and membarrier() backs the plain stores (fork_gate.c) */
    xmem_gate_node *node; /* NULL until the thread's first entry (and again after its exit released it) */
} xmem_thread_gate;

extern XMEM_GATE_HIDDEN atomic_int xmem_gate_closed;
extern XMEM_GATE_HIDDEN __thread xmem_thread_gate xmem_gate_thread;

/* The slow paths of xmem_gate_enter: a thread's first entry, and waiting while a fork is prepared. */
XMEM_GATE_HIDDEN void xmem_gate_first_entry(xmem_thread_gate *t);
XMEM_GATE_HIDDEN void xmem_gate_wait_while_closed(xmem_thread_gate *t);

/* Counts the calling thread in (once, however deeply it nests); waits in the kernel while a fork is prepared.
 * Returns the thread's gate state, for xmem_gate_leave (one TLS lookup per call, not two).
 * Fast (the usual case): a plain store to the thread's own node and a plain load of the gate word, no atomic
 * read-modify-write and no fence: the preparer's membarrier() orders them (fork_gate.c, "Dekker"). */
static inline xmem_thread_gate *xmem_gate_enter(void)
{
    xmem_thread_gate *t = &xmem_gate_thread;
    if (t->depth++ == 0)
    {
        if (__builtin_expect(t->fast, 1))
        {
            atomic_store_explicit(&t->node->inside, 1, memory_order_relaxed);
            /* The compiler keeps the store before the load; the CPU may not, and the preparer's membarrier() is
               what makes that safe. */
            atomic_signal_fence(memory_order_seq_cst);
            if (__builtin_expect(atomic_load_explicit(&xmem_gate_closed, memory_order_relaxed) != 0, 0))
            {
                xmem_gate_wait_while_closed(t);
            }
        }
        else if (t->node == NULL)
        {
            xmem_gate_first_entry(t);
        }
        else
        {
            /* No membarrier() (or the shared overflow node): Dekker with a full fence of our own. */
            atomic_fetch_add_explicit(&t->node->inside, 1, memory_order_seq_cst);
            if (__builtin_expect(atomic_load_explicit(&xmem_gate_closed, memory_order_seq_cst) != 0, 0))
            {
                xmem_gate_wait_while_closed(t);
            }
        }
    }

    return t;
}

/* Counts the calling thread out (the last of nested entries does). Release: everything it did inside, its return
 * out of the runtime included, is done before a preparer's acquire read sees it out (a plain store on x86). */
static inline void xmem_gate_leave(xmem_thread_gate *t)
{
    if (--t->depth == 0)
    {
        xmem_gate_node *n = t->node;
        if (__builtin_expect(t->fast, 1))
        {
            atomic_store_explicit(&n->inside, 0, memory_order_release);
            /* Only this thread writes it (a plain increment), after the release above: a reader that sees it move
               knows the call it waited for is over. */
            atomic_store_explicit(&n->leaves, atomic_load_explicit(&n->leaves, memory_order_relaxed) + 1,
                                  memory_order_release);
        }
        else
        {
            atomic_fetch_sub_explicit(&n->inside, 1, memory_order_release);
            atomic_fetch_add_explicit(&n->leaves, 1, memory_order_release); /* shared by several on the overflow node */
        }
    }
}

/* Tests only (tests/c/fork_gate_test.c): threads whose first entry comes later use the fallback (a full fence per
 * entry, no membarrier) when on is 0, the membarrier path when on is 1 and the kernel allows it; returns whether
 * the membarrier path is in use. Threads that entered before keep their mode, and close keeps calling membarrier()
 * for them as long as any of them lives. */
XMEM_GATE_HIDDEN int xmem_gate_use_membarrier(int on);

/* The entry points below are called by the managed part of libxmem (DirectPInvoke "xmemgate"). */

/* fork()'s prepare handler, first step: closes the gate and waits until no other thread is inside. */
XMEM_GATE_HIDDEN void xmem_gate_close(void);

/* fork()'s parent handler: opens the gate once every fork under way is done, and wakes the waiters. */
XMEM_GATE_HIDDEN void xmem_gate_open(void);

/* fork()'s child handler: the gate open and empty but for the forking thread's own count. */
XMEM_GATE_HIDDEN void xmem_gate_reset_in_child(void);

/* The grace period of a handle's close (Handles/CountedTarget.cs): returns once every other thread that was inside
 * a call when it began has left that call (or stepped out to sleep, as blocking waits do). The caller steps out of
 * the gate while it waits, so two threads waiting at once never wait for each other. Ordered like the fork gate's
 * close: a call that enters after the barrier here sees what the caller stored before calling this. */
XMEM_GATE_HIDDEN void xmem_gate_wait_calls_in_flight(void);

/* futex(FUTEX_WAIT) on a word shared between processes, stepped out of the gate while it sleeps when the caller is
 * inside it: syscall(2)'s result (-1 with errno: EAGAIN, ETIMEDOUT, EINTR). timeout_ns < 0: no limit. */
XMEM_GATE_HIDDEN int64_t xmem_gate_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns);

/* The DLPack deleter for a DLManagedTensorVersioned (versioned != 0) or a DLManagedTensor (dlpack_deleters.c). */
XMEM_GATE_HIDDEN void *xmem_gate_dlpack_deleter(int32_t versioned);

#endif
