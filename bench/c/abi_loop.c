/* One C ABI operation in a loop, for per-call instruction counts (instructions.sh) and CPU time:  abi_loop POOL OP N
   Prints "<op> <ns per call, thread CPU time, best of 7>". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "xmem.h"

#define MUST(call) do { if ((call) != XMEM_OK) { fprintf(stderr, "%s: %s\n", #call, xmem_last_error()); exit(1); } } while (0)

static double cpu_ns(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec * 1e9 + t.tv_nsec; }

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    const char *op = argv[2];
    long n = atol(argv[3]);
    xmem_pool pool;
    MUST(xmem_pool_create(argv[1], 64, 0600, 0, &pool));
    xmem_guard g; xmem_buffer_info info; int32_t count;
    MUST(xmem_pool_acquire_cpu(pool, 4096, &g, &info));
    int32_t idx = info.meta_index;
    xmem_channel ch = 0;
    if (!strcmp(op, "send_receive")) MUST(xmem_pool_channel(pool, "bench", 64, XMEM_CHANNEL_QUEUE, &ch));
    double best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = cpu_ns();
        if (!strcmp(op, "add_ref_release")) for (long i = 0; i < n; i++) { MUST(xmem_pool_add_ref(pool, idx, &count)); MUST(xmem_pool_release(pool, idx, &count)); }
        else if (!strcmp(op, "ref_count")) for (long i = 0; i < n; i++) MUST(xmem_pool_ref_count(pool, idx, &count));
        else if (!strcmp(op, "get_release")) for (long i = 0; i < n; i++) { xmem_guard h; MUST(xmem_pool_get(pool, idx, &h, &info)); MUST(xmem_guard_release(h)); }
        else if (!strcmp(op, "acquire_release")) for (long i = 0; i < n; i++) { xmem_guard h; MUST(xmem_pool_acquire_cpu(pool, 4096, &h, &info)); MUST(xmem_guard_release(h)); }
        else if (!strcmp(op, "capacity")) for (long i = 0; i < n; i++) MUST(xmem_pool_capacity(pool, &count));
        else if (!strcmp(op, "guard_info")) for (long i = 0; i < n; i++) MUST(xmem_guard_info(g, &info));
        else if (!strcmp(op, "send_receive")) for (long i = 0; i < n; i++) { xmem_guard h; MUST(xmem_pool_acquire_cpu(pool, 4096, &h, &info)); MUST(xmem_channel_send(ch, h, 0)); MUST(xmem_channel_receive(ch, 0, 0, &h, &info)); MUST(xmem_guard_release(h)); }
        else if (!strcmp(op, "none")) { }
        else return 2;
        double per = (cpu_ns() - t0) / (n ? n : 1);
        if (per < best) best = per;
    }
    printf("%s %.1f\n", op, best);
    if (ch) MUST(xmem_channel_close(ch));
    MUST(xmem_guard_release(g));
    MUST(xmem_pool_close(pool));
    return 0;
}
