/* Pool calls from several threads on one pool handle: ns per xmem_pool_ref_count (or acquire + release) per thread,
 * with 1..THREADS threads at once. A call that writes a line every thread writes (a user count on the pool handle)
 * slows down as threads are added; one that writes only its own thread's lines does not.
 *   gcc -O2 -I include bench/c/pool_call_threads.c -L artifacts/native -lxmem -lpthread \
 *       -Wl,-rpath,"$PWD/artifacts/native" -o /tmp/pool_call_threads && /tmp/pool_call_threads [calls [threads]]
 * Two builds side by side: LD_LIBRARY_PATH=<dir> /tmp/pool_call_threads (the rpath is a RUNPATH). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "xmem.h"

static xmem_pool pool;
static long calls;
static int kind; /* 0: ref_count, 1: acquire_cpu + release */
static pthread_barrier_t start;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void *run(void *arg)
{
    double *out = arg;
    int32_t n;
    xmem_guard g;
    xmem_buffer_info info;
    pthread_barrier_wait(&start);
    double t0 = now_ns();
    for (long i = 0; i < calls; i++)
    {
        if (kind == 0)
            xmem_pool_ref_count(pool, 0, &n);
        else if (xmem_pool_acquire_cpu(pool, 4096, &g, &info) == XMEM_OK)
            xmem_guard_release(g);
    }
    *out = (now_ns() - t0) / calls;
    return NULL;
}

int main(int argc, char **argv)
{
    calls = argc > 1 ? atol(argv[1]) : 2000000;
    int max_threads = argc > 2 ? atoi(argv[2]) : 2;
    char name[64];
    snprintf(name, sizeof name, "/xmem-pool-call-threads-%d", (int)getpid());
    if (xmem_pool_create(name, 16, 0600, 0, &pool) != XMEM_OK)
    {
        fprintf(stderr, "pool_call_threads: create: %s\n", xmem_last_error());
        return 1;
    }
    for (kind = 0; kind < 2; kind++)
    {
        for (int threads = 1; threads <= max_threads; threads++)
        {
            pthread_t t[64];
            double ns[64];
            pthread_barrier_init(&start, NULL, (unsigned)threads);
            for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, run, &ns[i]);
            double worst = 0;
            for (int i = 0; i < threads; i++)
            {
                pthread_join(t[i], NULL);
                if (ns[i] > worst) worst = ns[i];
            }
            pthread_barrier_destroy(&start);
            printf("%s, %d thread%s: %.1f ns per call (slowest thread)\n",
                   kind == 0 ? "ref_count" : "acquire_cpu + release", threads, threads == 1 ? "" : "s", worst);
        }
    }
    xmem_pool_close(pool);
    int32_t removed;
    xmem_pool_remove(name, &removed);
    return 0;
}
