/* The virtual memory management (VMM) entry points of the stand-in libcuda.so.1 — A CONTRACT CHECKER, NOT A GPU
 * (see standin.h).
 *
 * cuMemCreate, cuMemRelease, cuMemExportToShareableHandle, cuMemImportFromShareableHandle, cuMemAddressReserve,
 * cuMemAddressFree, cuMemMap, cuMemUnmap, cuMemSetAccess, cuMemGetAllocationGranularity and cuDeviceGetAttribute,
 * with cuda.h's signatures. An allocation is a memfd: its first `size` bytes are the device memory, one page after
 * them a trailer (magic, id, device, handle types, size, and the allocation's last write in stream order, so the
 * cross-process ordering rule of api.c holds for VMM memory too). The POSIX file descriptor that
 * cuMemExportToShareableHandle gives is a real descriptor of that memfd, so passing it over a Unix socket with
 * SCM_RIGHTS is real, and the kernel keeps the memory while any descriptor or mapping of it exists — as the driver
 * keeps a VMM allocation while any process holds a handle to it or maps it. That is what lets memory outlive its
 * exporter here, and nothing else is simulated.
 *
 * Rules enforced (each breach is one violation line): sizes, offsets and addresses aligned to the granularity (2 MiB
 * for both MINIMUM and RECOMMENDED); a map only into a range reserved with cuMemAddressReserve, never over another
 * mapping, within the allocation; cuMemSetAccess before any copy touches the range (a write needs READWRITE); no use
 * of a handle after cuMemRelease (a release while mapped is fine: the memory stays until the last unmap); no use of
 * VA after cuMemUnmap; cuMemAddressFree only of a whole reservation with nothing mapped in it; export only as a
 * handle type the allocation was created with (requestedHandleTypes), and only POSIX_FILE_DESCRIPTOR on Linux;
 * property structs as documented (pinned, device location, no Win32 metadata) and flags 0.
 *
 * XMEM_CUDA_STANDIN_VMM=1 makes the devices report VMM and POSIX-fd support (attributes 102 and 103); otherwise they
 * report 0 and cuMemCreate fails with CUDA_ERROR_NOT_SUPPORTED, as on a device without VMM, so both of xmem's paths
 * stay tested. VMM allocations are not counted against XMEM_CUDA_STANDIN_DEVICE_MIB. Built with
 * -DSTANDIN_NO_VMM_SYMBOLS, none of these is exported (a driver that predates VMM). */
#define _GNU_SOURCE
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef STANDIN_NO_VMM_SYMBOLS
/* The variant of an old driver without the VMM entry points (build.sh: artifacts/cuda-standin/no-vmm/): they are not
 * exported at all, so xmem must find them missing and keep to cuMemAlloc + IPC. */
#define EXPORT static __attribute__((unused))
#else
#define EXPORT __attribute__((visibility("default")))
#endif
#define GRANULARITY (2ull << 20)
#define TRAILER 4096ull
#define TRAILER_MAGIC 0x4d4d5644545358ull /* "XSTDVMM" */
#define MAX_HANDLES 4096
#define MAX_RANGES 4096
#define MAX_MAPS 4096
#define CU_MEM_ALLOCATION_TYPE_PINNED 0x1
#define CU_MEM_LOCATION_TYPE_DEVICE 0x1
#define CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR 0x1
#define CU_MEM_ACCESS_FLAGS_PROT_NONE 0x0
#define CU_MEM_ACCESS_FLAGS_PROT_READ 0x1
#define CU_MEM_ACCESS_FLAGS_PROT_READWRITE 0x3
#define ATTR_VMM_SUPPORTED 102
#define ATTR_POSIX_FD_SUPPORTED 103

typedef unsigned long long CUmemGenericAllocationHandle;
typedef struct { int type; int id; } CUmemLocation;
typedef struct {
    int type;
    int requestedHandleTypes;
    CUmemLocation location;
    void *win32HandleMetaData;
    struct {
        unsigned char compressionType;
        unsigned char gpuDirectRDMACapable;
        unsigned short usage;
        unsigned char reserved[4];
    } allocFlags;
} CUmemAllocationProp;
typedef struct { CUmemLocation location; int flags; } CUmemAccessDesc;

