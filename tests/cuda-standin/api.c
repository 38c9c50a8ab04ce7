/* The driver entry points of the stand-in libcuda.so.1 — A CONTRACT CHECKER, NOT A GPU (see standin.h).
 *
 * Exactly the symbols xmem binds (src/Xmem/Interop/Interop.Cuda.cs), with cuda.h's signatures. What each checks,
 * besides its arguments: cuInit first (in this process: a fork child of an initialized process gets
 * CUDA_ERROR_NOT_INITIALIZED, as the real driver's children do); a current context for every call that needs one;
 * IPC handles intact byte for byte and from another process; no use of a freed allocation, a closed mapping or a
 * destroyed event (locally, or by the exporter); no cuMemFree while a live importer has the allocation open; flags
 * that the documentation allows; and stream order across processes: a process that reads or writes an allocation
 * another process wrote last must first wait (cuStreamWaitEvent on that stream, or cuEventSynchronize) for an event
 * recorded after that write. Streams are the legacy one (0 or CU_STREAM_LEGACY) and the per-thread one
 * (CU_STREAM_PER_THREAD); the stand-in creates no others. Copies run at once (a valid order of a real GPU's). */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define CTX_MAGIC 0x58435458u
#define EVENT_MAGIC 0x58455654u
#define CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS 0x1u
#define CU_EVENT_BLOCKING_SYNC 0x1u
#define CU_EVENT_DISABLE_TIMING 0x2u
#define CU_EVENT_INTERPROCESS 0x4u
#define MEM_HANDLE_MAGIC "XSTDMEM"
#define EVENT_HANDLE_MAGIC "XSTDEVT"
#define MAX_LOCAL_MEM 8192
#define MAX_LOCAL_EVENTS 16384
#define MAX_COVER 512
#define NSTREAMS 2

struct standin_ctx {
    uint32_t magic;
    int device;
};

struct standin_event {
    uint32_t magic;
    int device;
    int imported;
    int destroyed;
    int reg; /* registry index of an interprocess event, else -1 */
    unsigned flags;
    uint64_t id;
};

enum { MEM_UNUSED = 0, MEM_EXPORT = 1, MEM_IMPORT = 2 };

struct local_mem {
    int kind;
    int live; /* 0: a tombstone (freed or closed): its addresses stay reserved, so a stale pointer is recognised */
    int reg;
    int device;
    int refs; /* imports: opens not yet closed */
    uint64_t id;
    CUdeviceptr base;
    uint64_t size;
};

/* This process has waited, on stream `stream` (or STANDIN_HOST_STREAM: all), for `point`. */
struct cover {
    int stream;
    struct standin_point point;
};

static int g_initialized;
static pid_t g_init_pid;
static int g_devices;
static uint64_t g_device_bytes;
static struct standin_ctx g_ctx[STANDIN_MAX_DEVICES];
static int g_retain[STANDIN_MAX_DEVICES];
static struct local_mem g_mem[MAX_LOCAL_MEM];
static struct standin_event *g_events[MAX_LOCAL_EVENTS];
static int g_nevents;
static struct cover g_cover[MAX_COVER];
static int g_ncover;
static uint64_t g_seq[NSTREAMS];
static __thread CUcontext t_stack[16];
static __thread int t_depth;

/* ------------------------------------------------------------------ prologues */

