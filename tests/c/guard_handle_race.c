/*
 * Guard handles under racing threads, built against include/xmem.h only. Since guard handles are values in a
 * lock-free table over pooled, versioned guards (src/Xmem.Native/Handles/HandleTable.cs, src/Xmem/Pool/GuardCache.cs),
 * a handle that was released must never resolve again — not even when its table slot and its guard object were
 * reused at once for another thread's acquire — and of two racing releases of one handle exactly one succeeds.
 *
 * Each of THREADS threads, ROUNDS times: acquires a 64-byte buffer, stamps the handle's value into it, publishes the
 * handle in its box, then takes whatever handle its neighbour's box holds (current or long released) and
 *   - reads it: xmem_guard_cpu_ptr, the stamp, then xmem_guard_info again. Each call either succeeds or says the
 *     handle is gone (XMEM_E_INVALID_HANDLE, or XMEM_E_GUARD_INVALID when the release ran between the lookup and
 *     the read: found live, ended before its fields were read). If both calls succeeded the handle was
 *     live throughout (a handle value never comes back), so the stamp must be that handle: a stale handle that
 *     resolved to a reused guard would read another handle's stamp;
 *   - releases it, racing with its owner, who releases its own handle too: each acquire must be released exactly
 *     once (the OK releases are counted), and every other release is XMEM_E_INVALID_HANDLE.
 * At the end every slot's count is 0.
 *
 * Then, since the window between a lookup and the read of a guard's fields is a few instructions: one thread acquires
 * and releases, publishing each handle and holding it a varying moment, while another reads whatever handle is
 * published (xmem_guard_info, xmem_guard_cpu_ptr and xmem_guard_lease_view, for PHASE2_SECONDS) until it is gone.
 * Every read is OK (with this handle's slot and size) or says the handle is gone; a release racing with the read is
 * never another status (an internal error was the bug).
 *
 *   gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/guard_handle_race.c -L artifacts/native -lxmem \
 *       -lpthread -Wl,-rpath,'$ORIGIN' -o artifacts/native/guard_handle_race && artifacts/native/guard_handle_race
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

#define THREADS 4
#define ROUNDS 100000
#define CAPACITY 32
#define PHASE2_SECONDS 3

static xmem_pool g_pool;
static pthread_barrier_t g_start;
static _Atomic uint64_t g_box[THREADS];
static atomic_long g_acquired, g_released_ok, g_reads_ok, g_failures;
static _Atomic uint64_t g_published[1];
static _Atomic int g_readers_done;

static void fail(const char *what, uint64_t h, xmem_status s)
{
    fprintf(stderr, "guard_handle_race: FAILED: %s (handle %#llx, status %d %s: %s)\n", what, (unsigned long long)h, s,
            xmem_status_name(s), xmem_last_error());
    atomic_fetch_add(&g_failures, 1);
}

static void *run(void *arg)
{
    int t = (int)(intptr_t)arg;
    pthread_barrier_wait(&g_start);
    for (int r = 0; r < ROUNDS && atomic_load(&g_failures) == 0; r++) {
        xmem_guard g;
        xmem_buffer_info info;
        xmem_status s = xmem_pool_acquire_cpu(g_pool, 64, &g, &info);
        if (s == XMEM_E_POOL_FULL) {
            continue; /* the neighbours hold every slot for a moment */
        }
        if (s != XMEM_OK) {
            fail("acquire", 0, s);
            break;
        }
        atomic_fetch_add(&g_acquired, 1);
        memcpy(info.cpu_ptr, &g, sizeof g); /* the stamp, before the handle is published (release store below) */
        atomic_store_explicit(&g_box[t], g, memory_order_release);

        uint64_t other = atomic_load_explicit(&g_box[(t + 1) % THREADS], memory_order_acquire);
        if (other != 0) {
            void *p = NULL;
            xmem_status a = xmem_guard_cpu_ptr(other, &p);
            if (a == XMEM_OK) {
                uint64_t stamp;
                memcpy(&stamp, p, sizeof stamp);
                xmem_buffer_info again;
                xmem_status b = xmem_guard_info(other, &again);
                if (b == XMEM_OK) {
                    atomic_fetch_add(&g_reads_ok, 1);
                    if (stamp != other) {
                        fail("a handle live before and after the read pointed at another handle's buffer", other, b);
                    }
                } else if (b != XMEM_E_INVALID_HANDLE && b != XMEM_E_GUARD_INVALID) {
                    fail("info of a neighbour's handle", other, b);
                }
            } else if (a != XMEM_E_INVALID_HANDLE && a != XMEM_E_GUARD_INVALID) {
                fail("cpu_ptr of a neighbour's handle", other, a);
            }

            s = xmem_guard_release(other);
            if (s == XMEM_OK) {
                atomic_fetch_add(&g_released_ok, 1);
            } else if (s != XMEM_E_INVALID_HANDLE) {
                fail("release of a neighbour's handle", other, s);
            }
        }

        s = xmem_guard_release(g);
        if (s == XMEM_OK) {
            atomic_fetch_add(&g_released_ok, 1);
        } else if (s != XMEM_E_INVALID_HANDLE) {
            fail("release of an own handle", g, s);
        }
    }
    return NULL;
}

