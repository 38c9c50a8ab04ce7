/* The fork gate: makes fork() safe in a process that calls libxmem (C, Python) from several threads.
 *
 * A child made by fork() has one thread, the one that forked. Had any other thread been inside the .NET runtime then
 * (running managed code, attaching itself to the runtime on its first call, detaching at its exit, allocating with
 * the GC's allocation lock held), the child's copy of the runtime would wait for that thread, or for a lock it held,
 * for ever: at the child's first collection, its first allocation that needs more space, or the first call of a
 * thread it makes. tests/c/fork_stress.c showed both: children hung on the thread store's lock and on the GC's
 * more_space_lock, taken by parent threads in the few instructions between an export's entry into the runtime and a
 * gate counted in managed code. So the gate is counted here, in C, before the runtime is entered and after it is left:
 * every exported xmem_* function is a wrapper (exports.g.c) that enters the gate, calls the managed implementation
 * (xmemi_*), and leaves. fork()'s prepare handler closes the gate and waits until no thread is inside; threads that
 * arrive meanwhile wait here, in the kernel, never having entered the runtime, until the parent handler opens it.
 *
 * A thread's exit is a runtime call too: the runtime detaches the thread (managed exit callbacks, the thread store's
 * lock) in the destructor of its pthread key, made when the runtime starts (the first call). Our key is made when
 * the library is loaded, before that, so it has the lower index, and glibc runs key destructors in index order, in
 * rounds: in round 1 ours counts the thread in (waiting while a fork is prepared) and sets its value again, the
 * runtime's detaches the thread, and in round 2 ours counts it out.
 *
 * Waits without a bound inside xmem (a blocking acquire, a channel receive) sleep through xmem_gate_futex_wait,
 * which steps out of the gate around the futex sleep only, so they never hold a fork back, and the thread is counted
 * in again before it returns into the runtime.
 *
 * Invariants:
 * - closed counts the forks under way in this process (prepare to parent handler); 0 in a new child.
 * - Every thread that ever entered owns a node (xmem_gate_node) of a list that only grows; a node's inside is 1
 *   while its thread is inside, and only that thread writes it (plain stores). A thread counts itself once, however
 *   deeply it nests (xmem_gate_thread.depth), and not while it sleeps in xmem_gate_futex_wait or waits for the gate
 *   to open. At its exit (round 2 of the key destructors) it gives the node up (owned = 0, inside already 0), and a
 *   later thread's first entry takes it (a CAS on owned); the memory is never freed, so the preparer may read any
 *   node at any time. A thread whose node could not be allocated shares the overflow node, a count updated with
 *   atomic read-modify-writes.
 * - Dekker, asymmetric: an entering thread stores inside = 1 and then loads closed, with nothing between them but
 *   a compiler barrier; the preparer increments closed (a full fence), calls membarrier(PRIVATE_EXPEDITED), and then
 *   reads the nodes. membarrier() returns only after every thread of the process has executed a full memory barrier
 *   (an IPI to those running, a context switch for the others) at some point after closed was incremented. A thread
 *   whose load came after its barrier sees closed and waits; one whose load came before it had its store made
 *   visible by that barrier, so the preparer sees it inside and waits for it. Either way, once the preparer saw
 *   every node at 0 no thread is inside (in the runtime) when fork() copies the process. This is how the .NET
 *   runtime itself suspends threads for a GC (FlushProcessWriteBuffers) and how liburcu's readers stay fence-free.
 *   Where membarrier() is missing (kernel < 4.14, or a seccomp filter refuses it: registration at load fails),
 *   entries use a full fence of their own (an atomic increment, seq_cst) on their own node, as the overflow node
 *   always does; the slow paths (first entry, waiting, the futex wait's return) always do. A thread keeps the mode
 *   of its first entry; once any thread was given fence-free entries (s_any_fast, set before its first, fenced,
 *   count-in) every close calls membarrier().
 * - leave's store is a release: everything the thread did inside (its return out of the runtime included) is done
 *   before a preparer's acquire read sees it out.
 * - No lock: a thread that dies anywhere leaves the process with it (threads do not die alone); a fork leaves only
 *   the forking thread, whose own count the child handler keeps, and frees every other node there.
 * Cost per call: one TLS descriptor lookup, a store and a load (no atomic read-modify-write, no fence) on entry,
 * and a store on exit, all on the thread's own cache line but for the read-mostly gate word.
 */