_Static_assert(sizeof(CUmemAllocationProp) == 32, "CUmemAllocationProp is 32 bytes in cuda.h");
_Static_assert(sizeof(CUmemAccessDesc) == 12, "CUmemAccessDesc is 12 bytes in cuda.h");

struct vmm_trailer {
    uint64_t magic;
    uint64_t id;
    int32_t device;
    uint32_t handle_types;
    uint64_t size;
    struct standin_point last_write;
};

struct vmm_handle {
    CUmemGenericAllocationHandle value; /* 0: unused */
    int released;
    int fd;
    int maps;
    int device;
    unsigned types;
    uint64_t id;
    uint64_t size;
    struct vmm_trailer *tr;
};

struct vmm_range {
    int used;
    CUdeviceptr base;
    uint64_t size;
};

struct vmm_map {
    int used;
    int access; /* CU_MEM_ACCESS_FLAGS_* set by cuMemSetAccess */
    int handle;  /* index into g_handles */
    CUdeviceptr va;
    uint64_t size;
};

static struct vmm_handle g_handles[MAX_HANDLES]; /* released handles stay (released = 1): a stale one is recognised */
static int g_nhandles;
static struct vmm_range g_ranges[MAX_RANGES];
static struct vmm_map g_maps[MAX_MAPS];
static CUmemGenericAllocationHandle g_next_handle = 0x5800000001ull;

int standin_vmm_enabled(void)
{
    const char *v = getenv("XMEM_CUDA_STANDIN_VMM");
    return v && strcmp(v, "1") == 0;
}

/* ------------------------------------------------------------------ lookups (with the lock held) */

static struct vmm_handle *find_handle(const char *fn, CUmemGenericAllocationHandle h, int allow_released)
{
    for (int i = 0; i < g_nhandles; i++) {
        if (g_handles[i].value == h) {
            if (g_handles[i].released && !allow_released) {
                standin_violation(fn, "allocation handle 0x%llx was released (cuMemRelease) before this use", h);
                return NULL;
            }
            return &g_handles[i];
        }
    }
    standin_violation(fn, "0x%llx is not an allocation handle of this process (cuMemCreate or cuMemImportFromShareableHandle)", h);
    return NULL;
}

static struct vmm_range *range_of(CUdeviceptr p, uint64_t n)
{
    for (int i = 0; i < MAX_RANGES; i++) {
        struct vmm_range *r = &g_ranges[i];
        if (r->used && p >= r->base && p - r->base < r->size && n <= r->size - (p - r->base)) {
            return r;
        }
    }
    return NULL;
}

static struct vmm_map *map_of(CUdeviceptr p, uint64_t n)
{
    for (int i = 0; i < MAX_MAPS; i++) {
        struct vmm_map *m = &g_maps[i];
        if (m->used && p >= m->va && p - m->va < m->size && n <= m->size - (p - m->va)) {
            return m;
        }
    }
    return NULL;
}

static int overlaps_map(CUdeviceptr p, uint64_t n)
{
    for (int i = 0; i < MAX_MAPS; i++) {
        struct vmm_map *m = &g_maps[i];
        if (m->used && p < m->va + m->size && m->va < p + n) {
            return 1;
        }
    }
    return 0;
}

static void drop_handle_if_done(struct vmm_handle *h)
{
    if (h->released && h->maps == 0 && h->fd >= 0) {
        munmap(h->tr, TRAILER);
        close(h->fd);
        h->fd = -1;
        h->tr = NULL;
    }
}

/* Maps the trailer of memfd `fd` (checked); NULL when it is not a stand-in VMM allocation. */
static struct vmm_trailer *map_trailer(int fd, uint64_t *size_out)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < GRANULARITY + TRAILER ||
        ((uint64_t)st.st_size - TRAILER) % GRANULARITY != 0) {
        return NULL;
    }
    uint64_t size = (uint64_t)st.st_size - TRAILER;
    void *p = mmap(NULL, TRAILER, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)size);
    if (p == MAP_FAILED) {
        return NULL;
    }
    struct vmm_trailer *tr = p;
    if (tr->magic != TRAILER_MAGIC || tr->size != size) {
        munmap(p, TRAILER);
        return NULL;
    }
    *size_out = size;
    return tr;
}

