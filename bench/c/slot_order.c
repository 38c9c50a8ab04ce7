/* Which free buffer should a producer write next: the one its consumer released last (LIFO, what the lowest-free-slot
 * rule gives a pipeline) or the one released longest ago (next fit)? Plain C, no xmem: two processes, 4 pre-faulted
 * 6,220,800-byte buffers in shared memory, the benchmark protocol's work (the producer stamps one byte in each of the
 * 1519 pages, the consumer sums them), indices through a spin ring in shared memory, producer on CPU 0 and consumer
 * on CPU 1. Prints per-stage medians of lockstep frames and the frames/s of a stream with at most 4 in flight, for
 * both orders, interleaved, so that the machine's mood hits both alike.
 *   gcc -O2 bench/c/slot_order.c -o /tmp/slot_order && /tmp/slot_order [rounds]
 * docs/benchmarks.md, "Which free slot", has the figures. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "two_cpus.h"

#define FRAME 6220800L
#define PAGE 4096L
#define PAGES 1519
#define STAMP_OFF 128
#define NBUF 4
#define LOCKSTEP 1000
#define STREAM 2000

struct ring { /* one SPSC ring each way; the reply carries the buffer back and the consumer's two stamps */
    _Alignas(64) _Atomic uint64_t sent;
    uint32_t msg[NBUF];
    _Alignas(64) _Atomic uint64_t done;
    uint32_t idx[NBUF];
    uint64_t t_recv[NBUF], t_done[NBUF];
    _Alignas(64) _Atomic int quit;
};

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void consumer(struct ring *r, unsigned char **buf)
{
    pin(1);
    uint64_t seen = 0;
    while (!atomic_load_explicit(&r->quit, memory_order_relaxed)) {
        if (atomic_load_explicit(&r->sent, memory_order_acquire) == seen) {
            __builtin_ia32_pause();
            continue;
        }
        uint32_t i = r->msg[seen % NBUF];
        uint64_t t0 = now_ns();
        unsigned sum = 0;
        for (long p = 0; p < PAGES; p++) sum += buf[i][p * PAGE + STAMP_OFF];
        if (sum == 0xFFFFFFFFu) abort(); /* keep the sum */
        r->idx[seen % NBUF] = i;
        r->t_recv[seen % NBUF] = t0;
        r->t_done[seen % NBUF] = now_ns();
        seen++;
        atomic_store_explicit(&r->done, seen, memory_order_release);
    }
    _exit(0);
}

/* The producer's free list: lifo hands out the buffer released last, next the one released longest ago. */
struct freelist {
    uint32_t v[NBUF];
    int n;
    int lifo;
};

static uint32_t take(struct freelist *f)
{
    uint32_t x;
    if (f->lifo) {
        x = f->v[--f->n];
    } else {
        x = f->v[0];
        memmove(f->v, f->v + 1, sizeof f->v[0] * (size_t)(f->n - 1));
        f->n--;
    }
    return x;
}

static void give(struct freelist *f, uint32_t x) { f->v[f->n++] = x; }

static void run(int lifo, struct ring *r, unsigned char **buf, uint64_t *sent, uint64_t *done, double out[5])
{
    static double st[4][LOCKSTEP];
    struct freelist f = {.n = 0, .lifo = lifo};
    for (int i = NBUF - 1; i >= 0; i--) give(&f, (uint32_t)i);
    for (int k = 0; k < LOCKSTEP; k++) {
        uint64_t t0 = now_ns();
        uint32_t i = take(&f);
        unsigned char v = (unsigned char)*sent;
        for (long p = 0; p < PAGES; p++) buf[i][p * PAGE + STAMP_OFF] = v;
        uint64_t t1 = now_ns();
        r->msg[*sent % NBUF] = i;
        (*sent)++;
        atomic_store_explicit(&r->sent, *sent, memory_order_release);
        while (atomic_load_explicit(&r->done, memory_order_acquire) != *sent) __builtin_ia32_pause();
        give(&f, r->idx[*done % NBUF]);
        st[0][k] = (double)(t1 - t0) / 1e3;                                   /* stamp */
        st[1][k] = (double)(r->t_recv[*done % NBUF] - t1) / 1e3;              /* deliver */
        st[2][k] = (double)(r->t_done[*done % NBUF] - r->t_recv[*done % NBUF]) / 1e3; /* checksum */
        st[3][k] = (double)(r->t_done[*done % NBUF] - t0) / 1e3;              /* one way */
        (*done)++;
    }
    for (int s = 0; s < 4; s++) out[s] = median(st[s], LOCKSTEP);

    uint64_t start = now_ns();
    for (int k = 0; k < STREAM; k++) {
        /* As a pool's free set: a buffer is free again as soon as the consumer is done with it. */
        for (;;) {
            while (atomic_load_explicit(&r->done, memory_order_acquire) > *done) {
                give(&f, r->idx[*done % NBUF]);
                (*done)++;
            }
            if (f.n > 0) break;
            __builtin_ia32_pause();
        }
        uint32_t i = take(&f);
        unsigned char v = (unsigned char)*sent;
        for (long p = 0; p < PAGES; p++) buf[i][p * PAGE + STAMP_OFF] = v;
        r->msg[*sent % NBUF] = i;
        (*sent)++;
        atomic_store_explicit(&r->sent, *sent, memory_order_release);
    }
    while (atomic_load_explicit(&r->done, memory_order_acquire) != *sent) __builtin_ia32_pause();
    *done = *sent;
    out[4] = STREAM / ((double)(now_ns() - start) / 1e9);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    struct ring *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    unsigned char *buf[NBUF];
    for (int i = 0; i < NBUF; i++) {
        buf[i] = mmap(NULL, FRAME, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (r == MAP_FAILED || buf[i] == MAP_FAILED) return 1;
        memset(buf[i], 0, FRAME); /* pre-faulted: the pool is made once */
    }
    pid_t pid = fork();
    if (pid == 0) consumer(r, buf);
    pin(0);
    uint64_t sent = 0, done = 0;
    double res[2][5];
    printf("slot_order: %d interleaved rounds; lockstep medians of %d frames (us), stream of %d frames, <= %d in flight\n",
           rounds, LOCKSTEP, STREAM, NBUF);
    printf("round order        stamp  deliver  checksum  one-way  stream (frames/s)\n");
    for (int k = 0; k <= rounds; k++) {
        for (int lifo = 1; lifo >= 0; lifo--) {
            run(lifo, r, buf, &sent, &done, res[lifo]);
            if (k > 0) /* round 0 warms up */
                printf("%5d %-11s %6.2f  %7.2f  %8.2f  %7.2f  %8.0f\n", k, lifo ? "last-freed" : "oldest-freed",
                       res[lifo][0], res[lifo][1], res[lifo][2], res[lifo][3], res[lifo][4]);
        }
    }
    atomic_store(&r->quit, 1);
    waitpid(pid, NULL, 0);
    return 0;
}
