/* The C fork gate of libxmem (src/Xmem.Native/Gate/fork_gate.c), compiled in and driven the way fork()'s atfork
 * handlers drive it: close (prepare) waits for the threads inside and holds new ones back until open (parent); a
 * thread asleep in xmem_gate_futex_wait does not hold close back; a thread that entered once is counted in for its
 * exit (the runtime detaches it there), so its exit waits while the gate is closed; and, raced by threads entering
 * and leaving as fast as they can, no thread is ever inside while the gate is closed (in the membarrier mode and in
 * the fenced fallback: the Dekker of enter and close). A handle close's grace period (xmem_gate_wait_calls_in_flight)
 * waits for a call in flight and not for calls that begin after it (in both modes), and two at once do not wait for
 * each other.
 * The forks themselves:
 * tests/c/fork_stress.c and tests/python/test_fork.py.
 *
 *   gcc -std=c11 -pthread -I src/Xmem.Native/Gate tests/c/fork_gate_test.c src/Xmem.Native/Gate/fork_gate.c
 *
 * Every wait is bounded by a 60 s watchdog; the short waits where a wrong gate would let a thread through only give
 * a wrong gate the chance to show itself (a correct one never lets it through, however slow the machine).
 * Exits 0 and prints "fork_gate_test: 8 passed" when every check held.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "fork_gate.h"

#define WATCHDOG_S 60

static int failures;
#define CHECK(cond, what) do { if (!(cond)) { fprintf(stderr, "fork_gate_test: FAILED: %s (%s:%d)\n", what, __FILE__, __LINE__); failures++; } } while (0)

/* Waits up to `seconds` for the flag to be set. */
static int wait_flag(atomic_int *flag, double seconds)
{
    struct timespec step = { 0, 1000000 };
    for (double waited = 0; waited < seconds; waited += 0.001)
    {
        if (atomic_load(flag)) return 1;
        nanosleep(&step, NULL);
    }
    return atomic_load(flag);
}

/* Joins within `seconds`; 0 when the thread had not ended by then. */
static int join_within(pthread_t t, double seconds)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)seconds;
    deadline.tv_nsec += (long)((seconds - (time_t)seconds) * 1e9);
    if (deadline.tv_nsec >= 1000000000) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000; }
    return pthread_timedjoin_np(t, NULL, &deadline) == 0;
}

static pthread_t start(void *(*body)(void *), void *arg)
{
    pthread_t t;
    if (pthread_create(&t, NULL, body, arg) != 0) { perror("pthread_create"); exit(2); }
    return t;
}

/* ---------------------------------------------------------------- close waits, new entries wait for open */

static atomic_int holder_inside, holder_leave, late_entered;

static void *holder(void *arg)
{
    (void)arg;
    xmem_thread_gate *gate = xmem_gate_enter();
    atomic_store(&holder_inside, 1);
    wait_flag(&holder_leave, WATCHDOG_S);
    xmem_gate_leave(gate);
    return NULL;
}

static void *closer(void *arg)
{
    (void)arg;
    xmem_gate_close();
    return NULL;
}

static void *late(void *arg)
{
    (void)arg;
    xmem_thread_gate *gate = xmem_gate_enter();
    atomic_store(&late_entered, 1);
    xmem_gate_leave(gate);
    return NULL;
}

static void close_waits_for_a_thread_inside_and_holds_new_entries_back_until_open(void)
{
    pthread_t h = start(holder, NULL);
    CHECK(wait_flag(&holder_inside, WATCHDOG_S), "the holder never entered the gate");
    pthread_t c = start(closer, NULL);
    CHECK(!join_within(c, 0.3), "close returned while a thread was inside the gate");
    pthread_t l = start(late, NULL);
    atomic_store(&holder_leave, 1);
    CHECK(join_within(c, WATCHDOG_S), "close did not return once the gate was empty");
    CHECK(!wait_flag(&late_entered, 0.3), "a thread entered the gate while it was closed");
    xmem_gate_open();
    CHECK(join_within(l, WATCHDOG_S), "a thread held back at the closed gate was not let in by open");
    CHECK(join_within(h, WATCHDOG_S), "the holder did not end"); /* its exit waited for open too */
    CHECK(atomic_load(&late_entered), "the late thread never entered");
}

/* ---------------------------------------------------------------- a futex sleep inside does not hold close back */

static _Alignas(4) uint32_t sleep_word;
static atomic_int sleeper_asleep, sleeper_done;

