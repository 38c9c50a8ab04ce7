/*
 * A C program built against include/xmem.h only: a round trip through every family of the C ABI, the error
 * contract (statuses, thread-local messages, stale and double-destroyed handles), view leases that outlive their
 * guard and pool, a DLPack export, and a close racing calls on other threads.
 *
 *   gcc -std=c11 -Wall -Wextra -Werror -I include tests/c/roundtrip.c -L artifacts/native -lxmem -lpthread \
 *       -Wl,-rpath,'$ORIGIN' -o artifacts/native/roundtrip && artifacts/native/roundtrip
 *
 * Prints one line per check and "roundtrip: ok" at the end; exits 1 at the first failure.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xmem.h"

static int g_checks;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        g_checks++;                                                                               \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "roundtrip: FAILED at %s:%d: %s\n  ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fprintf(stderr, "\n  last error: [%d %s] %s\n", xmem_last_status(),                   \
                    xmem_status_name(xmem_last_status()), xmem_last_error());                     \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

#define OK(call) CHECK((call) == XMEM_OK, "%s", #call)
#define FAILS_WITH(call, status) CHECK((call) == (status), "%s should fail with %s", #call, #status)

/* The subset of dlpack.h this test reads. */
typedef struct { int32_t device_type, device_id; } DLDevice;
typedef struct { uint8_t code, bits; uint16_t lanes; } DLDataType;
typedef struct {
    void *data; DLDevice device; int32_t ndim; DLDataType dtype; int64_t *shape, *strides; uint64_t byte_offset;
} DLTensor;
typedef struct DLManagedTensorVersioned {
    struct { uint32_t major, minor; } version;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensorVersioned *self);
    uint64_t flags;
    DLTensor dl_tensor;
} DLManagedTensorVersioned;

/* Counted by 4 threads at once: atomic (a plain ++ loses counts when they see the close together). */
struct race { xmem_pool pool; int32_t index; volatile int stop; atomic_long ok, closed; };

static void *hammer(void *arg)
{
    struct race *r = arg;
    while (!r->stop) {
        int32_t n;
        xmem_status s = xmem_pool_add_ref(r->pool, r->index, &n);
        if (s == XMEM_OK) {
            s = xmem_pool_release(r->pool, r->index, &n);
        }
        if (s == XMEM_OK) {
            atomic_fetch_add(&r->ok, 1);
        } else if (s == XMEM_E_INVALID_HANDLE) {
            atomic_fetch_add(&r->closed, 1);
            break;
        } else {
            fprintf(stderr, "roundtrip: racing call failed with %d: %s\n", s, xmem_last_error());
            exit(1);
        }
    }
    return NULL;
}

/* Without a CUDA driver every CUDA function says so (XMEM_E_CUDA_UNAVAILABLE, with the reason), whatever the guard;
   on a machine with CUDA the CPU guard's CUDA state is XMEM_E_INVALID_ARGUMENT instead. */
