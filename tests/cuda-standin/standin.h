/*
 * xmem's strict stand-in for libcuda.so.1: declarations shared by its files.
 *
 * THIS IS A CONTRACT CHECKER, NOT A GPU. It implements, on host memory, exactly the CUDA driver entry points xmem
 * binds (src/Xmem/Interop/Interop.Cuda.cs: same names, same _v2 variants, same signatures) and enforces the rules
 * the CUDA driver API documents for them. It measures nothing about hardware and proves nothing about a real driver's
 * behaviour beyond those rules; see docs/cuda.md, "The stand-in driver".
 *
 * State that several processes see (allocations, IPC handles, events, who has what open) lives in a registry file
 * in $XMEM_CUDA_STANDIN_DIR, mapped shared and changed under an flock (released by the kernel when a holder dies)
 * plus a process-local mutex (flock does not exclude the threads of one process). Device memory is a file per
 * allocation in the same directory, mapped by the exporter and by every importer, so an importer sees the
 * exporter's bytes. Every broken rule is a violation: one line appended to $XMEM_CUDA_STANDIN_LOG (stderr when
 * unset); the tests fail when that file is not empty.
 */
#ifndef XMEM_CUDA_STANDIN_H
#define XMEM_CUDA_STANDIN_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

typedef int CUresult;
typedef int CUdevice;
typedef uint64_t CUdeviceptr;
typedef struct standin_ctx *CUcontext;
typedef struct standin_event *CUevent;
typedef void *CUstream;
typedef struct { char reserved[64]; } CUipcMemHandle;
typedef struct { char reserved[64]; } CUipcEventHandle;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_UNKNOWN = 999,
};

#define STANDIN_MAX_DEVICES 8
#define STANDIN_MAX_ALLOCS 2048
#define STANDIN_MAX_EVENTS 2048
#define STANDIN_MAX_IMPORTERS 16
#define STANDIN_HOST_STREAM (-1) /* "every stream": a host wait */

/* A point in one process's stream order: the process (pid + start time), the stream, and that stream's op count. */
struct standin_point {
    int32_t pid;
    int32_t stream;
    uint64_t start;
    uint64_t seq;
};

struct standin_importer {
    int32_t pid;
    uint32_t count; /* open mappings of the allocation in that process */
    uint64_t start;
};

enum { REC_FREE = 0, REC_LIVE = 1, REC_FREED = 2 /* freed by its exporter, importers may still map it */, REC_GONE = 3 };

struct standin_alloc {
    uint32_t state;
    int32_t device;
    uint64_t id;
    uint64_t size;
    int32_t owner_pid;
    int32_t pad;
    uint64_t owner_start;
    unsigned char handle[64];
    struct standin_point last_write; /* pid 0: never written from another process's view */
    struct standin_importer importers[STANDIN_MAX_IMPORTERS];
};

struct standin_event_rec {
    uint32_t state;
    uint32_t flags;
    uint64_t id;
    int32_t owner_pid;
    int32_t device;
    uint64_t owner_start;
    unsigned char handle[64];
    struct standin_point last_record; /* pid 0: never recorded */
};

struct standin_registry {
    uint64_t magic;
    uint64_t next_id;
    uint64_t device_used[STANDIN_MAX_DEVICES];
    struct standin_alloc allocs[STANDIN_MAX_ALLOCS];
    struct standin_event_rec events[STANDIN_MAX_EVENTS];
};

/* registry.c */
int standin_registry_open(void);               /* 0 or -1 (a violation was logged) */
struct standin_registry *standin_reg(void);
void standin_lock(void);
void standin_unlock(void);
uint64_t standin_start_time(pid_t pid);        /* 0 when the process is gone (or a zombie) */
int standin_alive(int32_t pid, uint64_t start);
uint64_t standin_my_start(void);
const char *standin_dir(void);
void standin_sweep_locked(void);               /* gives back memory nobody can reach any more */

/* api.c, for vmm.c */
CUresult standin_need_init(const char *fn);     /* cuInit first, and not in a fork child */
int standin_devices(void);

/* vmm.c (the VMM entry points); with the lock held */
int standin_vmm_enabled(void);
struct standin_point *standin_vmm_access(const char *fn, CUdeviceptr p, uint64_t n, int write, const char *what, int *in_vmm);
int standin_vmm_address_range(CUdeviceptr p, CUdeviceptr *base, size_t *size);

/* log.c */
void standin_violation(const char *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