/* Phase 2, an owner: acquire, publish, release, until both readers are done. */
static void *churn(void *arg)
{
    int t = (int)(intptr_t)arg;
    unsigned n = 0;
    pthread_barrier_wait(&g_start);
    while (atomic_load(&g_readers_done) < 1 && atomic_load(&g_failures) == 0) {
        xmem_guard g;
        xmem_buffer_info info;
        xmem_status s = xmem_pool_acquire_cpu(g_pool, 64, &g, &info);
        if (s == XMEM_E_POOL_FULL) {
            continue;
        }
        if (s != XMEM_OK) {
            fail("phase 2: acquire", 0, s);
            break;
        }
        atomic_store_explicit(&g_published[t], g, memory_order_release);
        for (volatile unsigned spin = 0; spin < (n++ * 7919u) % 512u; spin++) {
            /* hold it a varying moment, so that releases land anywhere in the readers' calls */
        }
        s = xmem_guard_release(g);
        if (s != XMEM_OK) {
            fail("phase 2: release of an own handle", g, s);
            break;
        }
    }
    return NULL;
}

/* Phase 2, a reader: info and cpu_ptr of the handle an owner published last, racing with its release. */
static void *read_published(void *arg)
{
    int t = (int)(intptr_t)arg;
    pthread_barrier_wait(&g_start);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long elapsed_ns = 0;
    while (elapsed_ns < PHASE2_SECONDS * 1000000000L && atomic_load(&g_failures) == 0) {
        uint64_t h = atomic_load_explicit(&g_published[t], memory_order_acquire);
        /* Read this handle until it is gone, so that its release lands inside one of the calls. */
        for (xmem_status s = XMEM_OK; h != 0 && s == XMEM_OK;) {
            xmem_buffer_info info;
            s = xmem_guard_info(h, &info);
            if (s == XMEM_OK) {
                atomic_fetch_add(&g_reads_ok, 1);
                if (info.size != 64 || info.cpu_ptr == NULL || info.meta_index < 0 || info.meta_index >= CAPACITY) {
                    fail("phase 2: info of a live handle is not its buffer's", h, s);
                }
            } else if (s != XMEM_E_INVALID_HANDLE && s != XMEM_E_GUARD_INVALID) {
                fail("phase 2: info racing with a release", h, s);
                break;
            }
            void *p = NULL;
            xmem_status c = xmem_guard_cpu_ptr(h, &p);
            if (c == XMEM_OK && p == NULL) {
                fail("phase 2: cpu_ptr of a live handle is NULL", h, c);
            } else if (c != XMEM_OK && c != XMEM_E_INVALID_HANDLE && c != XMEM_E_GUARD_INVALID) {
                fail("phase 2: cpu_ptr racing with a release", h, c);
                break;
            }
            xmem_lease lease = 0;
            void *lp = NULL;
            int64_t len = 0;
            xmem_status l = xmem_guard_lease_view(h, &lease, &lp, &len);
            if (l == XMEM_OK) {
                if (lp == NULL || len != 64) {
                    fail("phase 2: the lease of a live handle is not its buffer's", h, l);
                }
                xmem_status lr = xmem_lease_release(lease);
                if (lr != XMEM_OK) {
                    fail("phase 2: release of a lease", lease, lr);
                }
            } else if (l != XMEM_E_INVALID_HANDLE && l != XMEM_E_GUARD_INVALID) {
                fail("phase 2: lease_view racing with a release", h, l);
                break;
            }
            s = s == XMEM_OK ? c : s;
            s = s == XMEM_OK ? l : s;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        elapsed_ns = (now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec);
    }
    atomic_fetch_add(&g_readers_done, 1);
    return NULL;
}

int main(void)
{
    char name[64];
    snprintf(name, sizeof name, "/xmem-ghrace-%d", (int)getpid());
    xmem_status s = xmem_pool_create(name, CAPACITY, 0600, 0, &g_pool);
    if (s != XMEM_OK) {
        fprintf(stderr, "guard_handle_race: create: %s\n", xmem_last_error());
        return 1;
    }

    pthread_t th[THREADS];
    pthread_barrier_init(&g_start, NULL, THREADS);
    for (int t = 0; t < THREADS; t++) {
        pthread_create(&th[t], NULL, run, (void *)(intptr_t)t);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
    }

    long reads_phase1 = atomic_load(&g_reads_ok);
    atomic_store(&g_reads_ok, 0);
    pthread_barrier_destroy(&g_start);
    pthread_barrier_init(&g_start, NULL, 2);
    pthread_t ph[2];
    pthread_create(&ph[0], NULL, churn, (void *)(intptr_t)0);
    pthread_create(&ph[1], NULL, read_published, (void *)(intptr_t)0);
    for (int t = 0; t < 2; t++) {
        pthread_join(ph[t], NULL);
    }
    long reads_phase2 = atomic_load(&g_reads_ok);

    long acquired = atomic_load(&g_acquired), released = atomic_load(&g_released_ok);
    if (released != acquired) {
        fprintf(stderr, "guard_handle_race: FAILED: %ld acquires but %ld successful releases\n", acquired, released);
        atomic_fetch_add(&g_failures, 1);
    }
    for (int32_t i = 0; i < CAPACITY; i++) {
        int32_t n = -1;
        if (xmem_pool_ref_count(g_pool, i, &n) != XMEM_OK || n != 0) {
            fprintf(stderr, "guard_handle_race: FAILED: slot %d has count %d at the end\n", i, n);
            atomic_fetch_add(&g_failures, 1);
        }
    }
    xmem_pool_close(g_pool);
    int32_t removed = 0;
    xmem_pool_remove(name, &removed);
    if (atomic_load(&g_failures) != 0) {
        return 1;
    }
    printf("guard_handle_race: ok (%ld acquires, each released once; %ld reads of a neighbour's live handle checked; "
           "%ld reads of a handle racing with its release found it live)\n",
           acquired, reads_phase1, reads_phase2);
    return 0;
}
