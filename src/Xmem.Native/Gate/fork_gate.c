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
 * - A stripe counts the threads inside that were assigned to it; a thread counts itself once, however deeply it
 *   nests (xmem_gate_thread.depth), and not while it sleeps in xmem_gate_futex_wait or waits for the gate to open.
 * - Dekker: enter increments its stripe and then reads closed, both sequentially consistent (a full fence between);
 *   the preparer increments closed (a full fence) and then reads the stripes. So once the preparer saw every stripe
 *   at 0, every later enter sees closed and waits; no thread is inside (in the runtime) when fork() copies the
 *   process.
 * - leave's decrement is a release: everything the thread did inside (its return out of the runtime included) is
 *   done before a preparer's acquire read sees it out.
 * - No lock: a thread that dies anywhere leaves the process with it (threads do not die alone); a fork leaves only
 *   the forking thread, whose own count the child handler keeps.
 * Cost per call: one TLS lookup, one uncontended atomic increment and one decrement on the thread's stripe (a cache
 * line pair of its own unless more than 32 threads call xmem), one read of closed.
 */
#define _GNU_SOURCE
#include "fork_gate.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define STRIPES XMEM_GATE_STRIPES

xmem_gate_counter xmem_gate_stripes[STRIPES];
atomic_int xmem_gate_closed;
__thread xmem_thread_gate xmem_gate_thread;
static atomic_uint s_wake;        /* bumped by the parent handler: waiters sleep on it (a private futex) */
static atomic_uint s_next_stripe;
static pthread_key_t s_exit_key;  /* its destructor counts a registered thread in around the runtime's detach */
static int s_exit_key_made;

/* Exit-key values: a thread registered (it entered once), and a thread counted in for its exit. */
#define EXIT_REGISTERED ((void *)1)
#define EXIT_COUNTED    ((void *)2)

#define s_closed xmem_gate_closed
typedef xmem_thread_gate thread_gate;

static atomic_int *stripe_of(int i) { return &xmem_gate_stripes[i - 1].value; }

static long futex(atomic_uint *word, int op, uint32_t value, const struct timespec *timeout)
{
    return syscall(SYS_futex, word, op, value, timeout, NULL, 0);
}

/* Out while waiting (the preparer must not wait for us), in again once open; returns counted in and seen open. */
void xmem_gate_wait_while_closed(atomic_int *stripe)
{
    for (;;)
    {
        atomic_fetch_sub_explicit(stripe, 1, memory_order_seq_cst);
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

        atomic_fetch_add_explicit(stripe, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&s_closed, memory_order_seq_cst) == 0)
        {
            return; /* in, and seen open after counting in: a later preparer waits for us */
        }
    }
}

static void count_in(thread_gate *t)
{
    atomic_int *c = stripe_of(t->stripe);
    atomic_fetch_add_explicit(c, 1, memory_order_seq_cst); /* a full fence: closed is read after it is visible */
    if (atomic_load_explicit(&s_closed, memory_order_seq_cst) != 0)
    {
        xmem_gate_wait_while_closed(c);
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
            count_in(t);
        }

        if (pthread_setspecific(s_exit_key, EXIT_COUNTED) == 0)
        {
            return;
        }

        /* No round 2 (cannot happen: the key's slot exists already): out now rather than never. */
    }

    xmem_gate_leave(t);
}

__attribute__((constructor)) static void make_exit_key(void)
{
    /* Before the runtime starts (it does on the first call), so ours is the older key. EAGAIN (no key left) loses
       the exit's cover only: the calls are gated all the same. */
    s_exit_key_made = pthread_key_create(&s_exit_key, exit_destructor) == 0;
}

void xmem_gate_first_entry(thread_gate *t)
{
    /* Called with depth already 1. */
    if (t->stripe == 0)
    {
        t->stripe = 1 + (int)(atomic_fetch_add_explicit(&s_next_stripe, 1, memory_order_relaxed) % STRIPES);
    }

    count_in(t);
    /* Inside: the runtime attaches this thread now, and will detach it at its exit, in our key's cover. */
    t->registered = 1;
    if (s_exit_key_made)
    {
        (void)pthread_setspecific(s_exit_key, EXIT_REGISTERED);
    }
}

static int count_inside(void)
{
    int n = 0;
    for (int i = 1; i <= STRIPES; i++)
    {
        n += atomic_load_explicit(stripe_of(i), memory_order_acquire);
    }

    return n;
}

void xmem_gate_close(void)
{
    atomic_fetch_add_explicit(&s_closed, 1, memory_order_seq_cst); /* a full fence: stripes are read after it */
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
    for (int i = 1; i <= STRIPES; i++)
    {
        atomic_store_explicit(stripe_of(i), 0, memory_order_relaxed);
    }

    if (xmem_gate_thread.depth != 0)
    {
        atomic_store_explicit(stripe_of(xmem_gate_thread.stripe), 1, memory_order_relaxed);
    }

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
        atomic_fetch_sub_explicit(stripe_of(t->stripe), 1, memory_order_release);
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
