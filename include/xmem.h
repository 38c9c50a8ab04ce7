/*
 * xmem.h — the C ABI of libxmem.so (xmem compiled with NativeAOT).
 *
 * This hand-written header is the contract. tests/c/check_abi.py fails when it, the symbols libxmem.so exports
 * (nm -D) and the C# entry points (src/Xmem.Native/Exports) disagree, and when the status numbers here differ from
 * Xmem.XmemStatus.
 *
 * Conventions
 *   - Every function returns an xmem_status: XMEM_OK (0) on success, else the cause. Results come back through
 *     out-parameters, which are written only on success. No exception, signal or abort crosses the boundary.
 *   - On failure the calling thread's last error is set: xmem_last_error() gives a UTF-8 message that says what to do,
 *     xmem_last_native_error() the errno (or CUresult) behind it. Successful calls leave it unchanged.
 *   - Handles are opaque 64-bit values (index + generation + kind), never pointers. 0 is never valid. Each create
 *     has its destroy (xmem_pool_create/open ↔ xmem_pool_close, xmem_pool_acquire_cpu/get/get_mut ↔
 *     xmem_guard_release or xmem_guard_forget, xmem_guard_lease_view ↔ xmem_lease_release). A handle destroyed twice,
 *     stale, or of the wrong kind gives XMEM_E_INVALID_HANDLE, never a crash.
 *   - Every function is safe to call from any thread. Closing a pool while other threads are inside calls on it is
 *     safe: the pool is detached when the last of those calls returns.
 *   - Memory returned by xmem (cpu pointers) stays mapped while the guard, or a lease on it, is live — even after the
 *     pool is closed.
 *   - Linux x86_64, LP64. Pool names are UTF-8: an optional '/' then 1–200 of [A-Za-z0-9._-].
 */
#ifndef XMEM_H
#define XMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of this header; xmem_abi_version() returns the library's. */
#define XMEM_ABI_VERSION 1

/* ------------------------------------------------------------------------------------------------ statuses */

/* The same numbers as Xmem.XmemStatus (C#) and xmem.Status (Python). */
typedef int32_t xmem_status;

#define XMEM_OK                      0  /* success */
#define XMEM_E_INVALID_ARGUMENT      1  /* an argument is out of range or malformed (size, count, capacity, mode) */
#define XMEM_E_INVALID_NAME          2  /* a pool name is not '/'? + 1-200 of [A-Za-z0-9._-] */
#define XMEM_E_NOT_FOUND             3  /* no pool (or segment) of that name */
#define XMEM_E_ALREADY_EXISTS        4  /* a live pool of that name exists already */
#define XMEM_E_PERMISSION_DENIED     5  /* the pool's mode does not admit this process */
#define XMEM_E_POOL_FULL             6  /* every slot is live */
#define XMEM_E_OUT_OF_MEMORY         7  /* the machine or /dev/shm cannot give the memory */
#define XMEM_E_TIMEOUT               8  /* a wait ran out of time */
#define XMEM_E_READ_ONLY             9  /* write access asked of a read-only guard */
#define XMEM_E_GUARD_INVALID        10  /* the guard was forgotten or released */
#define XMEM_E_INDEX_OUT_OF_RANGE   11  /* the meta index is outside 0..capacity-1 */
#define XMEM_E_SLOT_NOT_LIVE        12  /* the slot holds no live buffer */
#define XMEM_E_CORRUPT_SEGMENT      13  /* a shared segment breaks the layout */
#define XMEM_E_INCOMPATIBLE_VERSION 14  /* the segment was made by an incompatible xmem */
#define XMEM_E_CUDA_UNAVAILABLE     15  /* CUDA cannot be used here (or by this build) */
#define XMEM_E_CUDA_ERROR           16  /* a CUDA driver call failed; xmem_last_native_error() is the CUresult */
#define XMEM_E_CANCELED             17  /* the wait was cancelled */
#define XMEM_E_TOO_MANY_PROCESSES   18  /* the pool's process table is full */
#define XMEM_E_DISPOSED             19  /* the pool was closed */
#define XMEM_E_OS_ERROR             20  /* another OS error; xmem_last_native_error() is the errno */
#define XMEM_E_INVALID_HANDLE       21  /* a handle is null, stale (destroyed already) or of the wrong kind */
#define XMEM_E_WOULD_BLOCK          22  /* a channel is full or empty and the caller asked not to wait */
#define XMEM_E_INTERNAL             99  /* an unexpected internal failure; the message has the details */

/* ------------------------------------------------------------------------------------------------ types */

typedef uint64_t xmem_pool;   /* an attached pool */
typedef uint64_t xmem_guard;  /* one reference to one buffer, owned by this process */
typedef uint64_t xmem_lease;  /* keeps one buffer's mapping mapped (for views that outlive their guard) */

#define XMEM_BUFFER_READ_ONLY 0x1u  /* the guard came from xmem_pool_get */
#define XMEM_BUFFER_CUDA      0x2u  /* the buffer is in CUDA device memory */