static void *sleeper(void *arg)
{
    (void)arg;
    xmem_thread_gate *gate = xmem_gate_enter(); /* as an export does, then a wait without a bound inside it */
    atomic_store(&sleeper_asleep, 1);
    while (__atomic_load_n(&sleep_word, __ATOMIC_SEQ_CST) == 0)
    {
        xmem_gate_futex_wait(&sleep_word, 0, -1);
    }
    xmem_gate_leave(gate);
    atomic_store(&sleeper_done, 1);
    return NULL;
}

static void a_thread_asleep_in_a_futex_wait_inside_the_gate_does_not_hold_close_back(void)
{
    pthread_t s = start(sleeper, NULL);
    CHECK(wait_flag(&sleeper_asleep, WATCHDOG_S), "the sleeper never entered the gate");
    pthread_t c = start(closer, NULL);
    int closed = join_within(c, WATCHDOG_S);
    CHECK(closed, "close waited on a thread asleep in a futex wait");
    /* Woken while the gate is closed, the sleeper must not go back in until open. */
    __atomic_store_n(&sleep_word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &sleep_word, FUTEX_WAKE, 1, NULL, NULL, 0);
    CHECK(!wait_flag(&sleeper_done, 0.3), "a woken sleeper went back into the closed gate");
    if (closed) xmem_gate_open();
    CHECK(join_within(s, WATCHDOG_S), "the sleeper did not end once the gate opened");
    CHECK(atomic_load(&sleeper_done), "the sleeper never finished");
}

/* ---------------------------------------------------------------- a thread's exit is counted in */

static atomic_int exiter_entered, exiter_go;

static void *exiter(void *arg)
{
    (void)arg;
    xmem_thread_gate *gate = xmem_gate_enter(); /* registers the thread: the runtime would attach it here */
    xmem_gate_leave(gate);
    atomic_store(&exiter_entered, 1);
    wait_flag(&exiter_go, WATCHDOG_S);
    return NULL; /* its exit: our key's destructor counts it in, around where the runtime detaches it */
}

static void a_thread_that_entered_once_is_counted_in_for_its_exit(void)
{
    pthread_t e = start(exiter, NULL);
    CHECK(wait_flag(&exiter_entered, WATCHDOG_S), "the exiting thread never entered the gate");
    xmem_gate_close(); /* the exiter is outside: close returns at once */
    atomic_store(&exiter_go, 1);
    CHECK(!join_within(e, 0.3), "a thread exited (past the runtime's detach) while the gate was closed");
    xmem_gate_open();
    CHECK(join_within(e, WATCHDOG_S), "the exiting thread did not end once the gate opened");
    /* Its exit counted it out again: a new close does not wait for it. */
    pthread_t c = start(closer, NULL);
    int closed = join_within(c, WATCHDOG_S);
    CHECK(closed, "close waited for a thread that had exited");
    if (closed) xmem_gate_open();
}

/* ---------------------------------------------------------------- no thread is inside while the gate is closed */

#define CHURNERS 2
static atomic_int churn_stop, in_calls, churn_started;

static void *churner(void *arg)
{
    (void)arg;
    atomic_fetch_add(&churn_started, 1);
    while (!atomic_load_explicit(&churn_stop, memory_order_relaxed))
    {
        xmem_thread_gate *gate = xmem_gate_enter();
        atomic_fetch_add_explicit(&in_calls, 1, memory_order_relaxed); /* "inside the runtime" */
        atomic_fetch_sub_explicit(&in_calls, 1, memory_order_relaxed);
        xmem_gate_leave(gate);
    }
    return NULL;
}

/* The Dekker of enter and close, raced: threads entering and leaving as fast as they can, a closer that closes,
   then looks for any of them inside for a while, and opens; in both the membarrier mode and the fenced fallback. */
static void no_thread_is_inside_while_the_gate_is_closed(int membarrier)
{
    int mode = xmem_gate_use_membarrier(membarrier);
    if (membarrier && !mode)
    {
        printf("fork_gate_test: membarrier() is not available here; the fenced mode is tested alone\n");
        return;
    }

    atomic_store(&churn_stop, 0);
    atomic_store(&churn_started, 0);
    pthread_t t[CHURNERS];
    for (int i = 0; i < CHURNERS; i++) t[i] = start(churner, NULL);
    while (atomic_load(&churn_started) < CHURNERS) sched_yield();
    int seen_inside = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rounds = 0;
    do
    {
        xmem_gate_close();
        for (int k = 0; k < 200; k++)
        {
            if (atomic_load_explicit(&in_calls, memory_order_relaxed) != 0) seen_inside++;
        }
        xmem_gate_open();
        for (volatile int k = 0; k < 2000; k++) { } /* let them in again */
        rounds++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - t0.tv_sec < 2);
    atomic_store(&churn_stop, 1);
    for (int i = 0; i < CHURNERS; i++) CHECK(join_within(t[i], WATCHDOG_S), "a churning thread did not end");
    if (seen_inside)
    {
        fprintf(stderr, "fork_gate_test: %s mode: a thread was inside in %d looks while the gate was closed (%d rounds)\n",
                membarrier ? "membarrier" : "fenced", seen_inside, rounds);
    }
    CHECK(seen_inside == 0, "a thread was inside while the gate was closed");
}