static void cuda_unavailable(xmem_pool pool, xmem_guard cpu_guard)
{
    xmem_guard g = 0;
    xmem_buffer_info info;
    xmem_status s = xmem_pool_acquire_cuda(pool, 16, 0, &g, &info);
    if (s == XMEM_OK) {
        CHECK((info.flags & XMEM_BUFFER_CUDA) && info.cpu_ptr == NULL && info.cuda_ptr != 0 && info.device_id == 0,
              "CUDA buffer info");
        FAILS_WITH(xmem_guard_cpu_ptr(g, &(void *){NULL}), XMEM_E_INVALID_ARGUMENT);
        FAILS_WITH(xmem_guard_lease_view(g, &(xmem_lease){0}, NULL, NULL), XMEM_E_INVALID_ARGUMENT);
        OK(xmem_guard_release(g));
        printf("roundtrip: CUDA is available here; checked a CUDA buffer's info\n");
        return;
    }
    CHECK(s == XMEM_E_CUDA_UNAVAILABLE && strstr(xmem_last_error(), "CUDA is unavailable") != NULL,
          "acquire_cuda without CUDA: %d", s);
    FAILS_WITH(xmem_pool_preallocate_cuda(pool, 16, 1, 0, (int32_t[1]){0}), XMEM_E_CUDA_UNAVAILABLE);
    FAILS_WITH(xmem_guard_cuda_ptr(cpu_guard, &(uint64_t){0}), XMEM_E_CUDA_UNAVAILABLE);
    FAILS_WITH(xmem_guard_cuda_ptr_mut(cpu_guard, &(uint64_t){0}), XMEM_E_CUDA_UNAVAILABLE);
    FAILS_WITH(xmem_guard_record_writes_done(cpu_guard, 0), XMEM_E_CUDA_UNAVAILABLE);
    FAILS_WITH(xmem_guard_wait_writes_done(cpu_guard, 0), XMEM_E_CUDA_UNAVAILABLE);
    FAILS_WITH(xmem_guard_synchronize_writes(cpu_guard), XMEM_E_CUDA_UNAVAILABLE);
    FAILS_WITH(xmem_guard_copy_to_cuda(cpu_guard, 0, &g, NULL), XMEM_E_CUDA_UNAVAILABLE);
    FAILS_WITH(xmem_guard_copy_to_device(cpu_guard, 0, &g, NULL), XMEM_E_CUDA_UNAVAILABLE);
    FAILS_WITH(xmem_guard_copy_to_device(cpu_guard, -2, &g, NULL), XMEM_E_INVALID_ARGUMENT);
    int32_t on = -1;
    OK(xmem_pool_cuda_get_waits(pool, &on));
    CHECK(on == 1, "get waits by default");
    OK(xmem_pool_set_cuda_get_waits(pool, 0));
    OK(xmem_pool_cuda_get_waits(pool, &on));
    CHECK(on == 0, "get waits off");
    OK(xmem_pool_set_cuda_get_waits(pool, 1));
}

