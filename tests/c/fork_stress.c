/* Forks a process that uses libxmem while other threads call into it, and records how every child ends.
 *
 *   fork_stress POOL FORKS [HAMMERS [CHURNERS]]
 *
 * HAMMERS threads (default 4) loop over acquire / get / add_ref / release / send / receive on the pool from their
 * start. CHURNERS threads (default 2) each keep starting short-lived threads that are new to the runtime: a new
 * thread makes its first C ABI call (its first reverse P/Invoke, which attaches it to the runtime), a few more, and
 * exits (which detaches it). Meanwhile the main thread forks FORKS times; each child checks that the pool it
 * inherited is inert, opens the pool itself, acquires, gets, sends and receives, closes it and exits 0. A child that
 * has not ended after 20 s is killed and counted as hung.
 *
 * Prints one line "forks=N ok=N hung=N signaled=N failed=N sigabrt=N ops=N threads=N" and exits 0 only when every
 * child exited 0 and no parent thread failed. A child's own failure is its exit code (see child_main).
 * XMEM_FORK_STRESS_CORES=1 lets aborting children dump core (RLIMIT_CORE unlimited) for a stack.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "xmem.h"

static const char *pool_name;
static xmem_pool pool;
static atomic_int stop;
static int child_rounds = 4, child_threads;
static atomic_long ops, threads_started, thread_failures;

static void fail_thread(const char *what)
{
    if (atomic_fetch_add(&thread_failures, 1) < 5)
    {
        fprintf(stderr, "fork_stress: parent thread: %s: %s\n", what, xmem_last_error());
    }
}

/* One round of the pool's hot paths; 0, or -1 after reporting the call that failed. */
static int round_trip(xmem_pool p, xmem_channel ch)
{
    xmem_guard g, r, s;
    xmem_buffer_info info;
    int32_t count;
    if (xmem_pool_acquire_cpu_wait(p, 4096, 10000000000LL, &g, &info) != XMEM_OK) { fail_thread("acquire"); return -1; }
    ((volatile uint8_t *)info.cpu_ptr)[0] = 1;
    if (xmem_pool_get(p, info.meta_index, &r, &info) != XMEM_OK) { fail_thread("get"); return -1; }
    if (xmem_guard_release(r) != XMEM_OK) { fail_thread("release get"); return -1; }
    if (xmem_pool_add_ref(p, info.meta_index, &count) != XMEM_OK) { fail_thread("add_ref"); return -1; }
    if (xmem_pool_release(p, info.meta_index, &count) != XMEM_OK) { fail_thread("release"); return -1; }
    if (xmem_guard_release(g) != XMEM_OK) { fail_thread("release acquire"); return -1; }
    if (ch)
    {
        if (xmem_pool_acquire_cpu_wait(p, 256, 10000000000LL, &s, &info) != XMEM_OK) { fail_thread("acquire 256"); return -1; }
        if (xmem_channel_send(ch, s, 10000000000LL) != XMEM_OK) { fail_thread("send"); return -1; }
        if (xmem_channel_receive(ch, 10000000000LL, 0, &s, &info) != XMEM_OK) { fail_thread("receive"); return -1; }
        if (xmem_guard_release(s) != XMEM_OK) { fail_thread("release received"); return -1; }
    }
    atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
    return 0;
}

static void *hammer(void *arg)
{
    char name[32];
    snprintf(name, sizeof name, "h%ld", (long)(intptr_t)arg);
    xmem_channel ch;
    if (xmem_pool_channel(pool, name, 8, XMEM_CHANNEL_QUEUE, &ch) != XMEM_OK) { fail_thread("channel"); return NULL; }
    while (!atomic_load_explicit(&stop, memory_order_relaxed) && round_trip(pool, ch) == 0) { }
    if (xmem_channel_close(ch) != XMEM_OK) fail_thread("channel close");
    return NULL;
}

/* A thread new to the runtime: its first call into libxmem attaches it, its exit detaches it. */
static void *newcomer(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&threads_started, 1, memory_order_relaxed);
    int32_t capacity;
    if (xmem_pool_capacity(pool, &capacity) != XMEM_OK) { fail_thread("capacity"); return NULL; }
    for (int i = 0; i < 3; i++)
    {
        if (round_trip(pool, 0) != 0) return NULL;
    }
    return NULL;
}

static void *churner(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed))
    {
        pthread_t t;
        if (pthread_create(&t, NULL, newcomer, NULL) != 0) { fail_thread("pthread_create"); return NULL; }
        pthread_join(t, NULL);
    }
    return NULL;
}

static void *child_thread(void *arg)
{
    xmem_pool p = *(xmem_pool *)arg;
    int32_t capacity;
    return xmem_pool_capacity(p, &capacity) == XMEM_OK ? arg : NULL;
}