static struct vmm_handle *new_handle(void)
{
    if (g_nhandles == MAX_HANDLES) {
        return NULL;
    }
    struct vmm_handle *h = &g_handles[g_nhandles++];
    memset(h, 0, sizeof *h);
    h->value = g_next_handle++;
    h->fd = -1;
    return h;
}

/* The stream-order record of a VMM range a copy touches, or NULL (a violation was logged) when the range is not
 * mapped with access set. *in_vmm tells whether the address belongs to VMM at all (reserved or mapped here). */
struct standin_point *standin_vmm_access(const char *fn, CUdeviceptr p, uint64_t n, int write, const char *what, int *in_vmm)
{
    struct vmm_map *m = map_of(p, n);
    *in_vmm = 0;
    if (!m) {
        if (range_of(p, 1)) {
            *in_vmm = 1;
            standin_violation(fn, "the %s 0x%llx + %llu is reserved VA that is not mapped (used after cuMemUnmap, never mapped, or past the mapping's end)", what,
                              (unsigned long long)p, (unsigned long long)n);
        }
        return NULL;
    }
    *in_vmm = 1;
    int need = write ? CU_MEM_ACCESS_FLAGS_PROT_READWRITE : CU_MEM_ACCESS_FLAGS_PROT_READ;
    if ((m->access & need) != need) {
        standin_violation(fn, "the %s 0x%llx is mapped but its access is %d: cuMemSetAccess (READWRITE for a write) must come before any use", what,
                          (unsigned long long)p, m->access);
        return NULL;
    }
    return &g_handles[m->handle].tr->last_write;
}

/* The mapping that holds `p`, for cuMemGetAddressRange: 1 when found. */
int standin_vmm_address_range(CUdeviceptr p, CUdeviceptr *base, size_t *size)
{
    struct vmm_map *m = map_of(p, 1);
    if (!m) {
        return 0;
    }
    if (base) {
        *base = m->va;
    }
    if (size) {
        *size = m->size;
    }
    return 1;
}

/* ------------------------------------------------------------------ properties */

