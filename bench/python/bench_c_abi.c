/* The C ABI's own cost, no Python: the "core's own cost" the Python numbers are compared with.
   Built and run by bench_python.py:  bench_c_abi <pool-name> <iterations>
   Prints one line per operation: "<name> <ns per op>". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "xmem.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#define MUST(call) do { if ((call) != XMEM_OK) { fprintf(stderr, "%s: %s\n", #call, xmem_last_error()); return 1; } } while (0)
#define BEST_OF(name, n, body)                                              \
    do {                                                                    \
        double best = 1e30;                                                 \
        for (int rep = 0; rep < 5; rep++) {                                 \
            double t0 = now_ns();                                           \
            for (long it = 0; it < (n); it++) { body; }                     \
            double per = (now_ns() - t0) / (n);                             \
            if (per < best) best = per;                                     \
        }                                                                   \
        printf("%s %.1f\n", name, best);                                    \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_c_abi POOL ITERATIONS\n");
        return 2;
    }
    long n = atol(argv[2]);
    xmem_pool pool;
    MUST(xmem_pool_create(argv[1], 64, 0600, 0, &pool));
    xmem_guard g;
    xmem_buffer_info info;
    int32_t count;
    MUST(xmem_pool_acquire_cpu(pool, 4096, &g, &info));
    int32_t idx = info.meta_index;

    BEST_OF("c_abi_version", n, (void)xmem_abi_version());
    BEST_OF("c_pool_capacity", n, MUST(xmem_pool_capacity(pool, &count)));
    BEST_OF("c_acquire_release", n, {
        xmem_guard h;
        MUST(xmem_pool_acquire_cpu(pool, 4096, &h, &info));
        MUST(xmem_guard_release(h));
    });
    BEST_OF("c_get_release", n, {
        xmem_guard h;
        MUST(xmem_pool_get(pool, idx, &h, &info));
        MUST(xmem_guard_release(h));
    });
    BEST_OF("c_add_ref_release", n, {
        MUST(xmem_pool_add_ref(pool, idx, &count));
        MUST(xmem_pool_release(pool, idx, &count));
    });
    BEST_OF("c_lease_view", n, {
        xmem_lease l;
        MUST(xmem_guard_lease_view(g, &l, NULL, NULL));
        MUST(xmem_lease_release(l));
    });
    MUST(xmem_guard_release(g));
    MUST(xmem_pool_close(pool));
    return 0;
}
