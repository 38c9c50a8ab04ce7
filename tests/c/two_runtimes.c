/*
 * Two .NET runtimes in one process: libxmem.so and a copy of it (another file, so the loader maps it again: its own
 * runtime, GC, thread store and fork gate), as when a process loads xmem beside another NativeAOT library. Both
 * install handlers for the same signals (the GC's activation signal, SIGSEGV), the second over the first. Two
 * threads per copy loop over pool open + close (managed garbage: many collections in each runtime, each suspending its
 * own threads with that signal) and acquire + release, for SECONDS; every call must succeed and the process must end
 * (a runtime that swallowed the other's signal would leave that one's collection waiting for ever). Then the process
 * forks while both copies' threads still run: each copy's fork handlers run, and the child uses both copies, from
 * its forking thread and from a thread of its own.
 *
 *   gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/two_runtimes.c -ldl -lpthread \
 *       -o artifacts/native/two_runtimes && artifacts/native/two_runtimes artifacts/native/libxmem.so [SECONDS]
 * Exit 0: both copies ran every round (the line says how many); 1: a call failed; a hang is killed by the caller's
 * timeout.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child_wait.h"
#include "xmem.h"

typedef struct
{
    void *handle;
    const char *tag;
    xmem_status (*create)(const char *, int32_t, uint32_t, uint32_t, xmem_pool *);
    xmem_status (*open)(const char *, xmem_pool *);
    xmem_status (*close)(xmem_pool);
    xmem_status (*remove)(const char *, int32_t *);
    xmem_status (*acquire)(xmem_pool, int64_t, xmem_guard *, xmem_buffer_info *);
    xmem_status (*release)(xmem_guard);
    const char *(*last_error)(void);
    char name[64];
    xmem_pool pool;
    atomic_long rounds;
} copy;

static copy g_copies[2];
static atomic_int g_stop, g_failures;

static void *symbol(void *handle, const char *name)
{
    void *p = dlsym(handle, name);
    if (p == NULL)
    {
        fprintf(stderr, "two_runtimes: %s: %s\n", name, dlerror());
        exit(1);
    }
    return p;
}

static void load(copy *c, const char *path, const char *tag)
{
    c->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (c->handle == NULL)
    {
        fprintf(stderr, "two_runtimes: %s\n", dlerror());
        exit(1);
    }
    c->tag = tag;
    *(void **)&c->create = symbol(c->handle, "xmem_pool_create");
    *(void **)&c->open = symbol(c->handle, "xmem_pool_open");
    *(void **)&c->close = symbol(c->handle, "xmem_pool_close");
    *(void **)&c->remove = symbol(c->handle, "xmem_pool_remove");
    *(void **)&c->acquire = symbol(c->handle, "xmem_pool_acquire_cpu");
    *(void **)&c->release = symbol(c->handle, "xmem_guard_release");
    *(void **)&c->last_error = symbol(c->handle, "xmem_last_error");
    snprintf(c->name, sizeof c->name, "/xmem-two-runtimes-%s-%d", tag, (int)getpid());
}

/* A copy of the library in a file of its own (deleted once loaded: the mapping keeps it). */
static void copy_library(const char *from, char *to, size_t size)
{
    snprintf(to, size, "/tmp/xmem-two-runtimes-%d-XXXXXX", (int)getpid());
    int out = mkstemp(to), in = open(from, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (out < 0 || in < 0 || fstat(in, &st) != 0)
    {
        perror("two_runtimes: copy");
        exit(1);
    }
    for (off_t done = 0; done < st.st_size;)
    {
        ssize_t n = sendfile(out, in, NULL, (size_t)(st.st_size - done));
        if (n <= 0)
        {
            perror("two_runtimes: sendfile");
            exit(1);
        }
        done += n;
    }
    close(in);
    close(out);
}

static void fail(copy *c, const char *what)
{
    if (atomic_fetch_add(&g_failures, 1) < 5) fprintf(stderr, "two_runtimes: copy %s: %s: %s\n", c->tag, what, c->last_error());
}

static void *worker(void *arg)
{
    copy *c = arg;
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed))
    {
        xmem_pool other = 0;
        if (c->open(c->name, &other) != XMEM_OK) { fail(c, "open"); break; }
        if (c->close(other) != XMEM_OK) { fail(c, "close"); break; }
        xmem_guard g = 0;
        xmem_buffer_info info;
        if (c->acquire(c->pool, 4096, &g, &info) != XMEM_OK) { fail(c, "acquire"); break; }
        ((volatile unsigned char *)info.cpu_ptr)[0] = 1;
        if (c->release(g) != XMEM_OK) { fail(c, "release"); break; }
        atomic_fetch_add_explicit(&c->rounds, 1, memory_order_relaxed);
    }
    return NULL;
}

