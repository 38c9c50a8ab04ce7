/* What fork() costs a process that uses libxmem: fork + _exit(0) in the child + waitpid, with THREADS threads (default
 * 3) that called xmem and are alive at each fork, so that the child handlers (the fork gate's reset, the runtime's
 * parent threads detached, the inherited pools made inert) have their usual work.
 *   gcc -O2 -I include bench/c/fork_cost.c -L artifacts/native -lxmem -lpthread -Wl,-rpath,"$PWD/artifacts/native" \
 *       -o /tmp/fork_cost && /tmp/fork_cost [forks [threads]]
 * Two builds of libxmem side by side: LD_LIBRARY_PATH=<dir> /tmp/fork_cost (the rpath above is a RUNPATH, which
 * LD_LIBRARY_PATH overrides). Prints the mean and the best round trip in microseconds. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "xmem.h"

static xmem_pool pool;

static void *thread_main(void *arg)
{
    (void)arg;
    int32_t capacity;
    xmem_guard g;
    xmem_buffer_info info;
    if (xmem_pool_capacity(pool, &capacity) != XMEM_OK || xmem_pool_acquire_cpu(pool, 4096, &g, &info) != XMEM_OK ||
        xmem_guard_release(g) != XMEM_OK)
        fprintf(stderr, "fork_cost: thread: %s\n", xmem_last_error());
    pause(); /* alive at every fork; the process's exit ends it */
    return NULL;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    int forks = argc > 1 ? atoi(argv[1]) : 1000, threads = argc > 2 ? atoi(argv[2]) : 3;
    char name[64];
    snprintf(name, sizeof name, "/xmem-fork-cost-%d", (int)getpid());
    if (xmem_pool_create(name, 4, 0600, 0, &pool) != XMEM_OK)
    {
        fprintf(stderr, "fork_cost: create: %s\n", xmem_last_error());
        return 1;
    }
    for (int i = 0; i < threads; i++)
    {
        pthread_t t;
        pthread_create(&t, NULL, thread_main, NULL);
    }
    usleep(100000);
    double best = 1e18, sum = 0;
    for (int r = 0; r < forks; r++)
    {
        double start = now_us();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        int status;
        waitpid(pid, &status, 0);
        double took = now_us() - start;
        sum += took;
        if (took < best) best = took;
    }
    printf("fork + exit + wait, %d runtime threads besides the forking one: mean %.1f us, best %.1f us (%d forks)\n",
           threads, sum / forks, best, forks);
    xmem_pool_close(pool);
    int32_t removed;
    xmem_pool_remove(name, &removed);
    return 0;
}
