/* The runtime's list of threads in a child made by fork().
 *
 * The .NET runtime linked into libxmem keeps every thread that ever ran managed code on a list (ThreadStore's
 * m_ThreadList, linked through Thread::m_pNext), and a Thread object lives in its thread's TLS (tls_CurrentThread).
 * A child made by fork() has one thread, but its copy of the runtime still lists all the parent's: the runtime's
 * finalizer thread, and every parent thread that had called xmem and was alive. While their memory stays as the
 * fork copied it they are harmless (they are in preemptive mode: the fork gate let no thread stay inside the
 * runtime, so a collection does not wait for them). But glibc gives the dead threads' stacks, and the TLS blocks in
 * them, to the child's new threads and re-initializes that TLS: the stale Thread is zeroed (the entries after it on
 * the list are lost, the forking thread's among them), and when the new thread calls xmem its attach pushes the same
 * address again, a cycle: the child's next collection hung for ever in ThreadStore::SuspendAllThreads
 * (tests/c/fork_child_thread_gc.c). The runtime has no call that forgets another thread, nor one for fork.
 *
 * So fork()'s child handler (Exports/ForkHandlers.cs) calls xmem_gate_runtime_forget_parent_threads, on the forking
 * thread and before the child can start one, which does for each listed parent thread what the runtime does when a
 * thread exits (ThreadStore::DetachCurrentThread), but from the forking thread:
 * - Thread::Detach: the thread's allocation context (the part of the GC heap handed to it and not yet filled) goes
 *   back to the GC as a free object (GCHeap::FixAllocContext), so the heap stays walkable, and the thread is marked
 *   detached;
 * - the thread leaves the list: the forking thread becomes its only entry.
 * Their stack roots go (nothing runs on those threads, ever), and so do their thread statics; what they pinned
 * through handles stays pinned. The rest of Thread::Destroy (closing the thread's handle, its signal stack) is
 * memory of the dead thread's copy, left as it is.
 *
 * This reads and writes the runtime's private state, so it checks that state before it changes anything: the
 * layout (the offsets below, from the runtime this library is built with: Microsoft.DotNet.ILCompiler 10.0, checked
 * with gdb's ptype /o against libxmem.so.dbg) must give a list that ends within a bound, holds the calling thread
 * exactly once as attached, and holds only attached threads. Otherwise nothing is changed, and the child keeps the
 * limit this fixes (docs/robustness.md); tests/c/fork_child_thread_gc.c, run by scripts/test-python.sh, fails then.
 * Concurrency: none. Only fork()'s child handler calls this, when the child's only thread is the caller; the
 * runtime's thread-store lock was free at the fork (a thread's attach and detach are inside the fork gate).
 */
#define _GNU_SOURCE
#include "runtime_threads.h"

#include <stddef.h>
#include <stdint.h>

/* The runtime's own functions (hidden symbols of its static library, linked into libxmem.so). */
extern void *RhpGetThread(void);                                             /* &tls_CurrentThread, C linkage */
extern void *xmem_runtime_thread_store(void) __asm__("_Z14GetThreadStorev"); /* ThreadStore *GetThreadStore() */
extern void xmem_runtime_detach(void *thread) __asm__("_ZN6Thread6DetachEv"); /* void Thread::Detach() (this) */

/* Offsets into Thread (RuntimeThreadLocals), and ThreadStore's first field, m_ThreadList.m_pHead. */
enum
{
    THREAD_STATE_FLAGS = 64, /* m_ThreadStateFlags (uint32_t) */
    THREAD_NEXT = 96,        /* m_pNext */
};

enum
{
    TSF_ATTACHED = 0x1,
    TSF_DETACHED = 0x2,
    MAX_LISTED = 1 << 20, /* more listed threads than this means the list is not what we think it is */
};

static uint32_t state_of(const char *thread)
{
    return *(const volatile uint32_t *)(thread + THREAD_STATE_FLAGS);
}

static char *next_of(const char *thread)
{
    return *(char *const volatile *)(thread + THREAD_NEXT);
}

static int attached(const char *thread)
{
    return (state_of(thread) & (TSF_ATTACHED | TSF_DETACHED)) == TSF_ATTACHED;
}

/* Checks the list; returns the number of listed threads other than self, or -1. */
static int walk(char *const volatile *head, const char *self)
{
    int others = 0, selves = 0;
    for (const char *p = *head; p != NULL; p = next_of(p))
    {
        if ((uintptr_t)p % _Alignof(void *) != 0 || others + selves >= MAX_LISTED || !attached(p))
        {
            return -1;
        }

        if (p == self)
        {
            selves++;
            continue;
        }

        others++;
    }

    return selves == 1 ? others : -1;
}

static char *volatile *list_head(void)
{
    void *store = xmem_runtime_thread_store();
    return store != NULL ? (char *volatile *)store : NULL;
}

int xmem_gate_runtime_forget_parent_threads(void)
{
    char *volatile *head = list_head();
    char *self = RhpGetThread();
    if (head == NULL || self == NULL || !attached(self))
    {
        return -1;
    }

    int others = walk(head, self);
    if (others <= 0)
    {
        return others;
    }

    for (char *p = *head; p != NULL; p = next_of(p))
    {
        if (p != self)
        {
            xmem_runtime_detach(p);
        }
    }

    *(char *volatile *)(self + THREAD_NEXT) = NULL;
    *head = self;
    return others;
}
