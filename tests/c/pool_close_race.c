/*
 * xmem_pool_close while other threads are inside calls on the same pool, built against include/xmem.h only.
 *
 * The calls that never sleep take no count on the pool handle: the close refuses new calls, then waits until every
 * thread that was inside a call has left it (src/Xmem.Native/Handles/CountedTarget.cs, the fork gate's
 * xmem_gate_wait_calls_in_flight), and only then disposes the pool. A close that did not wait would unmap the pool's
 * control segment under a call in flight: a SIGSEGV, or a call reading freed state.
 *
 * ROUNDS times: a pool of 8 slots; THREADS threads loop over capacity, ref_count, acquire_cpu + get + description +
 * set_description + release, until the pool handle is gone; the main thread closes the pool after 0–1 ms. Every
 * status must be one of OK, INVALID_HANDLE (the handle was closed), DISPOSED (a guard's pool was closed) or
 * GUARD_INVALID (its reference ended with the close). Two threads also close other pools of their own at the same
 * time as the main thread's close, so that two grace periods overlap (each steps out of the gate while it waits).
 *
 *   gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/pool_close_race.c -L artifacts/native -lxmem \
 *       -lpthread -Wl,-rpath,'$ORIGIN' -o artifacts/native/pool_close_race && artifacts/native/pool_close_race [ROUNDS]
 * Exit 0: every round ended with allowed statuses only (a crash is the failure this guards against).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xmem.h"

#define THREADS 3
#define CLOSERS 2

static xmem_pool g_pool;
static atomic_int g_go;
static atomic_long g_calls, g_failures;

static int allowed(xmem_status s)
{
    return s == XMEM_OK || s == XMEM_E_INVALID_HANDLE || s == XMEM_E_DISPOSED || s == XMEM_E_GUARD_INVALID;
}

static int check(const char *what, xmem_status s)
{
    atomic_fetch_add_explicit(&g_calls, 1, memory_order_relaxed);
    if (!allowed(s))
    {
        if (atomic_fetch_add(&g_failures, 1) < 5)
            fprintf(stderr, "pool_close_race: %s: status %d: %s\n", what, (int)s, xmem_last_error());
    }
    return s == XMEM_OK;
}

static void *caller(void *arg)
{
    (void)arg;
    xmem_pool pool = g_pool;
    while (!atomic_load(&g_go)) { }
    for (;;)
    {
        int32_t n = 0;
        xmem_status s = xmem_pool_capacity(pool, &n);
        check("capacity", s);
        if (s == XMEM_E_INVALID_HANDLE) break;
        check("ref_count", xmem_pool_ref_count(pool, 3, &n));
        xmem_guard g = 0, r = 0;
        xmem_buffer_info info;
        if (check("acquire_cpu", xmem_pool_acquire_cpu(pool, 4096, &g, &info)))
        {
            if (check("get", xmem_pool_get(pool, info.meta_index, &r, &info)))
                check("release get", xmem_guard_release(r));
            xmem_description d;
            memset(&d, 0, sizeof d);
            check("description", xmem_guard_description(g, &d));
            d.dtype = XMEM_DTYPE_UINT8;
            d.ndim = 1;
            d.shape[0] = 4096;
            d.strides[0] = 1;
            check("set_description", xmem_guard_set_description(g, &d));
            check("release", xmem_guard_release(g));
        }
    }
    return NULL;
}

/* Opens and closes another pool of its own in a loop while the main thread's close runs: overlapping grace periods. */
static void *closer(void *arg)
{
    const char *name = arg;
    while (!atomic_load(&g_go)) { }
    for (int i = 0; i < 20; i++)
    {
        xmem_pool p = 0;
        if (check("open (closer)", xmem_pool_open(name, &p)))
            check("close (closer)", xmem_pool_close(p));
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 300;
    char name[64], other[64];
    snprintf(name, sizeof name, "/xmem-close-race-%d", (int)getpid());
    snprintf(other, sizeof other, "/xmem-close-race-other-%d", (int)getpid());
    xmem_pool keep = 0;
    if (xmem_pool_create(other, 2, 0600, 0, &keep) != XMEM_OK)
    {
        fprintf(stderr, "pool_close_race: create: %s\n", xmem_last_error());
        return 1;
    }
    srand((unsigned)time(NULL));
    for (int round = 0; round < rounds && atomic_load(&g_failures) == 0; round++)
    {
        if (xmem_pool_create(name, 8, 0600, 0, &g_pool) != XMEM_OK)
        {
            fprintf(stderr, "pool_close_race: create: %s\n", xmem_last_error());
            return 1;
        }
        atomic_store(&g_go, 0);
        pthread_t t[THREADS + CLOSERS];
        for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, caller, NULL);
        for (int i = 0; i < CLOSERS; i++) pthread_create(&t[THREADS + i], NULL, closer, other);
        atomic_store(&g_go, 1);
        usleep((useconds_t)(rand() % 1000));
        if (xmem_pool_close(g_pool) != XMEM_OK)
        {
            fprintf(stderr, "pool_close_race: close: %s\n", xmem_last_error());
            return 1;
        }
        for (int i = 0; i < THREADS + CLOSERS; i++) pthread_join(t[i], NULL);
        int32_t removed = 0;
        (void)xmem_pool_remove(name, &removed);
    }
    xmem_pool_close(keep);
    int32_t removed = 0;
    (void)xmem_pool_remove(other, &removed);
    if (atomic_load(&g_failures) != 0) return 1;
    printf("pool_close_race: ok (%d closes while %d threads called the pool: %ld calls, only OK or closed)\n", rounds,
           THREADS, atomic_load(&g_calls));
    return 0;
}