static CUresult need_init(const char *fn)
{
    if (!g_initialized) {
        standin_violation(fn, "called before cuInit");
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    if (getpid() != g_init_pid) {
        /* A fork child of a process that initialized CUDA: the real driver refuses it too. Not xmem's breach by
         * itself (the caller forked); what xmem says about it is checked by the tests. */
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    return CUDA_SUCCESS;
}

static CUresult need_ctx(const char *fn)
{
    CUresult rc = need_init(fn);
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (t_depth == 0) {
        standin_violation(fn, "no current context on this thread (push the device's primary context first)");
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    return CUDA_SUCCESS;
}

CUresult standin_need_init(const char *fn) { return need_init(fn); }
int standin_devices(void) { return g_devices; }

static int current_device(void) { return t_stack[t_depth - 1]->device; }

static int valid_ctx(CUcontext c)
{
    for (int d = 0; d < g_devices; d++) {
        if (c == &g_ctx[d]) {
            return g_retain[d] > 0;
        }
    }
    return 0;
}

/* The stand-in's stream index: 0 the legacy stream, 1 the per-thread one; -1 (a violation) for anything else. */
static int stream_index(const char *fn, CUstream s)
{
    uintptr_t v = (uintptr_t)s;
    if (v == 0 || v == 1) {
        return 0;
    }
    if (v == 2) {
        return 1;
    }
    standin_violation(fn, "stream 0x%lx was never created (the stand-in knows the legacy stream 0/1 and the per-thread stream 2)", (unsigned long)v);
    return -1;
}

/* ------------------------------------------------------------------ local memory */

static struct local_mem *find_mem(CUdeviceptr p, uint64_t n, int want_live)
{
    for (int i = 0; i < MAX_LOCAL_MEM; i++) {
        struct local_mem *m = &g_mem[i];
        if (m->kind != MEM_UNUSED && m->live == want_live && p >= m->base && p - m->base < m->size && n <= m->size - (p - m->base)) {
            return m;
        }
    }
    return NULL;
}

static struct local_mem *find_mem_any(CUdeviceptr p, int want_live)
{
    return find_mem(p, 1, want_live);
}

static struct local_mem *new_local_mem(void)
{
    for (int i = 0; i < MAX_LOCAL_MEM; i++) {
        if (g_mem[i].kind == MEM_UNUSED) {
            return &g_mem[i];
        }
    }
    return NULL;
}

/* Keeps the addresses reserved and inaccessible: a stale pointer then faults on the host and is recognised here. */
static void entomb(struct local_mem *m)
{
    void *p = mmap((void *)(uintptr_t)m->base, m->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    (void)p;
    m->live = 0;
}

static void mem_path(char *out, size_t n, uint64_t id) { snprintf(out, n, "%s/mem.%llu", standin_dir(), (unsigned long long)id); }

static void *map_file(uint64_t id, uint64_t size, int create)
{
    char path[600];
    mem_path(path, sizeof path, id);
    int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
    if (fd < 0) {
        return NULL;
    }
    if (create && ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        unlink(path);
        return NULL;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

static void fill_handle(unsigned char h[64], const char *magic, uint64_t id)
{
    if (getrandom(h, 64, 0) != 64) {
        for (int i = 0; i < 64; i++) {
            h[i] = (unsigned char)(rand() & 0xff);
        }
    }
    memcpy(h, magic, 8);
    memcpy(h + 8, &id, 8);
    int32_t pid = getpid();
    memcpy(h + 16, &pid, 4);
}

/* ------------------------------------------------------------------ stream order across processes */

static int covered(int s, const struct standin_point *w)
{
    for (int i = 0; i < g_ncover; i++) {
        struct cover *c = &g_cover[i];
        if ((c->stream == s || c->stream == STANDIN_HOST_STREAM) && c->point.pid == w->pid && c->point.start == w->start &&
            c->point.stream == w->stream && c->point.seq >= w->seq) {
            return 1;
        }
    }
    return 0;
}

static void add_cover(int s, const struct standin_point *p)
{
    for (int i = 0; i < g_ncover; i++) {
        struct cover *c = &g_cover[i];
        if (c->stream == s && c->point.pid == p->pid && c->point.start == p->start && c->point.stream == p->stream) {
            if (p->seq > c->point.seq) {
                c->point.seq = p->seq;
            }
            return;
        }
    }
    if (g_ncover == MAX_COVER) {
        memmove(g_cover, g_cover + 1, sizeof g_cover - sizeof g_cover[0]);
        g_ncover--;
    }
    g_cover[g_ncover].stream = s;
    g_cover[g_ncover].point = *p;
    g_ncover++;
}

/* Checks a device range this process reads or writes on stream s; with the lock held. */
static CUresult access_range(const char *fn, CUdeviceptr p, uint64_t n, int s, int write, const char *what)
{
    if (n == 0) {
        return CUDA_SUCCESS;
    }
    struct local_mem *m = find_mem(p, n, 1);
    struct standin_point *w;
    if (!m) {
        int in_vmm = 0;
        w = standin_vmm_access(fn, p, n, write, what, &in_vmm);
        if (in_vmm) {
            if (!w) {
                return CUDA_ERROR_INVALID_VALUE;
            }
            goto order;
        }
        struct local_mem *dead = find_mem_any(p, 0);
        struct local_mem *part = find_mem_any(p, 1);
        if (dead && !part) {
            standin_violation(fn, "the %s 0x%llx is in allocation %llu, which this process already %s (use after free)", what,
                              (unsigned long long)p, (unsigned long long)dead->id, dead->kind == MEM_EXPORT ? "freed" : "closed (cuIpcCloseMemHandle)");
        } else if (part) {
            standin_violation(fn, "the %s range 0x%llx + %llu reaches past the end of allocation %llu (%llu bytes from 0x%llx)", what,
                              (unsigned long long)p, (unsigned long long)n, (unsigned long long)part->id,
                              (unsigned long long)part->size, (unsigned long long)part->base);
        } else {
            standin_violation(fn, "the %s 0x%llx is not device memory of this process", what, (unsigned long long)p);
        }
        return CUDA_ERROR_INVALID_VALUE;
    }
    struct standin_alloc *a = &standin_reg()->allocs[m->reg];
    if (a->id != m->id) {
        standin_violation(fn, "allocation %llu vanished from the registry", (unsigned long long)m->id);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (m->kind == MEM_IMPORT && a->state == REC_LIVE && !standin_alive(a->owner_pid, a->owner_start)) {
        /* IPC memory dies with its exporter's context, at once (a GPU faults on it); only VMM memory outlives it. */
        return CUDA_ERROR_ILLEGAL_ADDRESS;
    }
    if (m->kind == MEM_IMPORT && a->state != REC_LIVE) {
        if (standin_alive(a->owner_pid, a->owner_start)) {
            standin_violation(fn, "the %s 0x%llx is in allocation %llu, which its exporter (pid %d) freed while this process still had it open", what,
                              (unsigned long long)p, (unsigned long long)m->id, a->owner_pid);
        }
        return CUDA_ERROR_ILLEGAL_ADDRESS; /* an exporter that died took its memory with it: the documented fault */
    }
    w = &a->last_write;
order:;
    uint64_t my_start = standin_my_start();
    if (w->pid != 0 && !(w->pid == getpid() && w->start == my_start) && !covered(s, w)) {
        standin_violation(fn, "%s allocation %llu on stream %d, but pid %d wrote it last (its stream %d, op %llu) and this process did not wait for an event recorded after that write (cuStreamWaitEvent or cuEventSynchronize): a race on a GPU",
                          write ? "writes" : "reads", (unsigned long long)m->id, s, w->pid, w->stream, (unsigned long long)w->seq);
    }
    g_seq[s]++;
    if (write) {
        w->pid = getpid();
        w->start = my_start;
        w->stream = s;
        w->seq = g_seq[s];
    }
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------ events */

static struct standin_event *find_event(const char *fn, CUevent ev)
{
    for (int i = 0; i < g_nevents; i++) {
        if (g_events[i] == ev) {
            return ev;
        }
    }
    standin_violation(fn, "%p is not an event of this process", (void *)ev);
    return NULL;
}

/* With the lock held: the event may be used (not destroyed here, and an imported one not destroyed by its exporter). */
static CUresult usable_event(const char *fn, CUevent ev, struct standin_event **out)
{
    struct standin_event *e = find_event(fn, ev);
    if (!e) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (e->destroyed) {
        standin_violation(fn, "event %llu was destroyed (cuEventDestroy) before this use", (unsigned long long)e->id);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    if (e->imported) {
        struct standin_event_rec *r = &standin_reg()->events[e->reg];
        if (r->id != e->id || r->state != REC_LIVE) {
            if (r->id == e->id && standin_alive(r->owner_pid, r->owner_start)) {
                standin_violation(fn, "imported event %llu was destroyed by its exporter (pid %d) before this use", (unsigned long long)e->id, r->owner_pid);
            }
            return CUDA_ERROR_INVALID_HANDLE;
        }
    }
    *out = e;
    return CUDA_SUCCESS;
}

static struct standin_point *event_point(struct standin_event *e)
{
    static __thread struct standin_point local;
    if (e->reg >= 0) {
        return &standin_reg()->events[e->reg].last_record;
    }
    return &local; /* a non-interprocess event orders nothing across processes */
}

/* ------------------------------------------------------------------ initialization, devices, contexts */

EXPORT CUresult cuInit(unsigned flags)
{
    if (flags != 0) {
        standin_violation("cuInit", "flags must be 0 (got %u)", flags);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (g_initialized && getpid() != g_init_pid) {
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    if (standin_registry_open() != 0) {
        return CUDA_ERROR_UNKNOWN;
    }
    const char *n = getenv("XMEM_CUDA_STANDIN_DEVICES");
    g_devices = n && *n ? atoi(n) : 2;
    if (g_devices < 0 || g_devices > STANDIN_MAX_DEVICES) {
        g_devices = 2;
    }
    const char *mib = getenv("XMEM_CUDA_STANDIN_DEVICE_MIB");
    g_device_bytes = (uint64_t)(mib && *mib ? strtoull(mib, NULL, 10) : 256) << 20;
    for (int d = 0; d < STANDIN_MAX_DEVICES; d++) {
        g_ctx[d].magic = CTX_MAGIC;
        g_ctx[d].device = d;
    }
    g_init_pid = getpid();
    g_initialized = 1;
    return g_devices == 0 ? CUDA_ERROR_NO_DEVICE : CUDA_SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int *v)
{
    if (!v) {
        standin_violation("cuDriverGetVersion", "null pointer");
        return CUDA_ERROR_INVALID_VALUE;
    }
    *v = 12040;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int *count)
{
    CUresult rc = need_init("cuDeviceGetCount");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!count) {
        standin_violation("cuDeviceGetCount", "null pointer");
        return CUDA_ERROR_INVALID_VALUE;
    }
    *count = g_devices;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice *dev, int ordinal)
{
    CUresult rc = need_init("cuDeviceGet");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!dev || ordinal < 0 || ordinal >= g_devices) {
        standin_violation("cuDeviceGet", "ordinal %d is not one of the %d devices (or a null pointer)", ordinal, g_devices);
        return CUDA_ERROR_INVALID_DEVICE;
    }
    *dev = ordinal;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev)
{
    CUresult rc = need_init("cuDevicePrimaryCtxRetain");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!ctx || dev < 0 || dev >= g_devices) {
        standin_violation("cuDevicePrimaryCtxRetain", "device %d is not one of the %d devices (or a null pointer)", dev, g_devices);
        return CUDA_ERROR_INVALID_DEVICE;
    }
    __atomic_add_fetch(&g_retain[dev], 1, __ATOMIC_SEQ_CST);
    *ctx = &g_ctx[dev];
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    CUresult rc = need_init("cuDevicePrimaryCtxRelease_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (dev < 0 || dev >= g_devices || __atomic_load_n(&g_retain[dev], __ATOMIC_SEQ_CST) <= 0) {
        standin_violation("cuDevicePrimaryCtxRelease_v2", "device %d's primary context is not retained", dev);
        return CUDA_ERROR_INVALID_DEVICE;
    }
    __atomic_sub_fetch(&g_retain[dev], 1, __ATOMIC_SEQ_CST);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
    CUresult rc = need_init("cuCtxPushCurrent_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!valid_ctx(ctx)) {
        standin_violation("cuCtxPushCurrent_v2", "%p is not a retained primary context", (void *)ctx);
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (t_depth == (int)(sizeof t_stack / sizeof t_stack[0])) {
        standin_violation("cuCtxPushCurrent_v2", "the context stack is 16 deep: pushes without pops");
        return CUDA_ERROR_INVALID_VALUE;
    }
    t_stack[t_depth++] = ctx;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPopCurrent_v2(CUcontext *out)
{
    CUresult rc = need_init("cuCtxPopCurrent_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (t_depth == 0) {
        standin_violation("cuCtxPopCurrent_v2", "no context is current on this thread (a pop without a push)");
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    CUcontext c = t_stack[--t_depth];
    if (out) {
        *out = c;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSynchronize(void)
{
    return need_ctx("cuCtxSynchronize"); /* the stand-in's work is done when queued */
}

/* ------------------------------------------------------------------ memory */

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes)
{
    CUresult rc = need_ctx("cuMemAlloc_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!dptr || bytes == 0) {
        standin_violation("cuMemAlloc_v2", "a null pointer or 0 bytes");
        return CUDA_ERROR_INVALID_VALUE;
    }
    int dev = current_device();
    standin_lock();
    struct standin_registry *r = standin_reg();
    standin_sweep_locked();
    rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (r->device_used[dev] + bytes > g_device_bytes) {
        goto out;
    }
    int slot = -1;
    for (int i = 0; i < STANDIN_MAX_ALLOCS; i++) {
        if (r->allocs[i].state == REC_FREE || r->allocs[i].state == REC_GONE) {
            slot = i;
            break;
        }
    }
    struct local_mem *m = new_local_mem();
    if (slot < 0 || !m) {
        goto out;
    }
    uint64_t id = r->next_id++;
    void *p = map_file(id, bytes, 1);
    if (!p) {
        goto out;
    }
    struct standin_alloc *a = &r->allocs[slot];
    memset(a, 0, sizeof *a);
    a->id = id;
    a->device = dev;
    a->size = bytes;
    a->owner_pid = getpid();
    a->owner_start = standin_my_start();
    fill_handle(a->handle, MEM_HANDLE_MAGIC, id);
    a->state = REC_LIVE;
    r->device_used[dev] += bytes;
    *m = (struct local_mem){ .kind = MEM_EXPORT, .live = 1, .reg = slot, .device = dev, .refs = 1, .id = id, .base = (CUdeviceptr)(uintptr_t)p, .size = bytes };
    *dptr = m->base;
    rc = CUDA_SUCCESS;
out:
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr p)
{
    CUresult rc = need_ctx("cuMemFree_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    struct local_mem *m = find_mem_any(p, 1);
    if (!m || m->base != p || m->kind != MEM_EXPORT) {
        struct local_mem *dead = find_mem_any(p, 0);
        if (!m && dead) {
            standin_violation("cuMemFree_v2", "0x%llx (allocation %llu) was already %s", (unsigned long long)p, (unsigned long long)dead->id,
                              dead->kind == MEM_EXPORT ? "freed (a double free)" : "closed, and is an import (only its exporter frees it)");
        } else if (m && m->kind == MEM_IMPORT) {
            standin_violation("cuMemFree_v2", "0x%llx is another process's memory opened with cuIpcOpenMemHandle: close it with cuIpcCloseMemHandle", (unsigned long long)p);
        } else if (m) {
            standin_violation("cuMemFree_v2", "0x%llx is inside allocation %llu, not its base 0x%llx", (unsigned long long)p, (unsigned long long)m->id, (unsigned long long)m->base);
        } else {
            standin_violation("cuMemFree_v2", "0x%llx is not an allocation of this process", (unsigned long long)p);
        }
        standin_unlock();
        return CUDA_ERROR_INVALID_VALUE;
    }
    struct standin_alloc *a = &standin_reg()->allocs[m->reg];
    for (int k = 0; k < STANDIN_MAX_IMPORTERS; k++) {
        struct standin_importer *im = &a->importers[k];
        if (im->count > 0 && standin_alive(im->pid, im->start)) {
            standin_violation("cuMemFree_v2", "allocation %llu is freed while pid %d still has it open (%u cuIpcOpenMemHandle not yet closed): the CUDA IPC rules make this undefined, and the memory stays resident until it closes",
                              (unsigned long long)a->id, im->pid, im->count);
        }
    }
    a->state = REC_FREED;
    entomb(m);
    standin_sweep_locked();
    standin_unlock();
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemGetAddressRange_v2(CUdeviceptr *base, size_t *size, CUdeviceptr p)
{
    CUresult rc = need_ctx("cuMemGetAddressRange_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    struct local_mem *m = find_mem_any(p, 1);
    if (!m && standin_vmm_address_range(p, base, size)) {
        standin_unlock();
        return CUDA_SUCCESS;
    }
    if (!m) {
        struct local_mem *dead = find_mem_any(p, 0);
        if (dead) {
            standin_violation("cuMemGetAddressRange_v2", "0x%llx is in allocation %llu, already %s", (unsigned long long)p, (unsigned long long)dead->id, dead->kind == MEM_EXPORT ? "freed" : "closed");
        } else {
            standin_violation("cuMemGetAddressRange_v2", "0x%llx is not device memory of this process", (unsigned long long)p);
        }
        standin_unlock();
        return CUDA_ERROR_NOT_FOUND;
    }
    if (base) {
        *base = m->base;
    }
    if (size) {
        *size = m->size;
    }
    standin_unlock();
    return CUDA_SUCCESS;
}

EXPORT CUresult cuIpcGetMemHandle(CUipcMemHandle *h, CUdeviceptr p)
{
    CUresult rc = need_ctx("cuIpcGetMemHandle");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    struct local_mem *m = find_mem_any(p, 1);
    if (!h || !m || m->kind != MEM_EXPORT || m->base != p) {
        standin_violation("cuIpcGetMemHandle", "0x%llx is not the base of a live cuMemAlloc allocation of this process (xmem exports bases)", (unsigned long long)p);
        standin_unlock();
        return CUDA_ERROR_INVALID_VALUE;
    }
    memcpy(h->reserved, standin_reg()->allocs[m->reg].handle, 64);
    standin_unlock();
    return CUDA_SUCCESS;
}

/* With the lock held: the registry record a handle names, checked byte for byte; -1 (and the result) if none. */
static int find_by_handle(const char *fn, const unsigned char h[64], const char *magic, int events, CUresult *rc)
{
    *rc = CUDA_ERROR_INVALID_HANDLE;
    if (memcmp(h, magic, 8) != 0) {
        standin_violation(fn, "the handle's bytes are not a stand-in %s handle (damaged, or never made by cuIpcGet%sHandle)", events ? "event" : "memory", events ? "Event" : "Mem");
        return -1;
    }
    uint64_t id;
    memcpy(&id, h + 8, 8);
    struct standin_registry *r = standin_reg();
    int n = events ? STANDIN_MAX_EVENTS : STANDIN_MAX_ALLOCS;
    for (int i = 0; i < n; i++) {
        uint64_t rid = events ? r->events[i].id : r->allocs[i].id;
        uint32_t st = events ? r->events[i].state : r->allocs[i].state;
        if (rid != id || st == REC_FREE) {
            continue;
        }
        const unsigned char *rh = events ? r->events[i].handle : r->allocs[i].handle;
        if (memcmp(rh, h, 64) != 0) {
            int first = 0;
            while (first < 64 && rh[first] == h[first]) {
                first++;
            }
            standin_violation(fn, "the handle of %s %llu differs from what cuIpcGet%sHandle gave at byte %d: handles must be passed intact, all 64 bytes",
                              events ? "event" : "allocation", (unsigned long long)id, events ? "Event" : "Mem", first);
            return -1;
        }
        return i;
    }
    standin_violation(fn, "the handle names %s %llu, which the registry does not know", events ? "event" : "allocation", (unsigned long long)id);
    return -1;
}

EXPORT CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *out, CUipcMemHandle h, unsigned flags)
{
    CUresult rc = need_ctx("cuIpcOpenMemHandle_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!out || (flags & ~CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS) != 0) {
        standin_violation("cuIpcOpenMemHandle_v2", "flags 0x%x are not 0 or CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS (or a null pointer)", flags);
        return CUDA_ERROR_INVALID_VALUE;
    }
    standin_lock();
    standin_sweep_locked();
    int i = find_by_handle("cuIpcOpenMemHandle_v2", (const unsigned char *)h.reserved, MEM_HANDLE_MAGIC, 0, &rc);
    if (i < 0) {
        goto out;
    }
    struct standin_alloc *a = &standin_reg()->allocs[i];
    if (a->owner_pid == getpid() && a->owner_start == standin_my_start()) {
        standin_violation("cuIpcOpenMemHandle_v2", "allocation %llu was exported by this process: CUDA refuses to open a handle in its exporter (use the pointer)", (unsigned long long)a->id);
        rc = CUDA_ERROR_INVALID_CONTEXT;
        goto out;
    }
    if (a->state != REC_LIVE) {
        if (a->state == REC_FREED && standin_alive(a->owner_pid, a->owner_start)) {
            standin_violation("cuIpcOpenMemHandle_v2", "allocation %llu was freed by its exporter (pid %d): its handle is stale", (unsigned long long)a->id, a->owner_pid);
        }
        rc = CUDA_ERROR_INVALID_HANDLE;
        goto out;
    }
    struct standin_importer *slot = NULL;
    for (int k = 0; k < STANDIN_MAX_IMPORTERS; k++) {
        struct standin_importer *im = &a->importers[k];
        if (im->count > 0 && im->pid == getpid() && im->start == standin_my_start()) {
            slot = im;
            break;
        }
        if (!slot && im->count == 0) {
            slot = im;
        }
    }
    if (!slot) {
        rc = CUDA_ERROR_UNKNOWN;
        goto out;
    }
    for (int k = 0; k < MAX_LOCAL_MEM; k++) {
        struct local_mem *m = &g_mem[k];
        if (m->kind == MEM_IMPORT && m->live && m->id == a->id) {
            m->refs++; /* the driver returns the same mapping, counted */
            slot->count++;
            *out = m->base;
            rc = CUDA_SUCCESS;
            goto out;
        }
    }
    struct local_mem *m = new_local_mem();
    void *p = m ? map_file(a->id, a->size, 0) : NULL;
    if (!p) {
        rc = CUDA_ERROR_UNKNOWN;
        goto out;
    }
    *m = (struct local_mem){ .kind = MEM_IMPORT, .live = 1, .reg = i, .device = a->device, .refs = 1, .id = a->id, .base = (CUdeviceptr)(uintptr_t)p, .size = a->size };
    slot->pid = getpid();
    slot->start = standin_my_start();
    slot->count++;
    *out = m->base;
    rc = CUDA_SUCCESS;
out:
    standin_unlock();
    return rc;
}

EXPORT CUresult cuIpcCloseMemHandle(CUdeviceptr p)
{
    CUresult rc = need_ctx("cuIpcCloseMemHandle");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    struct local_mem *m = find_mem_any(p, 1);
    if (!m || m->kind != MEM_IMPORT || m->base != p) {
        struct local_mem *dead = find_mem_any(p, 0);
        standin_violation("cuIpcCloseMemHandle", "0x%llx is not the base of an open IPC mapping%s", (unsigned long long)p,
                          dead && !m ? " (it was closed already)" : "");
        standin_unlock();
        return CUDA_ERROR_INVALID_VALUE;
    }
    struct standin_alloc *a = &standin_reg()->allocs[m->reg];
    for (int k = 0; k < STANDIN_MAX_IMPORTERS; k++) {
        struct standin_importer *im = &a->importers[k];
        if (im->count > 0 && im->pid == getpid() && im->start == standin_my_start()) {
            im->count--;
            break;
        }
    }
    if (--m->refs == 0) {
        entomb(m);
    }
    standin_sweep_locked();
    standin_unlock();
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------ events */

static struct standin_event *new_event(int device, unsigned flags, int imported, int reg, uint64_t id)
{
    if (g_nevents == MAX_LOCAL_EVENTS) {
        return NULL;
    }
    struct standin_event *e = calloc(1, sizeof *e); /* never freed: a destroyed event stays recognisable */
    if (!e) {
        return NULL;
    }
    *e = (struct standin_event){ .magic = EVENT_MAGIC, .device = device, .imported = imported, .reg = reg, .flags = flags, .id = id };
    g_events[g_nevents++] = e;
    return e;
}

EXPORT CUresult cuEventCreate(CUevent *ev, unsigned flags)
{
    CUresult rc = need_ctx("cuEventCreate");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!ev || (flags & ~(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS)) != 0) {
        standin_violation("cuEventCreate", "flags 0x%x are not CU_EVENT_* flags (or a null pointer)", flags);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if ((flags & CU_EVENT_INTERPROCESS) && !(flags & CU_EVENT_DISABLE_TIMING)) {
        standin_violation("cuEventCreate", "CU_EVENT_INTERPROCESS needs CU_EVENT_DISABLE_TIMING too");
        return CUDA_ERROR_INVALID_VALUE;
    }
    standin_lock();
    struct standin_registry *r = standin_reg();
    uint64_t id = r->next_id++;
    int reg = -1;
    rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (flags & CU_EVENT_INTERPROCESS) {
        standin_sweep_locked();
        for (int i = 0; i < STANDIN_MAX_EVENTS; i++) {
            if (r->events[i].state == REC_FREE || r->events[i].state == REC_GONE) {
                reg = i;
                break;
            }
        }
        if (reg < 0) {
            goto out;
        }
    }
    struct standin_event *e = new_event(current_device(), flags, 0, reg, id);
    if (!e) {
        goto out;
    }
    if (reg >= 0) {
        struct standin_event_rec *er = &r->events[reg];
        memset(er, 0, sizeof *er);
        er->id = id;
        er->flags = flags;
        er->device = e->device;
        er->owner_pid = getpid();
        er->owner_start = standin_my_start();
        fill_handle(er->handle, EVENT_HANDLE_MAGIC, id);
        er->state = REC_LIVE;
    }
    *ev = e;
    rc = CUDA_SUCCESS;
out:
    standin_unlock();
    return rc;
}

EXPORT CUresult cuEventDestroy_v2(CUevent ev)
{
    CUresult rc = need_ctx("cuEventDestroy_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    struct standin_event *e = find_event("cuEventDestroy_v2", ev);
    if (!e) {
        rc = CUDA_ERROR_INVALID_HANDLE;
    } else if (e->destroyed) {
        standin_violation("cuEventDestroy_v2", "event %llu was destroyed already (a double destroy)", (unsigned long long)e->id);
        rc = CUDA_ERROR_INVALID_HANDLE;
    } else {
        e->destroyed = 1;
        if (!e->imported && e->reg >= 0) {
            standin_reg()->events[e->reg].state = REC_FREED;
        }
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuIpcGetEventHandle(CUipcEventHandle *h, CUevent ev)
{
    CUresult rc = need_ctx("cuIpcGetEventHandle");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    struct standin_event *e = NULL;
    rc = usable_event("cuIpcGetEventHandle", ev, &e);
    if (rc == CUDA_SUCCESS) {
        if (!h || e->imported || e->reg < 0) {
            standin_violation("cuIpcGetEventHandle", "event %llu was not created here with CU_EVENT_INTERPROCESS (or a null pointer)", (unsigned long long)e->id);
            rc = CUDA_ERROR_INVALID_VALUE;
        } else {
            memcpy(h->reserved, standin_reg()->events[e->reg].handle, 64);
        }
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuIpcOpenEventHandle(CUevent *ev, CUipcEventHandle h)
{
    CUresult rc = need_ctx("cuIpcOpenEventHandle");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!ev) {
        standin_violation("cuIpcOpenEventHandle", "null pointer");
        return CUDA_ERROR_INVALID_VALUE;
    }
    standin_lock();
    standin_sweep_locked();
    int i = find_by_handle("cuIpcOpenEventHandle", (const unsigned char *)h.reserved, EVENT_HANDLE_MAGIC, 1, &rc);
    if (i >= 0) {
        struct standin_event_rec *er = &standin_reg()->events[i];
        if (er->owner_pid == getpid() && er->owner_start == standin_my_start()) {
            standin_violation("cuIpcOpenEventHandle", "event %llu was created by this process: use it, do not open its handle", (unsigned long long)er->id);
            rc = CUDA_ERROR_INVALID_CONTEXT;
        } else if (er->state != REC_LIVE) {
            if (er->state == REC_FREED && standin_alive(er->owner_pid, er->owner_start)) {
                standin_violation("cuIpcOpenEventHandle", "event %llu was destroyed by its exporter (pid %d): its handle is stale", (unsigned long long)er->id, er->owner_pid);
            }
            rc = CUDA_ERROR_INVALID_HANDLE;
        } else {
            struct standin_event *e = new_event(current_device(), er->flags, 1, i, er->id);
            if (e) {
                *ev = e;
                rc = CUDA_SUCCESS;
            } else {
                rc = CUDA_ERROR_OUT_OF_MEMORY;
            }
        }
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuEventRecord(CUevent ev, CUstream stream)
{
    CUresult rc = need_ctx("cuEventRecord");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    int s = stream_index("cuEventRecord", stream);
    if (s < 0) {
        return CUDA_ERROR_INVALID_HANDLE;
    }
    standin_lock();
    struct standin_event *e = NULL;
    rc = usable_event("cuEventRecord", ev, &e);
    if (rc == CUDA_SUCCESS) {
        struct standin_point *p = event_point(e);
        p->pid = getpid();
        p->start = standin_my_start();
        p->stream = s;
        p->seq = ++g_seq[s];
    }
    standin_unlock();
    return rc;
}

static CUresult wait_event(const char *fn, int s, CUevent ev)
{
    standin_lock();
    struct standin_event *e = NULL;
    CUresult rc = usable_event(fn, ev, &e);
    if (rc == CUDA_SUCCESS) {
        struct standin_point p = *event_point(e);
        if (p.pid != 0) {
            add_cover(s, &p);
        }
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuStreamWaitEvent(CUstream stream, CUevent ev, unsigned flags)
{
    CUresult rc = need_ctx("cuStreamWaitEvent");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (flags != 0) {
        standin_violation("cuStreamWaitEvent", "flags must be 0 (got 0x%x)", flags);
        return CUDA_ERROR_INVALID_VALUE;
    }
    int s = stream_index("cuStreamWaitEvent", stream);
    return s < 0 ? CUDA_ERROR_INVALID_HANDLE : wait_event("cuStreamWaitEvent", s, ev);
}

EXPORT CUresult cuEventSynchronize(CUevent ev)
{
    CUresult rc = need_ctx("cuEventSynchronize");
    return rc != CUDA_SUCCESS ? rc : wait_event("cuEventSynchronize", STANDIN_HOST_STREAM, ev);
}

/* ------------------------------------------------------------------ copies (legacy stream, done at once) */

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
    CUresult rc = need_ctx("cuMemcpyHtoD_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    rc = access_range("cuMemcpyHtoD_v2", dst, n, 0, 1, "destination");
    if (rc == CUDA_SUCCESS && n) {
        memcpy((void *)(uintptr_t)dst, src, n);
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    CUresult rc = need_ctx("cuMemcpyDtoH_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    rc = access_range("cuMemcpyDtoH_v2", src, n, 0, 0, "source");
    if (rc == CUDA_SUCCESS && n) {
        memcpy(dst, (const void *)(uintptr_t)src, n);
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    CUresult rc = need_ctx("cuMemcpyDtoD_v2");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    rc = access_range("cuMemcpyDtoD_v2", src, n, 0, 0, "source");
    if (rc == CUDA_SUCCESS) {
        rc = access_range("cuMemcpyDtoD_v2", dst, n, 0, 1, "destination");
    }
    if (rc == CUDA_SUCCESS && n) {
        memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemcpyPeer(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n)
{
    CUresult rc = need_ctx("cuMemcpyPeer");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!valid_ctx(dctx) || !valid_ctx(sctx)) {
        standin_violation("cuMemcpyPeer", "a context is not a retained primary context");
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    standin_lock();
    rc = access_range("cuMemcpyPeer", src, n, 0, 0, "source");
    if (rc == CUDA_SUCCESS) {
        rc = access_range("cuMemcpyPeer", dst, n, 0, 1, "destination");
    }
    if (rc == CUDA_SUCCESS && n) {
        memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
    }
    standin_unlock();
    return rc;
}

/* ------------------------------------------------------------------ errors */

static const char *error_name(CUresult rc)
{
    switch (rc) {
    case CUDA_SUCCESS: return "CUDA_SUCCESS";
    case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case CUDA_ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case CUDA_ERROR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    case CUDA_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case CUDA_ERROR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case CUDA_ERROR_ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case CUDA_ERROR_NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
    case CUDA_ERROR_UNKNOWN: return "CUDA_ERROR_UNKNOWN";
    default: return NULL;
    }
}

EXPORT CUresult cuGetErrorName(CUresult rc, const char **out)
{
    const char *n = error_name(rc);
    if (!out || !n) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *out = n;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult rc, const char **out)
{
    if (!out || !error_name(rc)) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    *out = rc == CUDA_SUCCESS ? "no error" : "reported by xmem's stand-in driver (a contract checker, not a GPU)";
    return CUDA_SUCCESS;
}