#define _GNU_SOURCE
#include "fork_gate.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static xmem_gate_node *_Atomic s_nodes;   /* every node ever made, newest first; only grows */
static xmem_gate_node s_overflow;  /* shared by the threads whose node could not be allocated */
atomic_int xmem_gate_closed;
__thread xmem_thread_gate xmem_gate_thread;
static atomic_int s_membarrier;   /* 1: membarrier(PRIVATE_EXPEDITED) is registered, entries need no fence */
static atomic_int s_any_fast;     /* sticky: some thread was given fence-free entries, so close must barrier */
static atomic_uint s_wake;        /* bumped by the parent handler: waiters sleep on it (a private futex) */
static pthread_key_t s_exit_key;  /* its destructor counts a registered thread in around the runtime's detach */
static int s_exit_key_made;

/* Exit-key values: a thread registered (it entered once), and a thread counted in for its exit. */
#define EXIT_REGISTERED ((void *)1)
#define EXIT_COUNTED    ((void *)2)

#define s_closed xmem_gate_closed
typedef xmem_thread_gate thread_gate;

static long futex(atomic_uint *word, int op, uint32_t value, const struct timespec *timeout)
{
    return syscall(SYS_futex, word, op, value, timeout, NULL, 0);
}

static int register_membarrier(void)
{
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
           syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* A full barrier on every thread of the process (see the invariants). */
static void barrier_all_threads(void)
{
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
    {
        return;
    }

    /* Registered, so this does not happen; were it to, the global command gives the same guarantee, slower. */
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0)
    {
        return;
    }

    /* Last resort: a store buffer drains in far less than this, and a thread descheduled meanwhile has passed a
       full barrier (the context switch). */
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    {
    }
}

/* In, with a full fence between the store and the load of closed: correct with or without membarrier(). */
static int count_in_fenced(thread_gate *t)
{
    if (t->fast)
    {
        atomic_store_explicit(&t->node->inside, 1, memory_order_seq_cst);
    }
    else
    {
        atomic_fetch_add_explicit(&t->node->inside, 1, memory_order_seq_cst);
    }

    return atomic_load_explicit(&s_closed, memory_order_seq_cst) == 0;
}

static void count_out(thread_gate *t)
{
    xmem_gate_node *n = t->node;
    if (t->fast)
    {
        atomic_store_explicit(&n->inside, 0, memory_order_release);
        atomic_store_explicit(&n->leaves, atomic_load_explicit(&n->leaves, memory_order_relaxed) + 1, memory_order_release);
    }
    else
    {
        atomic_fetch_sub_explicit(&n->inside, 1, memory_order_release);
        atomic_fetch_add_explicit(&n->leaves, 1, memory_order_release);
    }
}

/* Out while waiting (the preparer must not wait for us), in again once open; returns counted in and seen open. */
void xmem_gate_wait_while_closed(thread_gate *t)
{
    for (;;)
    {
        count_out(t);
        for (;;)
        {
            uint32_t seen = atomic_load_explicit(&s_wake, memory_order_seq_cst);
            if (atomic_load_explicit(&s_closed, memory_order_seq_cst) == 0)
            {
                break;
            }

            /* Until the parent handler bumps the word (EAGAIN when it changed since we read it, EINTR on a signal:
               look again either way). */
            futex(&s_wake, FUTEX_WAIT_PRIVATE, seen, NULL);
        }

        if (count_in_fenced(t))
        {
            return; /* in, and seen open after counting in: a later preparer waits for us */
        }
    }
}

static void count_in(thread_gate *t)
{
    if (!count_in_fenced(t))
    {
        xmem_gate_wait_while_closed(t);
    }
}

/* A node of its own for the calling thread: one a thread that exited gave up, or a new one; the overflow node
   when none can be allocated. */