static CUresult check_prop(const char *fn, const CUmemAllocationProp *prop)
{
    if (!prop) {
        standin_violation(fn, "a null CUmemAllocationProp");
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (prop->type != CU_MEM_ALLOCATION_TYPE_PINNED || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        prop->location.id < 0 || prop->location.id >= standin_devices() || prop->win32HandleMetaData != NULL) {
        standin_violation(fn, "CUmemAllocationProp must be PINNED on a device location 0..%d with no Win32 metadata (type %d, location %d/%d)",
                          standin_devices() - 1, prop->type, prop->location.type, prop->location.id);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if ((prop->requestedHandleTypes & ~CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) != 0) {
        standin_violation(fn, "requestedHandleTypes 0x%x: on Linux only CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR (0x1) exists", prop->requestedHandleTypes);
        return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int *pi, int attrib, CUdevice dev)
{
    CUresult rc = standin_need_init("cuDeviceGetAttribute");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!pi || dev < 0 || dev >= standin_devices()) {
        standin_violation("cuDeviceGetAttribute", "device %d is not one of the %d devices (or a null pointer)", dev, standin_devices());
        return CUDA_ERROR_INVALID_DEVICE;
    }
    if (attrib != ATTR_VMM_SUPPORTED && attrib != ATTR_POSIX_FD_SUPPORTED) {
        standin_violation("cuDeviceGetAttribute", "attribute %d: the stand-in knows 102 (VMM supported) and 103 (POSIX fd handles supported)", attrib);
        return CUDA_ERROR_INVALID_VALUE;
    }
    *pi = standin_vmm_enabled();
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop, int option)
{
    CUresult rc = standin_need_init("cuMemGetAllocationGranularity");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if ((rc = check_prop("cuMemGetAllocationGranularity", prop)) != CUDA_SUCCESS) {
        return rc;
    }
    if (!granularity || (option != 0 && option != 1)) {
        standin_violation("cuMemGetAllocationGranularity", "option %d is not MINIMUM (0) or RECOMMENDED (1) (or a null pointer)", option);
        return CUDA_ERROR_INVALID_VALUE;
    }
    *granularity = GRANULARITY;
    return CUDA_SUCCESS;
}

/* ------------------------------------------------------------------ physical allocations */

EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop, unsigned long long flags)
{
    CUresult rc = standin_need_init("cuMemCreate");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if ((rc = check_prop("cuMemCreate", prop)) != CUDA_SUCCESS) {
        return rc;
    }
    if (!standin_vmm_enabled()) {
        return CUDA_ERROR_NOT_SUPPORTED; /* the device reports no VMM support: asking is not a breach */
    }
    if (!handle || flags != 0 || size == 0 || size % GRANULARITY != 0) {
        standin_violation("cuMemCreate", "size %zu must be a non-zero multiple of the granularity (%llu) and flags 0 (got 0x%llx), handle non-null", size,
                          GRANULARITY, flags);
        return CUDA_ERROR_INVALID_VALUE;
    }
    standin_lock();
    rc = CUDA_ERROR_OUT_OF_MEMORY;
    struct vmm_handle *h = new_handle();
    int fd = h ? memfd_create("xmem-standin-vmm", MFD_CLOEXEC) : -1;
    if (fd < 0) {
        if (h) {
            h->value = 0;
            g_nhandles--;
        }
        goto out;
    }
    struct vmm_trailer *tr = NULL;
    uint64_t got = 0;
    if (ftruncate(fd, (off_t)(size + TRAILER)) == 0) {
        void *p = mmap(NULL, TRAILER, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)size);
        if (p != MAP_FAILED) {
            tr = p;
            tr->magic = TRAILER_MAGIC;
            tr->id = standin_reg()->next_id++;
            tr->device = prop->location.id;
            tr->handle_types = (uint32_t)prop->requestedHandleTypes;
            tr->size = size;
            got = size;
        }
    }
    if (!tr) {
        close(fd);
        h->value = 0;
        g_nhandles--;
        goto out;
    }
    h->fd = fd;
    h->tr = tr;
    h->size = got;
    h->id = tr->id;
    h->device = tr->device;
    h->types = tr->handle_types;
    *handle = h->value;
    rc = CUDA_SUCCESS;
out:
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
    CUresult rc = standin_need_init("cuMemRelease");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    struct vmm_handle *h = find_handle("cuMemRelease", handle, 0);
    if (!h) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        h->released = 1; /* a release while mapped is allowed: the memory stays until the last unmap */
        drop_handle_if_done(h);
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle, int handleType, unsigned long long flags)
{
    CUresult rc = standin_need_init("cuMemExportToShareableHandle");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!shareableHandle || handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR || flags != 0) {
        standin_violation("cuMemExportToShareableHandle", "handle type %d (only POSIX_FILE_DESCRIPTOR, 1, on Linux), flags 0x%llx (must be 0), or a null pointer",
                          handleType, flags);
        return CUDA_ERROR_INVALID_VALUE;
    }
    standin_lock();
    struct vmm_handle *h = find_handle("cuMemExportToShareableHandle", handle, 0);
    if (!h) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (!(h->types & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)) {
        standin_violation("cuMemExportToShareableHandle", "allocation %llu was created without CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR in requestedHandleTypes",
                          (unsigned long long)h->id);
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        int fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            *(int *)shareableHandle = fd;
        }
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *osHandle, int shHandleType)
{
    CUresult rc = standin_need_init("cuMemImportFromShareableHandle");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!handle || shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) {
        standin_violation("cuMemImportFromShareableHandle", "handle type %d (only POSIX_FILE_DESCRIPTOR, 1, on Linux), or a null pointer", shHandleType);
        return CUDA_ERROR_INVALID_VALUE;
    }
    int fd = (int)(intptr_t)osHandle; /* a POSIX fd is passed as the pointer's value, as cuda.h documents */
    standin_lock();
    uint64_t size = 0;
    struct vmm_trailer *tr = fd >= 0 ? map_trailer(fd, &size) : NULL;
    struct vmm_handle *h = tr ? new_handle() : NULL;
    int own = h ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1; /* the driver keeps its own reference: the caller closes fd */
    if (own < 0) {
        if (tr) {
            munmap(tr, TRAILER);
        }
        if (h) {
            h->value = 0;
            g_nhandles--;
        }
        standin_violation("cuMemImportFromShareableHandle", "descriptor %d is not one that cuMemExportToShareableHandle gave", fd);
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        h->fd = own;
        h->tr = tr;
        h->size = size;
        h->id = tr->id;
        h->device = tr->device;
        h->types = tr->handle_types;
        *handle = h->value;
    }
    standin_unlock();
    return rc;
}

