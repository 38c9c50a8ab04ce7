/*
 * A forked child's own threads call xmem, and the child's collections complete (docs/robustness.md, "A forked
 * child's new threads"). The bug this guards against, found 2026-12-02:
 * - A forked child's runtime still listed the parent's other threads (the runtime's finalizer thread at least, and
 *   every parent thread that had called xmem), although they do not exist in the child. Their Thread objects live in
 *   their TLS.
 * - glibc gives those threads' stacks, and so their TLS blocks, to the child's first new threads, and re-initializes
 *   the TLS there: the stale entry was zeroed and the entries after it lost (the forking thread among them).
 * - The new thread's attach then pushed the same address again: a cycle, and the child's next collection hung for
 *   ever in ThreadStore::SuspendAllThreads.
 * The fix (src/Xmem.Native/Gate/runtime_threads.c): fork's child handler collects once, while the parent's threads'
 * stacks are still intact, and then leaves the forking thread alone on the runtime's list.
 *
 * What it does, ROUNDS times: the parent has PARENT_THREADS threads that called xmem and are alive (blocked) at the
 * fork. The child creates its own pool, runs CHILD_THREADS short threads that call xmem (each reuses a stack of a
 * parent thread), keeps one more alive, allocates enough managed garbage for many collections, and then forks a
 * grandchild while its own thread is alive, which does the same once more. Every process checks its counts.
 *
 *   fork_child_thread_gc [ROUNDS]
 * Exit 0: every child and grandchild finished; 1: one hung (killed after 60 s) or failed (the line says which).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child_wait.h"
#include "xmem.h"

#define PARENT_THREADS 3
#define CHILD_THREADS 3
#define GARBAGE_ROUNDS 30000 /* pool opens, about 3 KB of managed garbage each: tens of collections */

static xmem_pool g_pool; /* the pool of the process the thread runs in */
static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_release; /* set (under g_mutex) when the blocked threads may end */
static int g_blocked; /* how many threads called xmem and now wait for g_release */

/* A few calls on g_pool: a capacity, an acquire and its release. Returns 1 when they all succeeded. */
static int some_calls(void)
{
    int32_t capacity = 0;
    xmem_guard g = 0;
    xmem_buffer_info info;
    return xmem_pool_capacity(g_pool, &capacity) == XMEM_OK && capacity == 4 &&
           xmem_pool_acquire_cpu(g_pool, 4096, &g, &info) == XMEM_OK && xmem_guard_release(g) == XMEM_OK;
}

static void *short_thread(void *arg)
{
    (void)arg;
    return some_calls() ? (void *)1 : NULL;
}

/* Calls xmem, then stays alive (so that it is the runtime's, and its stack glibc's, at the next fork). */
static void *blocked_thread(void *arg)
{
    (void)arg;
    int ok = some_calls();
    pthread_mutex_lock(&g_mutex);
    g_blocked++;
    pthread_cond_broadcast(&g_cond);
    while (!g_release) pthread_cond_wait(&g_cond, &g_mutex);
    pthread_mutex_unlock(&g_mutex);
    return ok ? (void *)1 : NULL;
}

static int start_blocked(pthread_t *threads, int n)
{
    for (int i = 0; i < n; i++)
        if (pthread_create(&threads[i], NULL, blocked_thread, NULL) != 0) return 0;
    pthread_mutex_lock(&g_mutex);
    while (g_blocked < n) pthread_cond_wait(&g_cond, &g_mutex);
    pthread_mutex_unlock(&g_mutex);
    return 1;
}

static int end_blocked(pthread_t *threads, int n)
{
    pthread_mutex_lock(&g_mutex);
    g_release = 1;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_mutex);
    int ok = 1;
    for (int i = 0; i < n; i++)
    {
        void *r = NULL;
        ok &= pthread_join(threads[i], &r) == 0 && r != NULL;
    }
    g_release = 0;
    g_blocked = 0;
    return ok;
}

/* Waits up to 60 s for pid; kills it when it hangs. Returns 0 when it exited 0, else reports what and returns 1. */
static int wait_for(pid_t pid, const char *who)
{
    int status = 0;
    if (wait_child_within(pid, 60, &status))
    {
        char name[64];
        snprintf(name, sizeof name, "/xmem-fork-thread-gc-%d", (int)pid);
        int32_t removed = 0;
        (void)xmem_pool_remove(name, &removed);
        fprintf(stderr, "fork_child_thread_gc: FAILED: the %s hung (its runtime's collections after threads of its "
                        "own called xmem)\n", who);
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    {
        fprintf(stderr, "fork_child_thread_gc: FAILED: the %s ended with status %#x\n", who, status);
        return 1;
    }
    return 0;
}

/* The child's (depth 0) or grandchild's (depth 1) part; its exit code. */
static int forked(int depth)
{
    char name[64];
    snprintf(name, sizeof name, "/xmem-fork-thread-gc-%d", (int)getpid());
    /* Fresh ones: the parent's were copied while its threads waited on them. */
    pthread_mutex_init(&g_mutex, NULL);
    pthread_cond_init(&g_cond, NULL);
    g_release = 0;
    g_blocked = 0;
    if (xmem_pool_create(name, 4, 0600, 0, &g_pool) != XMEM_OK) return 10;
    int rc = 0;
    pthread_t t[CHILD_THREADS];
    for (int i = 0; i < CHILD_THREADS && rc == 0; i++)
    {
        void *ok = NULL;
        if (pthread_create(&t[i], NULL, short_thread, NULL) != 0 || pthread_join(t[i], &ok) != 0 || ok == NULL)
            rc = 11;
    }
    pthread_t kept[1];
    int kept_started = rc == 0 && start_blocked(kept, 1);
    if (rc == 0 && !kept_started) rc = 12;
    for (int i = 0; i < GARBAGE_ROUNDS && rc == 0; i++)
    {
        xmem_pool other = 0;
        if (xmem_pool_open(name, &other) != XMEM_OK) rc = 13;
        else xmem_pool_close(other);
    }
    if (rc == 0 && depth == 0)
    {
        pid_t pid = fork();
        if (pid == 0) _exit(forked(1));
        if (pid < 0 || wait_for(pid, "grandchild") != 0) rc = 14;
    }
    if (kept_started && !end_blocked(kept, 1) && rc == 0) rc = 15;
    if (rc == 0 && !some_calls()) rc = 16;
    xmem_pool_close(g_pool);
    int32_t removed = 0;
    (void)xmem_pool_remove(name, &removed);
    return rc;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 4;
    char name[64];
    snprintf(name, sizeof name, "/xmem-fork-thread-gc-%d", (int)getpid());
    if (xmem_pool_create(name, 4, 0600, 0, &g_pool) != XMEM_OK) /* the runtime starts here */
    {
        fprintf(stderr, "fork_child_thread_gc: create: %s\n", xmem_last_error());
        return 1;
    }
    xmem_pool parent_pool = g_pool;
    pthread_t threads[PARENT_THREADS];
    int failed = !start_blocked(threads, PARENT_THREADS);
    for (int r = 0; r < rounds && !failed; r++)
    {
        pid_t pid = fork();
        if (pid == 0) _exit(forked(0));
        failed = pid < 0 || wait_for(pid, "child");
    }
    g_pool = parent_pool;
    failed |= !end_blocked(threads, PARENT_THREADS);
    xmem_pool_close(parent_pool);
    if (failed) return 1;
    printf("fork_child_thread_gc: ok (%d children and grandchildren: their own threads called xmem with the "
           "parent's threads alive at the fork, and their collections completed)\n", rounds);
    return 0;
}