static xmem_gate_node *take_node(void)
{
    for (xmem_gate_node *n = atomic_load_explicit(&s_nodes, memory_order_acquire); n != NULL;
         n = atomic_load_explicit(&n->next, memory_order_acquire))
    {
        int free_ = 0;
        if (atomic_load_explicit(&n->owned, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(&n->owned, &free_, 1, memory_order_acquire, memory_order_relaxed))
        {
            return n; /* its last owner left it at inside 0 (release), seen by the acquire above */
        }
    }

    xmem_gate_node *n = aligned_alloc(_Alignof(xmem_gate_node), sizeof(xmem_gate_node));
    if (n == NULL)
    {
        return &s_overflow;
    }

    atomic_init(&n->inside, 0);
    atomic_init(&n->leaves, 0);
    atomic_init(&n->owned, 1);
    xmem_gate_node *head = atomic_load_explicit(&s_nodes, memory_order_relaxed);
    do
    {
        atomic_store_explicit(&n->next, head, memory_order_relaxed);
    } while (!atomic_compare_exchange_weak_explicit(&s_nodes, &head, n, memory_order_seq_cst, memory_order_relaxed));
    /* seq_cst: a preparer that read the list before this push is ordered before it, so this thread's fenced
       count-in (next) sees that preparer's closed. */
    return n;
}

static void take_node_for(thread_gate *t)
{
    t->node = take_node();
    t->fast = t->node != &s_overflow && atomic_load_explicit(&s_membarrier, memory_order_relaxed);
    if (t->fast)
    {
        /* Before this thread's first (fenced) count-in, so a preparer that could miss one of its later fence-free
           entries sees the flag (the invariants: the first entry is ordered with the preparer's increment). */
        atomic_store_explicit(&s_any_fast, 1, memory_order_seq_cst);
    }
}

/* The thread has left for the last time (depth 0): its node goes back for a later thread. */
static void give_node_back(thread_gate *t)
{
    xmem_gate_node *n = t->node;
    t->node = NULL;
    t->fast = 0;
    if (n != NULL && n != &s_overflow)
    {
        atomic_store_explicit(&n->owned, 0, memory_order_release);
    }
}

static void exit_destructor(void *value)
{
    thread_gate *t = &xmem_gate_thread;
    if (value == EXIT_REGISTERED)
    {
        /* Round 1: in for the runtime's detach, which runs after this (its key is younger: a higher index). */
        if (t->depth++ == 0)
        {
            if (t->node == NULL)
            {
                take_node_for(t);
            }

            count_in(t);
        }

        if (pthread_setspecific(s_exit_key, EXIT_COUNTED) == 0)
        {
            return;
        }

        /* No round 2 (cannot happen: the key's slot exists already): out now rather than never. */
    }

    xmem_gate_leave(t);
    if (t->depth == 0)
    {
        give_node_back(t);
    }
}

__attribute__((constructor)) static void make_exit_key(void)
{
    /* Before the runtime starts (it does on the first call), so ours is the older key. EAGAIN (no key left) loses
       the exit's cover only: the calls are gated all the same. */
    s_exit_key_made = pthread_key_create(&s_exit_key, exit_destructor) == 0;
    atomic_store_explicit(&s_membarrier, register_membarrier(), memory_order_relaxed);
}

int xmem_gate_use_membarrier(int on)
{
    /* With no thread registered (every node given back), nobody enters fence-free: close may skip the barrier
       again, so that the fallback is tested as it runs where the kernel refuses membarrier(). */
    int owned = 0;
    for (xmem_gate_node *p = atomic_load_explicit(&s_nodes, memory_order_acquire); p != NULL;
         p = atomic_load_explicit(&p->next, memory_order_acquire))
    {
        owned |= atomic_load_explicit(&p->owned, memory_order_acquire);
    }

    if (!owned)
    {
        atomic_store_explicit(&s_any_fast, 0, memory_order_seq_cst);
    }

    atomic_store_explicit(&s_membarrier, on && register_membarrier(), memory_order_relaxed);
    return atomic_load_explicit(&s_membarrier, memory_order_relaxed);
}

void xmem_gate_first_entry(thread_gate *t)
{
    /* Called with depth already 1. */
    take_node_for(t);
    count_in(t);
    /* Inside: the runtime attaches this thread now, and will detach it at its exit, in our key's cover. */
    if (s_exit_key_made)
    {
        (void)pthread_setspecific(s_exit_key, EXIT_REGISTERED);
    }
}

static int count_inside(void)
{
    int n = atomic_load_explicit(&s_overflow.inside, memory_order_acquire);
    for (xmem_gate_node *p = atomic_load_explicit(&s_nodes, memory_order_seq_cst); p != NULL;
         p = atomic_load_explicit(&p->next, memory_order_acquire))
    {
        n += atomic_load_explicit(&p->inside, memory_order_acquire);
    }

    return n;
}

void xmem_gate_close(void)
{
    atomic_fetch_add_explicit(&s_closed, 1, memory_order_seq_cst); /* a full fence: the nodes are read after it */
    /* Every thread's entry store is visible to us now, or that thread sees closed (the invariants). Only needed
       once some thread enters without a fence of its own (whatever the mode is now: a thread keeps the mode of its
       first entry); a barrier more is harmless either way. */
    if (atomic_load_explicit(&s_any_fast, memory_order_seq_cst))
    {
        barrier_all_threads();
    }

    int own = xmem_gate_thread.depth != 0 ? 1 : 0; /* a fork from inside a call (a callback): this thread's count stays */
    for (unsigned spins = 0; count_inside() != own; spins++)
    {
        /* Calls are short, and waits without a bound leave the gate; yield so a preempted caller can finish. */
        if (spins > 64)
        {
            sched_yield();
        }
    }
}

void xmem_gate_wait_calls_in_flight(void)
{
    thread_gate *t = &xmem_gate_thread;
    int inside = t->depth != 0;
    if (inside)
    {
        count_out(t); /* another thread waiting here meanwhile does not wait for us */
    }

    /* After the caller's store (the handle refusing new calls): a thread that enters after this sees it; one that
       entered before is seen inside below (the same asymmetric Dekker as xmem_gate_close). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&s_any_fast, memory_order_seq_cst))
    {
        barrier_all_threads();
    }

    for (xmem_gate_node *p = atomic_load_explicit(&s_nodes, memory_order_seq_cst); p != NULL;
         p = atomic_load_explicit(&p->next, memory_order_acquire))
    {
        if (atomic_load_explicit(&p->inside, memory_order_acquire) == 0)
        {
            continue;
        }

        unsigned left = atomic_load_explicit(&p->leaves, memory_order_acquire);
        for (unsigned spins = 0; atomic_load_explicit(&p->inside, memory_order_acquire) != 0 &&
                                 atomic_load_explicit(&p->leaves, memory_order_acquire) == left;
             spins++)
        {
            if (spins > 64)
            {
                sched_yield(); /* a preempted caller finishes its call */
            }
        }
    }

    /* The shared overflow node counts several threads (those whose node could not be allocated): it must be seen
       at 0. Under constant use by several such threads that can take long; it only exists when memory ran out. */
    for (unsigned spins = 0; atomic_load_explicit(&s_overflow.inside, memory_order_acquire) != 0; spins++)
    {
        if (spins > 64)
        {
            sched_yield();
        }
    }

    if (inside)
    {
        count_in(t);
    }
}