/* ------------------------------------------------------------------ virtual address ranges and mappings */

EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr, unsigned long long flags)
{
    CUresult rc = standin_need_init("cuMemAddressReserve");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    (void)addr; /* a hint only */
    if (!ptr || flags != 0 || size == 0 || size % GRANULARITY != 0 || (alignment & (alignment - 1)) != 0) {
        standin_violation("cuMemAddressReserve", "size %zu must be a non-zero multiple of the granularity, alignment %zu 0 or a power of two, flags 0 (got 0x%llx)",
                          size, alignment, flags);
        return CUDA_ERROR_INVALID_VALUE;
    }
    uint64_t align = alignment > GRANULARITY ? alignment : GRANULARITY;
    standin_lock();
    rc = CUDA_ERROR_OUT_OF_MEMORY;
    struct vmm_range *r = NULL;
    for (int i = 0; i < MAX_RANGES && !r; i++) {
        if (!g_ranges[i].used) {
            r = &g_ranges[i];
        }
    }
    if (r) {
        void *p = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            uintptr_t base = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
            if (base > (uintptr_t)p) {
                munmap(p, base - (uintptr_t)p);
            }
            uintptr_t end = (uintptr_t)p + size + align;
            if (end > base + size) {
                munmap((void *)(base + size), end - (base + size));
            }
            *r = (struct vmm_range){ .used = 1, .base = base, .size = size };
            *ptr = base;
            rc = CUDA_SUCCESS;
        }
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    CUresult rc = standin_need_init("cuMemAddressFree");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    struct vmm_range *r = range_of(ptr, size);
    if (!r || r->base != ptr || r->size != size) {
        standin_violation("cuMemAddressFree", "0x%llx + %zu is not a whole range from cuMemAddressReserve", (unsigned long long)ptr, size);
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (overlaps_map(ptr, size)) {
        standin_violation("cuMemAddressFree", "0x%llx + %zu is still mapped: cuMemUnmap first", (unsigned long long)ptr, size);
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        munmap((void *)(uintptr_t)ptr, size);
        r->used = 0;
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle, unsigned long long flags)
{
    CUresult rc = standin_need_init("cuMemMap");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (flags != 0 || size == 0 || size % GRANULARITY != 0 || offset % GRANULARITY != 0 || ptr % GRANULARITY != 0) {
        standin_violation("cuMemMap", "address 0x%llx, size %zu and offset %zu must be multiples of the granularity (size non-zero), flags 0 (got 0x%llx)",
                          (unsigned long long)ptr, size, offset, flags);
        return CUDA_ERROR_INVALID_VALUE;
    }
    standin_lock();
    struct vmm_handle *h = find_handle("cuMemMap", handle, 0);
    struct vmm_map *m = NULL;
    if (!h) {
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (!range_of(ptr, size)) {
        standin_violation("cuMemMap", "0x%llx + %zu is not inside one range reserved with cuMemAddressReserve", (unsigned long long)ptr, size);
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (overlaps_map(ptr, size)) {
        standin_violation("cuMemMap", "0x%llx + %zu overlaps a range already mapped", (unsigned long long)ptr, size);
        rc = CUDA_ERROR_INVALID_VALUE;
    } else if (offset > h->size || size > h->size - offset) {
        standin_violation("cuMemMap", "offset %zu + size %zu reach past allocation %llu's %llu bytes", offset, size, (unsigned long long)h->id,
                          (unsigned long long)h->size);
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        for (int i = 0; i < MAX_MAPS && !m; i++) {
            if (!g_maps[i].used) {
                m = &g_maps[i];
            }
        }
        /* No access until cuMemSetAccess: the host pages stay PROT_NONE too. */
        void *p = m ? mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, h->fd, (off_t)offset) : MAP_FAILED;
        if (p == MAP_FAILED) {
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            *m = (struct vmm_map){ .used = 1, .access = CU_MEM_ACCESS_FLAGS_PROT_NONE, .handle = (int)(h - g_handles), .va = ptr, .size = size };
            h->maps++;
        }
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    CUresult rc = standin_need_init("cuMemUnmap");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    standin_lock();
    int whole = size > 0;
    int found = 0;
    for (int i = 0; i < MAX_MAPS; i++) {
        struct vmm_map *m = &g_maps[i];
        if (m->used && ptr < m->va + m->size && m->va < ptr + size) {
            found = 1;
            if (m->va < ptr || m->va + m->size > ptr + size) {
                whole = 0;
            }
        }
    }
    if (!found || !whole) {
        standin_violation("cuMemUnmap", "0x%llx + %zu %s", (unsigned long long)ptr, size,
                          found ? "cuts a mapping in part (unmap whole mappings)" : "is not mapped (a double unmap, or never mapped)");
        rc = CUDA_ERROR_INVALID_VALUE;
    } else {
        for (int i = 0; i < MAX_MAPS; i++) {
            struct vmm_map *m = &g_maps[i];
            if (m->used && m->va >= ptr && m->va + m->size <= ptr + size) {
                /* Back to reserved, inaccessible VA: a later use faults on the host and is recognised here. */
                void *p = mmap((void *)(uintptr_t)m->va, m->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
                (void)p;
                m->used = 0;
                struct vmm_handle *h = &g_handles[m->handle];
                h->maps--;
                drop_handle_if_done(h);
            }
        }
    }
    standin_unlock();
    return rc;
}

EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    CUresult rc = standin_need_init("cuMemSetAccess");
    if (rc != CUDA_SUCCESS) {
        return rc;
    }
    if (!desc || count == 0) {
        standin_violation("cuMemSetAccess", "no access descriptors");
        return CUDA_ERROR_INVALID_VALUE;
    }
    int flags = 0;
    for (size_t k = 0; k < count; k++) {
        const CUmemAccessDesc *d = &desc[k];
        if (d->location.type != CU_MEM_LOCATION_TYPE_DEVICE || d->location.id < 0 || d->location.id >= standin_devices() ||
            (d->flags != CU_MEM_ACCESS_FLAGS_PROT_NONE && d->flags != CU_MEM_ACCESS_FLAGS_PROT_READ && d->flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)) {
            standin_violation("cuMemSetAccess", "descriptor %zu: location %d/%d is not a device 0..%d, or flags %d are not NONE, READ or READWRITE", k,
                              d->location.type, d->location.id, standin_devices() - 1, d->flags);
            return CUDA_ERROR_INVALID_VALUE;
        }
        flags |= d->flags;
    }
    standin_lock();
    /* Every byte of the range must be mapped: walk it mapping by mapping. */
    CUdeviceptr at = ptr;
    while (size > 0 && at < ptr + size) {
        struct vmm_map *m = map_of(at, 1);
        if (!m) {
            standin_violation("cuMemSetAccess", "0x%llx (in 0x%llx + %zu) is not mapped (cuMemMap first)", (unsigned long long)at, (unsigned long long)ptr, size);
            rc = CUDA_ERROR_INVALID_VALUE;
            break;
        }
        at = m->va + m->size;
    }
    if (rc == CUDA_SUCCESS) {
        int prot = flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ? PROT_READ | PROT_WRITE : flags ? PROT_READ : PROT_NONE;
        for (int i = 0; i < MAX_MAPS; i++) {
            struct vmm_map *m = &g_maps[i];
            if (m->used && m->va >= ptr && m->va + m->size <= ptr + size) {
                mprotect((void *)(uintptr_t)m->va, m->size, prot);
                m->access = flags;
            }
        }
    }
    standin_unlock();
    return rc;
}