/* Channels move references between handles; descriptions travel with the buffer. */
static void channels_and_descriptions(void)
{
    char name[64];
    snprintf(name, sizeof name, "xmem-c-channel-%d", (int)getpid());
    xmem_pool pool = 0;
    OK(xmem_pool_create(name, 8, 0600, 0, &pool));

    /* A described buffer through a queue channel. */
    xmem_guard g = 0;
    xmem_buffer_info info;
    OK(xmem_pool_acquire_cpu(pool, 2 * 3 * 4, &g, &info));
    xmem_description d;
    memset(&d, 0, sizeof d);
    d.dtype = XMEM_DTYPE_FLOAT32;
    d.ndim = 2;
    d.shape[0] = 2;
    d.shape[1] = 3;
    d.flags = XMEM_DESC_CONTIGUOUS;
    d.seq = 42;
    d.timestamp_ns = 123456789;
    strcpy(d.content_type, "tensor/f32");
    strcpy(d.producer_tag, "roundtrip");
    ((float *)info.cpu_ptr)[5] = 2.5f;
    OK(xmem_guard_set_description(g, &d));
    xmem_description bad = d;
    bad.shape[0] = 3; /* 36 bytes > 24 */
    FAILS_WITH(xmem_guard_set_description(g, &bad), XMEM_E_INVALID_ARGUMENT);
    bad = d;
    bad.dtype = 99;
    FAILS_WITH(xmem_guard_set_description(g, &bad), XMEM_E_INVALID_ARGUMENT);
    bad = d;
    memset(bad.content_type, 'x', sizeof bad.content_type); /* no NUL */
    FAILS_WITH(xmem_guard_set_description(g, &bad), XMEM_E_INVALID_ARGUMENT);

    xmem_channel ch = 0;
    OK(xmem_pool_channel(pool, "frames", 2, XMEM_CHANNEL_QUEUE, &ch));
    FAILS_WITH(xmem_pool_channel(pool, "bad/name", 2, XMEM_CHANNEL_QUEUE, &(xmem_channel){0}), XMEM_E_INVALID_NAME);
    FAILS_WITH(xmem_pool_channel(pool, "odd", 3, XMEM_CHANNEL_QUEUE, &(xmem_channel){0}), XMEM_E_INVALID_ARGUMENT);
    FAILS_WITH(xmem_channel_receive(ch, 0, 0, &(xmem_guard){0}, NULL), XMEM_E_WOULD_BLOCK);
    FAILS_WITH(xmem_channel_receive(ch, 10 * 1000 * 1000, 0, &(xmem_guard){0}, NULL), XMEM_E_TIMEOUT);
    /* A spin of 0..1 s; a receive with timeout 0 still returns at once, and one that spins then sleeps still times out. */
    FAILS_WITH(xmem_channel_set_spin(ch, -1), XMEM_E_INVALID_ARGUMENT);
    FAILS_WITH(xmem_channel_set_spin(ch, 1000000001LL), XMEM_E_INVALID_ARGUMENT);
    FAILS_WITH(xmem_channel_set_spin(0, 1000), XMEM_E_INVALID_HANDLE);
    OK(xmem_channel_set_spin(ch, 2 * 1000 * 1000));
    FAILS_WITH(xmem_channel_receive(ch, 0, 0, &(xmem_guard){0}, NULL), XMEM_E_WOULD_BLOCK);
    FAILS_WITH(xmem_channel_receive(ch, 5 * 1000 * 1000, 0, &(xmem_guard){0}, NULL), XMEM_E_TIMEOUT);
    OK(xmem_channel_set_spin(ch, 0));
    OK(xmem_channel_send(ch, g, -1));
    FAILS_WITH(xmem_guard_release(g), XMEM_E_INVALID_HANDLE); /* spent by the send */
    xmem_channel_properties props;
    OK(xmem_channel_info(ch, &props));
    CHECK(props.depth == 2 && props.mode == XMEM_CHANNEL_QUEUE && props.count == 1, "channel info");

    xmem_guard r = 0;
    OK(xmem_channel_receive(ch, -1, 0, &r, &info));
    CHECK((info.flags & XMEM_BUFFER_READ_ONLY) && ((float *)info.cpu_ptr)[5] == 2.5f, "received read-only");
    xmem_description got;
    OK(xmem_guard_description(r, &got));
    CHECK((got.flags & XMEM_DESC_PRESENT) && (got.flags & XMEM_DESC_CONTIGUOUS) && got.dtype == XMEM_DTYPE_FLOAT32
              && got.ndim == 2 && got.shape[1] == 3 && got.strides[0] == 12 && got.strides[1] == 4 && got.seq == 42
              && got.timestamp_ns == 123456789 && strcmp(got.content_type, "tensor/f32") == 0
              && strcmp(got.producer_tag, "roundtrip") == 0,
          "description round trip");
    FAILS_WITH(xmem_guard_set_description(r, &d), XMEM_E_READ_ONLY);
    int32_t count = 0;
    OK(xmem_pool_ref_count(pool, info.meta_index, &count));
    CHECK(count == 1, "exactly one reference after send + receive: %d", count);
    OK(xmem_guard_release(r));

    /* Full: a send that cannot wait leaves the guard with its owner. */
    for (int i = 0; i < 2; i++) {
        OK(xmem_pool_acquire_cpu(pool, 8, &g, NULL));
        OK(xmem_channel_send(ch, g, 0));
    }
    OK(xmem_pool_acquire_cpu(pool, 8, &g, NULL));
    FAILS_WITH(xmem_channel_send(ch, g, 0), XMEM_E_WOULD_BLOCK);
    FAILS_WITH(xmem_channel_send(ch, g, 5 * 1000 * 1000), XMEM_E_TIMEOUT);
    OK(xmem_guard_info(g, &info)); /* still ours */
    OK(xmem_channel_receive(ch, 0, XMEM_RECEIVE_WRITABLE, &r, &info));
    CHECK(!(info.flags & XMEM_BUFFER_READ_ONLY), "writable receive");
    OK(xmem_guard_release(r));
    OK(xmem_channel_send(ch, g, 0));
    FAILS_WITH(xmem_channel_subscribe(ch, &(xmem_subscription){0}), XMEM_E_INVALID_ARGUMENT);
    OK(xmem_channel_close(ch));
    FAILS_WITH(xmem_channel_close(ch), XMEM_E_INVALID_HANDLE);

    /* Fan-out: every subscriber gets its own reference. */
    xmem_channel fan = 0;
    xmem_subscription s1 = 0, s2 = 0;
    OK(xmem_pool_channel(pool, "fan", 4, XMEM_CHANNEL_FANOUT, &fan));
    OK(xmem_channel_subscribe(fan, &s1));
    OK(xmem_channel_subscribe(fan, &s2));
    FAILS_WITH(xmem_channel_receive(fan, 0, 0, &r, NULL), XMEM_E_INVALID_ARGUMENT);
    OK(xmem_pool_acquire_cpu(pool, 8, &g, &info));
    int32_t fan_index = info.meta_index;
    OK(xmem_channel_send(fan, g, -1));
    OK(xmem_pool_ref_count(pool, fan_index, &count));
    CHECK(count == 2, "one reference per subscriber: %d", count);
    OK(xmem_subscription_receive(s1, -1, 0, &r, &info));
    CHECK(info.meta_index == fan_index, "subscriber 1");
    OK(xmem_guard_release(r));
    OK(xmem_channel_close(fan)); /* the subscriptions keep the channel open */
    OK(xmem_subscription_receive(s2, 0, 0, &r, &info));
    OK(xmem_guard_release(r));
    OK(xmem_subscription_close(s1));
    OK(xmem_subscription_close(s2));
    FAILS_WITH(xmem_subscription_close(s2), XMEM_E_INVALID_HANDLE);
    OK(xmem_pool_ref_count(pool, fan_index, &count));
    CHECK(count == 0, "fan-out buffer released: %d", count);

    OK(xmem_pool_close(pool)); /* two buffers still wait in "frames": they go with the pool */
    OK(xmem_pool_remove(name, &(int32_t){0}));
}