void xmem_gate_open(void)
{
    if (atomic_fetch_sub_explicit(&s_closed, 1, memory_order_seq_cst) == 1)
    {
        atomic_fetch_add_explicit(&s_wake, 1, memory_order_seq_cst); /* a new value: a waiter that read the old one does not sleep */
        futex(&s_wake, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
    }
}

void xmem_gate_reset_in_child(void)
{
    /* The child has one thread, this one: every other node is free, and this thread's counts only itself. */
    thread_gate *t = &xmem_gate_thread;
    atomic_store_explicit(&s_overflow.inside, 0, memory_order_relaxed);
    for (xmem_gate_node *p = atomic_load_explicit(&s_nodes, memory_order_relaxed); p != NULL;
         p = atomic_load_explicit(&p->next, memory_order_relaxed))
    {
        if (p != t->node)
        {
            atomic_store_explicit(&p->inside, 0, memory_order_relaxed);
            atomic_store_explicit(&p->owned, 0, memory_order_relaxed);
        }
    }

    if (t->node != NULL)
    {
        atomic_store_explicit(&t->node->inside, t->depth != 0 ? 1 : 0, memory_order_relaxed);
    }

    /* A new process (mm). Linux carries the registration over to it (checked on 6.18: the child's first expedited
       call succeeds unregistered); registering again costs two cheap system calls and says so for certain. */
    atomic_store_explicit(&s_membarrier, register_membarrier(), memory_order_relaxed);
    if (t->node != NULL && t->node != &s_overflow && !atomic_load_explicit(&s_membarrier, memory_order_relaxed))
    {
        t->fast = 0; /* its count stays as it is: 0 or 1 either way */
    }

    /* This thread is the only one left: closes need membarrier() only if it enters fence-free. */
    atomic_store_explicit(&s_any_fast, t->fast, memory_order_relaxed);

    atomic_store_explicit(&s_closed, 0, memory_order_seq_cst);
}

int64_t xmem_gate_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *timeout = NULL;
    if (timeout_ns >= 0)
    {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        timeout = &ts;
    }

    thread_gate *t = &xmem_gate_thread;
    int inside = t->depth != 0;
    if (inside)
    {
        count_out(t);
    }

    /* Shared (no FUTEX_PRIVATE_FLAG): the word lives in memory shared between processes. */
    long rc = syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout, NULL, 0);
    int saved = errno;
    if (inside)
    {
        count_in(t);
    }

    errno = saved;
    return rc;
}