/* The child: 0 when everything worked, else the step that failed (10 + step). */
static int child_main(xmem_guard inherited)
{
    xmem_guard g;
    xmem_buffer_info info;
    if (xmem_pool_acquire_cpu(pool, 8, &g, &info) != XMEM_E_DISPOSED) return 11; /* the inherited pool is inert */
    if (xmem_guard_release(inherited) != XMEM_OK) return 12;                        /* and releasing does nothing */
    xmem_pool mine;
    if (xmem_pool_open(pool_name, &mine) != XMEM_OK) return 13;
    xmem_channel ch;
    if (xmem_pool_channel(mine, "child", 4, XMEM_CHANNEL_QUEUE, &ch) != XMEM_OK) return 14;
    for (int i = 0; i < child_rounds; i++)
    {
        if (xmem_pool_acquire_cpu_wait(mine, 1024, 10000000000LL, &g, &info) != XMEM_OK) return 15;
        if (xmem_channel_send(ch, g, 10000000000LL) != XMEM_OK) return 16;
        if (xmem_channel_receive(ch, 10000000000LL, 0, &g, &info) != XMEM_OK) return 17;
        if (xmem_guard_release(g) != XMEM_OK) return 18;
    }
    if (child_threads)
    {
        /* A thread new to the child's runtime: attaching and detaching it takes the thread store's lock. */
        pthread_t t;
        void *result;
        if (pthread_create(&t, NULL, child_thread, &mine) != 0 || pthread_join(t, &result) != 0 || !result) return 21;
    }
    if (xmem_channel_close(ch) != XMEM_OK) return 19;
    if (xmem_pool_close(mine) != XMEM_OK) return 20;
    return 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: fork_stress POOL FORKS [HAMMERS [CHURNERS]]\n"); return 2; }
    pool_name = argv[1];
    long forks = atol(argv[2]);
    int hammers = argc > 3 ? atoi(argv[3]) : 4;
    int churners = argc > 4 ? atoi(argv[4]) : 2;
    if (getenv("XMEM_FORK_STRESS_CHILD_ROUNDS")) child_rounds = atoi(getenv("XMEM_FORK_STRESS_CHILD_ROUNDS"));
    if (getenv("XMEM_FORK_STRESS_CHILD_THREAD")) child_threads = 1;
    if (getenv("XMEM_FORK_STRESS_CORES"))
    {
        struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
        setrlimit(RLIMIT_CORE, &unlimited);
    }

    if (xmem_pool_create(pool_name, 64, 0600, 0, &pool) != XMEM_OK) { fprintf(stderr, "create: %s\n", xmem_last_error()); return 1; }
    xmem_guard inherited;
    xmem_buffer_info info;
    if (xmem_pool_acquire_cpu(pool, 64, &inherited, &info) != XMEM_OK) { fprintf(stderr, "acquire: %s\n", xmem_last_error()); return 1; }

    pthread_t *threads = calloc((size_t)(hammers + churners), sizeof *threads);
    for (int i = 0; i < hammers + churners; i++)
    {
        if (pthread_create(&threads[i], NULL, i < hammers ? hammer : churner, (void *)(intptr_t)i) != 0) return 1;
    }

    long ok = 0, hung = 0, signaled = 0, failed = 0, sigabrt = 0;
    for (long n = 0; n < forks; n++)
    {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); break; }
        if (pid == 0) _exit(child_main(inherited));
        double deadline = now_s() + 20;
        int status;
        for (;;)
        {
            pid_t done = waitpid(pid, &status, WNOHANG);
            if (done == pid) break;
            if (done < 0 && errno != EINTR) { perror("waitpid"); return 1; }
            if (now_s() > deadline)
            {
                if (getenv("XMEM_FORK_STRESS_GDB"))
                {
                    /* A stack of every thread of the hung child before it is killed. */
                    char cmd[256];
                    snprintf(cmd, sizeof cmd, "gdb -p %d -batch -ex 'thread apply all bt' > hung-%d.txt 2>&1", pid, pid);
                    if (system(cmd) != 0) fprintf(stderr, "fork_stress: gdb failed\n");
                }
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                status = -1;
                break;
            }
            usleep(200);
        }
        if (status == -1) { hung++; fprintf(stderr, "fork_stress: child %d (fork %ld) hung\n", pid, n); }
        else if (WIFSIGNALED(status))
        {
            signaled++;
            if (WTERMSIG(status) == SIGABRT) sigabrt++;
            fprintf(stderr, "fork_stress: child %d (fork %ld) died of signal %d%s\n", pid, n, WTERMSIG(status),
                    WCOREDUMP(status) ? " (core dumped)" : "");
        }
        else if (WEXITSTATUS(status) != 0) { failed++; fprintf(stderr, "fork_stress: child %d (fork %ld) exited %d\n", pid, n, WEXITSTATUS(status)); }
        else ok++;
    }

    atomic_store(&stop, 1);
    for (int i = 0; i < hammers + churners; i++) pthread_join(threads[i], NULL);
    free(threads);
    int32_t count = -1;
    int bad = xmem_pool_ref_count(pool, info.meta_index, &count) != XMEM_OK || count != 1;
    if (xmem_guard_release(inherited) != XMEM_OK) bad = 1;
    if (xmem_pool_close(pool) != XMEM_OK) bad = 1;
    printf("forks=%ld ok=%ld hung=%ld signaled=%ld failed=%ld sigabrt=%ld ops=%ld threads=%ld thread_failures=%ld\n",
           forks, ok, hung, signaled, failed, sigabrt, atomic_load(&ops), atomic_load(&threads_started),
           atomic_load(&thread_failures));
    return ok == forks && !bad && atomic_load(&thread_failures) == 0 ? 0 : 1;
}
