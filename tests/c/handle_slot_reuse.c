/*
 * Guard-handle table slots of threads that are gone come back. A thread keeps the table slots of the handles it
 * releases for its own next acquires (src/Xmem.Native/Handles/HandleTable.cs, LocalFree: no compare-and-swap on
 * the shared free list's head); when the thread exits, its list's finalizer gives them to the shared list. Were
 * they lost instead, a process that runs short-lived threads would use up the table's 16M slots.
 *
 * THREADS threads, one after another, each acquire one buffer and release it, then exit: each keeps the slot of its
 * handle. Pool opens and closes then make the garbage that starts collections, which run the finalizers. A handle's
 * low 24 bits are its slot index + 1, so a new thread whose handle's index is below THREADS got a slot back (with
 * none given back it would get the next new one, THREADS or above). Built against include/xmem.h only:
 *
 *   gcc -std=c11 -O1 -Wall -Wextra -Werror -I include tests/c/handle_slot_reuse.c -L artifacts/native -lxmem \
 *       -lpthread -Wl,-rpath,'$ORIGIN' -o artifacts/native/handle_slot_reuse && artifacts/native/handle_slot_reuse
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xmem.h"

#define THREADS 2000

static xmem_pool g_pool;

static void die(const char *what, xmem_status s) {
    fprintf(stderr, "handle_slot_reuse: %s: status %d %s: %s\n", what, (int)s, xmem_status_name(s), xmem_last_error());
    exit(1);
}

/* Acquires and releases one buffer; the slot index of its handle goes to *arg. */
static void *one_handle(void *arg) {
    xmem_guard g = 0;
    xmem_buffer_info info;
    xmem_status s = xmem_pool_acquire_cpu(g_pool, 64, &g, &info);
    if (s != XMEM_OK) die("acquire", s);
    *(unsigned long *)arg = (unsigned long)(g & 0xFFFFFF) - 1;
    s = xmem_guard_release(g);
    if (s != XMEM_OK) die("release", s);
    return NULL;
}

static unsigned long index_on_a_new_thread(void) {
    unsigned long index = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, one_handle, &index) != 0) {
        perror("pthread_create");
        exit(1);
    }
    pthread_join(t, NULL);
    return index;
}

int main(void) {
    char name[64];
    snprintf(name, sizeof name, "/xmem-handle-reuse-%d", (int)getpid());
    xmem_status s = xmem_pool_create(name, 4, 0600, 0, &g_pool);
    if (s != XMEM_OK) die("create", s);
    unsigned long highest = 0;
    for (int i = 0; i < THREADS; i++) {
        unsigned long index = index_on_a_new_thread();
        if (index > highest) highest = index;
    }
    int kept = highest + 1 >= THREADS;  /* each thread kept its slot: otherwise this test would check nothing */
    /* Garbage for collections, then a new thread's handle, until one gets a slot back (at most 60 s). */
    time_t deadline = time(NULL) + 60;
    unsigned long index = THREADS;
    int rounds = 0;
    while (kept && index >= THREADS && time(NULL) < deadline) {
        for (int k = 0; k < 2000; k++) {
            xmem_pool other = 0;
            s = xmem_pool_open(name, &other);
            if (s != XMEM_OK) die("open", s);
            s = xmem_pool_close(other);
            if (s != XMEM_OK) die("close", s);
        }
        index = index_on_a_new_thread();
        rounds++;
    }
    s = xmem_pool_close(g_pool);
    if (s != XMEM_OK) die("close", s);
    int32_t removed = 0;
    (void)xmem_pool_remove(name, &removed);
    if (!kept) {
        fprintf(stderr, "handle_slot_reuse: FAILED: %d threads used only %lu slots; each should keep its own\n",
                THREADS, highest + 1);
        return 1;
    }
    if (index >= THREADS) {
        fprintf(stderr, "handle_slot_reuse: FAILED: after %d rounds of garbage a new thread still got a new slot "
                        "(%lu); the slots of %d exited threads never came back\n", rounds, index, THREADS);
        return 1;
    }
    printf("handle_slot_reuse: ok (%d exited threads' slots; a new thread got slot %lu back after %d rounds of "
           "garbage)\n", THREADS, index, rounds);
    return 0;
}