int main(void)
{
    char name[64];
    snprintf(name, sizeof name, "xmem-ctest-%d", (int)getpid());

    CHECK(xmem_abi_version() == XMEM_ABI_VERSION, "abi %u", xmem_abi_version());
    CHECK(strlen(xmem_version()) > 0, "version");
    CHECK(strcmp(xmem_status_name(XMEM_E_POOL_FULL), "XMEM_E_POOL_FULL") == 0, "%s", xmem_status_name(6));
    CHECK(strcmp(xmem_status_name(12345), "XMEM_E_UNKNOWN") == 0, "unknown status name");

    /* Errors: a missing pool, a bad name, NULL out-parameters. */
    xmem_pool pool = 0;
    FAILS_WITH(xmem_pool_open(name, &pool), XMEM_E_NOT_FOUND);
    CHECK(strstr(xmem_last_error(), name) != NULL, "message names the pool: %s", xmem_last_error());
    CHECK(xmem_last_native_error() == 2, "errno ENOENT, got %d", xmem_last_native_error());
    FAILS_WITH(xmem_pool_create("bad name!", 4, 0600, 0, &pool), XMEM_E_INVALID_NAME);
    FAILS_WITH(xmem_pool_create(name, 0, 0600, 0, &pool), XMEM_E_INVALID_ARGUMENT);
    FAILS_WITH(xmem_pool_create(name, 4, 0600, 0, NULL), XMEM_E_INVALID_ARGUMENT);
    FAILS_WITH(xmem_pool_create(NULL, 4, 0600, 0, &pool), XMEM_E_INVALID_ARGUMENT);

    /* Create, properties. */
    OK(xmem_pool_create(name, 4, 0600, 0, &pool));
    CHECK(pool != 0, "handle");
    FAILS_WITH(xmem_pool_create(name, 4, 0600, 0, &(xmem_pool){0}), XMEM_E_ALREADY_EXISTS);
    int32_t exists = 0, cap = 0;
    OK(xmem_pool_exists(name, &exists));
    CHECK(exists == 1, "exists");
    OK(xmem_pool_capacity(pool, &cap));
    CHECK(cap == 4, "capacity %d", cap);
    char nbuf[256];
    size_t nlen = 0;
    OK(xmem_pool_name(pool, nbuf, sizeof nbuf, &nlen));
    CHECK(nlen == strlen(name) && strcmp(nbuf, name) == 0, "name %s", nbuf);
    FAILS_WITH(xmem_pool_name(pool, nbuf, 3, &nlen), XMEM_E_INVALID_ARGUMENT);
    CHECK(nlen == strlen(name), "length still reported");

    /* Acquire, write, hand off with add_ref, read back through a second attachment. */
    xmem_guard w = 0;
    xmem_buffer_info info;
    OK(xmem_pool_acquire_cpu(pool, 4096, &w, &info));
    CHECK(info.size == 4096 && info.cpu_ptr != NULL && info.flags == 0 && info.device_id == -1, "info");
    int32_t idx = info.meta_index;
    memset(info.cpu_ptr, 0x5A, 4096);
    void *p = NULL;
    OK(xmem_guard_cpu_ptr_mut(w, &p));
    CHECK(p == info.cpu_ptr, "same pointer");
    int32_t count = 0;
    OK(xmem_pool_add_ref(pool, idx, &count));
    CHECK(count == 2, "count after add_ref %d", count);

    xmem_pool reader = 0;
    OK(xmem_pool_open(name, &reader));
    xmem_guard r = 0;
    xmem_buffer_info rinfo;
    OK(xmem_pool_get(reader, idx, &r, &rinfo));
    CHECK(rinfo.flags & XMEM_BUFFER_READ_ONLY, "read-only flag");
    CHECK(((unsigned char *)rinfo.cpu_ptr)[4095] == 0x5A, "reader sees the bytes");
    FAILS_WITH(xmem_guard_cpu_ptr_mut(r, &p), XMEM_E_READ_ONLY);
    OK(xmem_pool_ref_count(reader, idx, &count));
    CHECK(count == 3, "count with reader %d", count);

    /* Bad indexes and CUDA. */
    FAILS_WITH(xmem_pool_get(pool, 4, &r, NULL), XMEM_E_INDEX_OUT_OF_RANGE);
    FAILS_WITH(xmem_pool_get(pool, -1, &r, NULL), XMEM_E_INDEX_OUT_OF_RANGE);
    FAILS_WITH(xmem_pool_release(pool, 3, &count), XMEM_E_SLOT_NOT_LIVE);
    cuda_unavailable(pool, w);

    /* A view lease outlives its guard and the pool. */
    xmem_lease lease = 0;
    void *lp = NULL;
    int64_t lsize = 0;
    OK(xmem_guard_lease_view(r, &lease, &lp, &lsize));
    CHECK(lp == rinfo.cpu_ptr && lsize == 4096, "lease");

    /* DLPack export, versioned, read-only because the guard is. */
    int64_t shape[2] = {16, 256};
    xmem_dlpack_request req = {.dtype_code = 1, .dtype_bits = 8, .dtype_lanes = 1, .ndim = 2, .shape = shape,
                               .flags = XMEM_DLPACK_VERSIONED};
    void *managed = NULL;
    OK(xmem_guard_export_dlpack(r, &req, &managed));
    DLManagedTensorVersioned *t = managed;
    CHECK(t->version.major == 1 && (t->flags & 1) && t->dl_tensor.ndim == 2 && t->dl_tensor.strides[0] == 256
              && t->dl_tensor.device.device_type == 1 && ((unsigned char *)t->dl_tensor.data)[100] == 0x5A,
          "dlpack tensor");
    int64_t too_big[1] = {4097};
    xmem_dlpack_request bad = {.dtype_code = 1, .dtype_bits = 8, .dtype_lanes = 1, .ndim = 1, .shape = too_big};
    FAILS_WITH(xmem_guard_export_dlpack(r, &bad, &managed), XMEM_E_INVALID_ARGUMENT);

    /* Release, double release, forget. */
    OK(xmem_guard_release(r));
    FAILS_WITH(xmem_guard_release(r), XMEM_E_INVALID_HANDLE);
    FAILS_WITH(xmem_guard_info(r, &rinfo), XMEM_E_INVALID_HANDLE);
    FAILS_WITH(xmem_guard_release(pool), XMEM_E_INVALID_HANDLE); /* wrong kind */
    FAILS_WITH(xmem_pool_close(w), XMEM_E_INVALID_HANDLE);       /* wrong kind */
    FAILS_WITH(xmem_guard_release(0), XMEM_E_INVALID_HANDLE);
    OK(xmem_guard_forget(w));
    FAILS_WITH(xmem_guard_forget(w), XMEM_E_INVALID_HANDLE);
    OK(xmem_pool_ref_count(pool, idx, &count));
    CHECK(count == 2, "the forgotten and the added reference remain: %d", count);
    OK(xmem_pool_set_ref_count(pool, idx, 1));
    OK(xmem_pool_release(pool, idx, &count));
    CHECK(count == 0, "released to zero");

    /* Preallocate. */
    int32_t pre[3];
    OK(xmem_pool_preallocate_cpu(pool, 100, 3, pre));
    for (int i = 0; i < 3; i++) {
        OK(xmem_pool_ref_count(pool, pre[i], &count));
        CHECK(count == 1, "preallocated count");
    }
    OK(xmem_pool_acquire_cpu(pool, 10, &w, NULL));
    FAILS_WITH(xmem_pool_acquire_cpu(pool, 10, &(xmem_guard){0}, NULL), XMEM_E_POOL_FULL);
    FAILS_WITH(xmem_pool_acquire_cpu_wait(pool, 10, 20 * 1000 * 1000, &(xmem_guard){0}, NULL), XMEM_E_TIMEOUT);
    OK(xmem_guard_release(w));
    for (int i = 0; i < 3; i++) {
        OK(xmem_pool_release(pool, pre[i], &count));
    }
    int64_t trimmed = 0;
    OK(xmem_pool_trim(pool, &trimmed));

    /* Close while other threads are inside calls: they finish or see INVALID_HANDLE, never a crash. */
    xmem_guard keep = 0;
    OK(xmem_pool_acquire_cpu(reader, 64, &keep, &info));
    struct race race = {reader, info.meta_index, 0, 0, 0};
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_create(&th[i], NULL, hammer, &race) == 0, "thread");
    }
    usleep(20 * 1000);
    OK(xmem_pool_close(reader));
    FAILS_WITH(xmem_pool_close(reader), XMEM_E_INVALID_HANDLE);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK(atomic_load(&race.ok) > 0 && atomic_load(&race.closed) == 4, "race: %ld ok, %ld saw the close",
          atomic_load(&race.ok), atomic_load(&race.closed));
    OK(xmem_guard_release(keep)); /* a guard outliving its pool's handle is released harmlessly */

    /* Close the pool; the lease and the DLPack tensor still read the memory. */
    OK(xmem_pool_close(pool));
    FAILS_WITH(xmem_pool_capacity(pool, &cap), XMEM_E_INVALID_HANDLE);
    CHECK(((unsigned char *)lp)[0] == 0x5A, "lease still mapped after close");
    CHECK(((unsigned char *)t->dl_tensor.data)[4095] == 0x5A, "tensor still mapped after close");
    t->deleter(t);
    OK(xmem_lease_release(lease));
    FAILS_WITH(xmem_lease_release(lease), XMEM_E_INVALID_HANDLE);

    int32_t removed = 0;
    OK(xmem_pool_remove(name, &removed));
    OK(xmem_pool_exists(name, &exists));
    CHECK(exists == 0, "removed (%d)", removed);

    channels_and_descriptions();

    printf("roundtrip: ok (%d checks)\n", g_checks);
    return 0;
}