/* ---------------------------------------------------------------- a close's grace period (handles) */

static atomic_int grace_holder_inside, grace_holder_leave, grace_done, grace_waiter_inside, grace_waiters_done;

static void *grace_holder(void *arg)
{
    (void)arg;
    xmem_thread_gate *gate = xmem_gate_enter();
    atomic_store(&grace_holder_inside, 1);
    wait_flag(&grace_holder_leave, WATCHDOG_S);
    xmem_gate_leave(gate);
    return NULL;
}

static void *grace_waiter(void *arg)
{
    (void)arg;
    xmem_thread_gate *gate = xmem_gate_enter(); /* a close runs inside a call of its own */
    xmem_gate_wait_calls_in_flight();
    atomic_store(&grace_done, 1);
    xmem_gate_leave(gate);
    return NULL;
}

static void a_grace_period_waits_for_the_calls_in_flight_and_not_for_later_ones(int membarrier)
{
    if (membarrier && !xmem_gate_use_membarrier(1))
    {
        return; /* not available: the fenced mode is tested alone */
    }
    (void)xmem_gate_use_membarrier(membarrier);
    atomic_store(&grace_holder_inside, 0);
    atomic_store(&grace_holder_leave, 0);
    atomic_store(&grace_done, 0);
    pthread_t h = start(grace_holder, NULL);
    CHECK(wait_flag(&grace_holder_inside, WATCHDOG_S), "the holder never entered the gate");
    pthread_t w = start(grace_waiter, NULL);
    CHECK(!wait_flag(&grace_done, 0.3), "a grace period ended while a call that was in flight had not returned");
    atomic_store(&grace_holder_leave, 1);
    CHECK(join_within(w, WATCHDOG_S), "a grace period did not end once the call in flight returned");
    CHECK(join_within(h, WATCHDOG_S), "the holder did not end");
    /* A thread that keeps entering and leaving (its calls begin after the grace period did) never holds one up. */
    atomic_store(&churn_stop, 0);
    pthread_t c = start(churner, NULL);
    CHECK(wait_flag(&churn_started, WATCHDOG_S), "the churner never started");
    atomic_store(&grace_done, 0);
    pthread_t w2 = start(grace_waiter, NULL);
    CHECK(join_within(w2, WATCHDOG_S), "a grace period waited for calls that began after it");
    atomic_store(&churn_stop, 1);
    CHECK(join_within(c, WATCHDOG_S), "the churner did not end");
}

static void *grace_mutual(void *arg)
{
    (void)arg;
    xmem_thread_gate *gate = xmem_gate_enter();
    atomic_fetch_add(&grace_waiter_inside, 1);
    while (atomic_load(&grace_waiter_inside) < 2) { } /* both inside before either waits */
    xmem_gate_wait_calls_in_flight();
    xmem_gate_leave(gate);
    atomic_fetch_add(&grace_waiters_done, 1);
    return NULL;
}

static void two_grace_periods_at_once_do_not_wait_for_each_other(void)
{
    pthread_t a = start(grace_mutual, NULL), b = start(grace_mutual, NULL);
    CHECK(join_within(a, WATCHDOG_S) && join_within(b, WATCHDOG_S), "two threads waiting in grace periods at once waited for each other");
    CHECK(atomic_load(&grace_waiters_done) == 2, "a grace-period waiter did not finish");
}

int main(void)
{
    close_waits_for_a_thread_inside_and_holds_new_entries_back_until_open();
    a_thread_asleep_in_a_futex_wait_inside_the_gate_does_not_hold_close_back();
    a_thread_that_entered_once_is_counted_in_for_its_exit();
    no_thread_is_inside_while_the_gate_is_closed(1);
    no_thread_is_inside_while_the_gate_is_closed(0);
    a_grace_period_waits_for_the_calls_in_flight_and_not_for_later_ones(1);
    a_grace_period_waits_for_the_calls_in_flight_and_not_for_later_ones(0);
    two_grace_periods_at_once_do_not_wait_for_each_other();
    if (failures) return 1;
    printf("fork_gate_test: 8 passed\n");
    return 0;
}