/* What a guard refers to. Filled by the acquire/get functions and by xmem_guard_info. */
typedef struct xmem_buffer_info {
    int64_t size;        /* bytes */
    void *cpu_ptr;       /* first byte in this process; NULL for CUDA buffers */
    uint64_t cuda_ptr;   /* device pointer; 0 for CPU buffers */
    int32_t meta_index;  /* the slot, to hand to other processes */
    int32_t device_id;   /* CUDA device, -1 for CPU buffers */
    uint32_t flags;      /* XMEM_BUFFER_* */
    uint32_t reserved;   /* 0 */
} xmem_buffer_info;      /* 40 bytes */

/* ------------------------------------------------------------------------------------------------ errors */

/* The library's XMEM_ABI_VERSION. */
uint32_t xmem_abi_version(void);

/* The library's version, e.g. "0.1.0". Static storage. */
const char *xmem_version(void);

/* The calling thread's last error message (UTF-8, NUL-terminated; "" before any failure). Valid until the next
   failing xmem call on this thread. */
const char *xmem_last_error(void);

/* The calling thread's last status (0 before any failure). */
xmem_status xmem_last_status(void);

/* The errno (or CUresult) behind the calling thread's last failure; 0 when none. */
int32_t xmem_last_native_error(void);

/* The name of a status, e.g. "XMEM_E_POOL_FULL"; "XMEM_E_UNKNOWN" for other numbers. Static storage. */
const char *xmem_status_name(xmem_status status);

/* ------------------------------------------------------------------------------------------------ pools */

/* Creates a pool of `capacity` slots (1..1048576). mode: permission bits, 0600 (owner only) or e.g. 0660; must
   include 0600. persistent: nonzero keeps the pool after its last process detaches, until xmem_pool_remove. */
xmem_status xmem_pool_create(const char *name, int32_t capacity, uint32_t mode, int32_t persistent, xmem_pool *out_pool);

/* Attaches to an existing pool. XMEM_E_NOT_FOUND when there is none. */
xmem_status xmem_pool_open(const char *name, xmem_pool *out_pool);

/* Detaches: releases the references this process's guards still hold on the pool (as if it had died) and destroys
   the handle. Guard handles stay valid to release; memory they (or leases) point to stays mapped. */
xmem_status xmem_pool_close(xmem_pool pool);

/* Removes a pool and its segments by name. *out_removed: 1 when there was one, 0 when not (not an error). */
xmem_status xmem_pool_remove(const char *name, int32_t *out_removed);

/* *out_exists: 1 when a pool of this name exists. */
xmem_status xmem_pool_exists(const char *name, int32_t *out_exists);

/* Copies the pool's name (without leading '/', NUL-terminated) into buf when it fits; *out_length is the name's
   length without the NUL. XMEM_E_INVALID_ARGUMENT when buf_size is too small (out_length still written). */
xmem_status xmem_pool_name(xmem_pool pool, char *buf, size_t buf_size, size_t *out_length);

xmem_status xmem_pool_capacity(xmem_pool pool, int32_t *out_capacity);

/* A read-write buffer of `size` bytes (count 1, held by the new guard). XMEM_E_POOL_FULL at once when every slot is
   live. out_info may be NULL. */
xmem_status xmem_pool_acquire_cpu(xmem_pool pool, int64_t size, xmem_guard *out_guard, xmem_buffer_info *out_info);

/* Like xmem_pool_acquire_cpu, but waits up to timeout_ns (-1: forever) for a slot to be released by any process,
   sleeping in the kernel. XMEM_E_TIMEOUT when none came in time. */
xmem_status xmem_pool_acquire_cpu_wait(xmem_pool pool, int64_t size, int64_t timeout_ns, xmem_guard *out_guard,
                                       xmem_buffer_info *out_info);

/* A buffer in CUDA device memory. Not in this build: returns XMEM_E_CUDA_UNAVAILABLE. */
xmem_status xmem_pool_acquire_cuda(xmem_pool pool, int64_t size, int32_t device_id, xmem_guard *out_guard,
                                   xmem_buffer_info *out_info);

/* Acquires `count` buffers and leaves each live with count 1 held by no process (in flight); writes their meta
   indexes to out_indexes[0..count-1]. All or nothing. */
xmem_status xmem_pool_preallocate_cpu(xmem_pool pool, int64_t size, int32_t count, int32_t *out_indexes);

/* Not in this build: returns XMEM_E_CUDA_UNAVAILABLE. */
xmem_status xmem_pool_preallocate_cuda(xmem_pool pool, int64_t size, int32_t count, int32_t device_id,
                                       int32_t *out_indexes);

/* A read-only (get) or read-write (get_mut) guard on a live slot; the slot's count goes up by one. */
xmem_status xmem_pool_get(xmem_pool pool, int32_t meta_index, xmem_guard *out_guard, xmem_buffer_info *out_info);
xmem_status xmem_pool_get_mut(xmem_pool pool, int32_t meta_index, xmem_guard *out_guard, xmem_buffer_info *out_info);