/* In a forked child: one round on each copy (its own open of each pool). */
static void *child_round(void *arg)
{
    (void)arg;
    for (int k = 0; k < 2; k++)
    {
        copy *c = &g_copies[k];
        xmem_pool p = 0;
        xmem_guard g = 0;
        xmem_buffer_info info;
        if (c->open(c->name, &p) != XMEM_OK || c->acquire(p, 4096, &g, &info) != XMEM_OK || c->release(g) != XMEM_OK ||
            c->close(p) != XMEM_OK)
            return NULL;
    }
    return (void *)1;
}

/* Forks while the workers run; 0 when the child used both copies from both of its threads and exited 0. */
static int fork_and_use_both(void)
{
    pid_t pid = fork();
    if (pid == 0)
    {
        void *ok = child_round(NULL);
        pthread_t t;
        void *ok2 = NULL;
        if (ok == NULL || pthread_create(&t, NULL, child_round, NULL) != 0 || pthread_join(t, &ok2) != 0 || ok2 == NULL)
            _exit(1);
        _exit(0);
    }
    int status = 0;
    if (wait_child_within(pid, 60, &status))
    {
        fprintf(stderr, "two_runtimes: the forked child hung\n");
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    {
        fprintf(stderr, "two_runtimes: the forked child ended with status %#x\n", status);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
    {
        fprintf(stderr, "usage: two_runtimes LIBXMEM [SECONDS]\n");
        return 2;
    }
    int seconds = argc > 2 ? atoi(argv[2]) : 5;
    char second[96];
    copy_library(argv[1], second, sizeof second);
    load(&g_copies[0], argv[1], "a");
    load(&g_copies[1], second, "b");
    unlink(second);
    if (g_copies[0].create == g_copies[1].create)
    {
        fprintf(stderr, "two_runtimes: the loader gave the same library twice\n");
        return 1;
    }
    for (int k = 0; k < 2; k++)
    {
        if (g_copies[k].create(g_copies[k].name, 8, 0600, 0, &g_copies[k].pool) != XMEM_OK)
        {
            fail(&g_copies[k], "create");
            return 1;
        }
    }
    pthread_t t[4];
    for (int k = 0; k < 4; k++) pthread_create(&t[k], NULL, worker, &g_copies[k % 2]);
    sleep((unsigned)seconds);
    int child_failed = fork_and_use_both();
    atomic_store(&g_stop, 1);
    for (int k = 0; k < 4; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < 2; k++)
    {
        int32_t removed = 0;
        g_copies[k].close(g_copies[k].pool);
        (void)g_copies[k].remove(g_copies[k].name, &removed);
    }
    long a = atomic_load(&g_copies[0].rounds), b = atomic_load(&g_copies[1].rounds);
    if (atomic_load(&g_failures) != 0 || a == 0 || b == 0 || child_failed) return 1;
    printf("two_runtimes: ok (two copies of libxmem in one process, two threads each, %d s: %ld and %ld rounds of "
           "open + close + acquire + release; a child forked meanwhile used both)\n", seconds, a, b);
    return 0;
}
