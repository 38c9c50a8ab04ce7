/* The sleeping hop of a lockstep handoff, by wake primitive: the producer (CPU 0) stamps one byte in each of the
 * 1519 pages of one of 4 buffers (taken in turn), wakes the consumer (CPU 1), which checksums the buffer and replies;
 * the producer waits for the reply and goes on. Prints the wake call's own time and the time from the start of the
 * wake to the consumer running (medians of N frames), and how often the consumer slept.
 *   gcc -O2 bench/c/wake_hop.c -o /tmp/wake_hop && for m in 0 1 2 3; do /tmp/wake_hop $m 3000; done
 * MODE: 0 futex on shared memory, reply through a pipe (xmem's channel, the reply as the peers send it);
 *       1 pipe both ways; 2 one Unix socket pair both ways (the C pool + socket peer of ../shared/peers);
 *       3 two Unix socket pairs, one each way.
 * Mode 2 is the odd one: its consumer, asleep in read(), is also woken when the producer reads the reply from the
 * other end of the same pair (the write space of the consumer's end changed), finds nothing, and goes back to sleep
 * (more voluntary switches than frames). That early wake-up often has its vCPU awake again when the frame's wake
 * comes, and a wake that finds its vCPU awake costs no halt exit. docs/benchmarks.md, "The sleeping hop". */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "two_cpus.h"

#define FRAME 6220800L
#define PAGE 4096L
#define STAMP_OFF 128
#define NBUF 4

static void xread(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1) _exit(3);
}

static void xwrite(int fd)
{
    char c = 0;
    if (write(fd, &c, 1) != 1) _exit(3);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: wake_hop MODE FRAMES (MODE 0 futex, 1 pipe, 2 one socket pair, 3 two socket pairs)\n");
        return 2;
    }
    int mode = atoi(argv[1]);
    int n = atoi(argv[2]);
    _Atomic uint32_t *word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    long *ran = mmap(NULL, sizeof(long) * (size_t)n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    unsigned char *buf[NBUF];
    for (int i = 0; i < NBUF; i++) {
        buf[i] = mmap(NULL, FRAME, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (buf[i] == MAP_FAILED) return 1;
        memset(buf[i], 0, FRAME);
    }
    /* to[0] the consumer reads, to[1] the producer writes; back[0] the producer reads, back[1] the consumer writes */
    int to[2], back[2];
    if (mode == 2) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 1;
        to[0] = back[1] = sv[0]; /* the consumer's end */
        to[1] = back[0] = sv[1]; /* the producer's end */
    } else if (mode == 3) {
        int a[2], b[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) || socketpair(AF_UNIX, SOCK_STREAM, 0, b)) return 1;
        to[0] = a[0], to[1] = a[1], back[0] = b[1], back[1] = b[0];
    } else if (pipe(to) || pipe(back)) {
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        pin(1);
        for (int i = 0; i < n; i++) {
            if (mode == 0) {
                while (atomic_load(word) == (uint32_t)i) syscall(SYS_futex, word, FUTEX_WAIT, i, NULL, NULL, 0);
            } else {
                xread(to[0]);
            }
            ran[i] = now_ns();
            unsigned sum = 0;
            for (long p = STAMP_OFF; p < FRAME; p += PAGE) sum += buf[i % NBUF][p];
            if (sum == 0xFFFFFFFFu) abort();
            xwrite(back[1]);
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        ran[0] = ru.ru_nvcsw; /* frame 0's figure is not reported */
        _exit(0);
    }
    pin(0);
    long *call = malloc(sizeof(long) * (size_t)n), *hop = malloc(sizeof(long) * (size_t)n);
    for (int i = 0; i < n; i++) {
        for (long p = STAMP_OFF; p < FRAME; p += PAGE) buf[i % NBUF][p] = (unsigned char)i;
        long t0 = now_ns();
        if (mode == 0) {
            atomic_store(word, (uint32_t)(i + 1));
            syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
        } else {
            xwrite(to[1]);
        }
        long t1 = now_ns();
        xread(back[0]);
        call[i] = t1 - t0;
        hop[i] = ran[i] - t0;
    }
    waitpid(pid, NULL, 0);
    long switches = ran[0];
    qsort(call + 1, (size_t)n - 1, sizeof(long), cmp_long);
    qsort(hop + 1, (size_t)n - 1, sizeof(long), cmp_long);
    static const char *names[] = {"futex", "pipe", "one socket pair", "two socket pairs"};
    printf("%-17s wake call p50 %5.1f us; wake start -> consumer runs p50 %5.1f us (p10 %5.1f, p90 %5.1f); "
           "consumer slept %ld times in %d frames\n",
           names[mode & 3], call[n / 2] / 1e3, hop[n / 2] / 1e3, hop[n / 10] / 1e3, hop[n * 9 / 10] / 1e3, switches, n);
    return 0;
}