/* Sets a live slot's count (0..16777215), owned by no process; 0 recycles the slot. */
xmem_status xmem_pool_set_ref_count(xmem_pool pool, int32_t meta_index, int32_t count);

/* Adds / drops one in-flight reference; *out_count is the new count. Release to 0 recycles the slot. */
xmem_status xmem_pool_add_ref(xmem_pool pool, int32_t meta_index, int32_t *out_count);
xmem_status xmem_pool_release(xmem_pool pool, int32_t meta_index, int32_t *out_count);

/* The slot's count; 0 for a slot with no live buffer. */
xmem_status xmem_pool_ref_count(xmem_pool pool, int32_t meta_index, int32_t *out_count);

/* Gives back the memory of free slots; *out_bytes is how much. */
xmem_status xmem_pool_trim(xmem_pool pool, int64_t *out_bytes);

/* ------------------------------------------------------------------------------------------------ guards */

/* What the guard refers to. */
xmem_status xmem_guard_info(xmem_guard guard, xmem_buffer_info *out_info);

/* The buffer's address; the _mut form fails with XMEM_E_READ_ONLY on a guard from xmem_pool_get. */
xmem_status xmem_guard_cpu_ptr(xmem_guard guard, void **out_ptr);
xmem_status xmem_guard_cpu_ptr_mut(xmem_guard guard, void **out_ptr);

/* The device pointer of a CUDA buffer. Not in this build: returns XMEM_E_CUDA_UNAVAILABLE. */
xmem_status xmem_guard_cuda_ptr(xmem_guard guard, uint64_t *out_ptr);
xmem_status xmem_guard_cuda_ptr_mut(xmem_guard guard, uint64_t *out_ptr);

/* Destroys the guard handle and releases its reference exactly once (the slot is recycled at count 0). */
xmem_status xmem_guard_release(xmem_guard guard);

/* Destroys the guard handle without releasing: the reference stays in the count, in flight (owned by no process),
   for another process to take over (get + release). XMEM_E_DISPOSED when the pool was closed first (the close
   released the reference). */
xmem_status xmem_guard_forget(xmem_guard guard);

/* ------------------------------------------------------------------------------------------------ view leases */

/* Takes a lease that keeps the guard's memory mapped in this process until xmem_lease_release, however the guard
   and the pool end. It keeps the mapping, not the reference: after the guard lets go the slot may be reused and the
   bytes change, but *out_ptr never dangles. out_ptr and out_size may be NULL. XMEM_E_DISPOSED when the pool was
   closed already. */
xmem_status xmem_guard_lease_view(xmem_guard guard, xmem_lease *out_lease, void **out_ptr, int64_t *out_size);

/* Drops the lease; the memory is unmapped when its last guard and lease are gone. */
xmem_status xmem_lease_release(xmem_lease lease);

/* ------------------------------------------------------------------------------------------------ DLPack */

#define XMEM_DLPACK_VERSIONED 0x1u  /* make a DLManagedTensorVersioned (DLPack 1.0), else a DLManagedTensor */
#define XMEM_DLPACK_READ_ONLY 0x2u  /* mark it read-only (always set for guards from xmem_pool_get) */

/* The tensor to describe. dtype: DLPack DLDataType (code, bits, lanes); bits a multiple of 8. shape: ndim (0..32)
   extents >= 0. strides: ndim strides in elements (>= 0), or NULL for compact row-major. The tensor must lie within
   the buffer; xmem refuses (XMEM_E_INVALID_ARGUMENT) one that does not. */
typedef struct xmem_dlpack_request {
    uint8_t dtype_code;
    uint8_t dtype_bits;
    uint16_t dtype_lanes;
    int32_t ndim;
    const int64_t *shape;
    const int64_t *strides;
    uint64_t byte_offset;
    uint32_t flags;     /* XMEM_DLPACK_* */
    uint32_t reserved;  /* 0 */
} xmem_dlpack_request;  /* 40 bytes */

/* Exports the guard's memory as a DLPack managed tensor on kDLCPU (device 0). *out_managed is a
   DLManagedTensorVersioned* (flags XMEM_DLPACK_VERSIONED) or a DLManagedTensor*; it holds its own view lease, and its
   deleter (call it exactly once) frees it and drops the lease. */
xmem_status xmem_guard_export_dlpack(xmem_guard guard, const xmem_dlpack_request *request, void **out_managed);

/* For Python bindings. xmem_dlpack_init_python gives xmem the addresses of PyCapsule_IsValid and
   PyCapsule_GetPointer; xmem_dlpack_capsule_destructor is then a PyCapsule destructor that calls the deleter of a
   capsule never consumed (still named "dltensor" or "dltensor_versioned"). It must run with the GIL held, as capsule
   destructors do. xmem_dlpack_capsule_name gives static NUL-terminated capsule names that outlive every capsule. */
xmem_status xmem_dlpack_init_python(void *py_capsule_is_valid, void *py_capsule_get_pointer);
void xmem_dlpack_capsule_destructor(void *capsule);
const char *xmem_dlpack_capsule_name(int32_t versioned);

#ifdef __cplusplus
}
#endif

#endif /* XMEM_H */
