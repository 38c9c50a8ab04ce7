/* What the two-process C benchmarks of bench/c share: CLOCK_MONOTONIC in nanoseconds (system-wide, so stamps taken
 * in the producer and the consumer compare), pinning the calling process to one CPU (the benchmark protocol puts the
 * producer on CPU 0 and the consumer on CPU 1; on a machine with fewer CPUs the number wraps), and qsort comparators
 * for the medians. */
#ifndef XMEM_BENCH_TWO_CPUS_H
#define XMEM_BENCH_TWO_CPUS_H

#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static inline int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &s);
    sched_setaffinity(0, sizeof s, &s);
}

static inline int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
