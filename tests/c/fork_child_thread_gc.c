/*
 * Reproduces an OPEN BUG (docs/robustness.md, "Open: a forked child's new threads and its next collection"); it is
 * not run by scripts/test-python.sh until the bug is fixed, because it fails today.
 *
 * A process whose runtime has started forks. In the child, one new thread calls xmem (and exits), then the child
 * allocates enough for a collection. The child hangs for ever in the runtime's ThreadStore::SuspendAllThreads.
 * gdb on the hung child shows the runtime's thread list as one Thread whose m_pNext is itself. The cause:
 * - The child's runtime still lists the parent's other threads, the runtime's finalizer thread at least. Their
 *   Thread objects live in their static TLS.
 * - glibc gives those threads' stacks, and so their TLS blocks, to the child's first new threads, and re-initializes
 *   the TLS there. The stale entry is zeroed, and the entries after it are lost (the forking thread among them).
 * - The new thread's attach then pushes the same address again, which makes a cycle.
 * The same child without the new thread collects fine, and so does a process that never forked. The Python form of
 * it: os.fork(), a threading.Thread in the child that acquires a buffer, then 60,000 pool opens: it hangs too.
 *
 *   gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/fork_child_thread_gc.c -L artifacts/native -lxmem \
 *       -lpthread -Wl,-rpath,'$ORIGIN' -o artifacts/native/fork_child_thread_gc && artifacts/native/fork_child_thread_gc
 * Exit 0: the child finished (the bug is fixed); 1: the child hung (killed after 30 s) or failed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "xmem.h"

static xmem_pool g_child_pool;

static void *one_call(void *arg)
{
    (void)arg;
    int32_t capacity = 0;
    return xmem_pool_capacity(g_child_pool, &capacity) == XMEM_OK ? (void *)1 : NULL;
}

static int child(void)
{
    char name[64];
    snprintf(name, sizeof name, "/xmem-fork-thread-gc-child-%d", (int)getpid());
    if (xmem_pool_create(name, 2, 0600, 0, &g_child_pool) != XMEM_OK) return 10;
    pthread_t t;
    void *ok = NULL;
    if (pthread_create(&t, NULL, one_call, NULL) != 0 || pthread_join(t, &ok) != 0 || ok == NULL) return 11;
    for (int i = 0; i < 60000; i++) /* about 3 KB of managed garbage each: collections */
    {
        xmem_pool other = 0;
        if (xmem_pool_open(name, &other) != XMEM_OK) return 12;
        xmem_pool_close(other);
    }
    xmem_pool_close(g_child_pool);
    return 0;
}

int main(void)
{
    char name[64];
    snprintf(name, sizeof name, "/xmem-fork-thread-gc-%d", (int)getpid());
    xmem_pool pool = 0;
    if (xmem_pool_create(name, 2, 0600, 0, &pool) != XMEM_OK) /* the runtime starts here */
    {
        fprintf(stderr, "fork_child_thread_gc: create: %s\n", xmem_last_error());
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) _exit(child());
    int status = 0;
    time_t deadline = time(NULL) + 30;
    while (waitpid(pid, &status, WNOHANG) == 0)
    {
        if (time(NULL) > deadline)
        {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            char child_pool[64];
            snprintf(child_pool, sizeof child_pool, "/xmem-fork-thread-gc-child-%d", (int)pid);
            int32_t removed = 0;
            (void)xmem_pool_remove(child_pool, &removed);
            xmem_pool_close(pool);
            fprintf(stderr, "fork_child_thread_gc: FAILED: the child hung (its runtime's first collection after a new "
                            "thread of its own called xmem)\n");
            return 1;
        }
        usleep(100000);
    }
    xmem_pool_close(pool);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    {
        fprintf(stderr, "fork_child_thread_gc: FAILED: the child ended with status %#x\n", status);
        return 1;
    }
    printf("fork_child_thread_gc: ok (a forked child's new thread called xmem, and its collections completed)\n");
    return 0;
}
