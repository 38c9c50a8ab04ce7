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
 *     has its destroy (xmem_pool_create/open ↔ xmem_pool_close; every function that gives a guard (acquire, get,
 *     copy, receive) ↔ xmem_guard_release, xmem_guard_forget or xmem_channel_send; xmem_guard_lease_view ↔
 *     xmem_lease_release; xmem_pool_channel ↔ xmem_channel_close; xmem_channel_subscribe ↔ xmem_subscription_close).
 *     A handle destroyed twice, stale, or of the wrong kind gives XMEM_E_INVALID_HANDLE, never a crash.
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
typedef uint64_t xmem_channel;       /* an open channel of a pool */
typedef uint64_t xmem_subscription;  /* one subscriber of a fan-out channel */

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

/* Removes a pool and its segments by name. *out_removed: 1 when there was one, 0 when not (not an error).
   XMEM_E_PERMISSION_DENIED when segments made by other users could not be unlinked (a sticky /dev/shm lets only
   their owner or root): the pool is removed all the same, and the message names them. */
xmem_status xmem_pool_remove(const char *name, int32_t *out_removed);

/* *out_exists: 1 when a pool of this name exists. */
xmem_status xmem_pool_exists(const char *name, int32_t *out_exists);

/* Copies the pool's name as given to xmem_pool_create/open ("/cam0" stays "/cam0"; NUL-terminated) into buf when it
   fits; *out_length is the name's length without the NUL. XMEM_E_INVALID_ARGUMENT when buf_size is too small (out_length still written). */
xmem_status xmem_pool_name(xmem_pool pool, char *buf, size_t buf_size, size_t *out_length);

xmem_status xmem_pool_capacity(xmem_pool pool, int32_t *out_capacity);

/* A read-write buffer of `size` bytes (count 1, held by the new guard). XMEM_E_POOL_FULL at once when every slot is
   live. out_info may be NULL. */
xmem_status xmem_pool_acquire_cpu(xmem_pool pool, int64_t size, xmem_guard *out_guard, xmem_buffer_info *out_info);

/* Like xmem_pool_acquire_cpu, but waits up to timeout_ns (-1: forever) for a slot to be released by any process,
   sleeping in the kernel. XMEM_E_TIMEOUT when none came in time. */
xmem_status xmem_pool_acquire_cpu_wait(xmem_pool pool, int64_t size, int64_t timeout_ns, xmem_guard *out_guard,
                                       xmem_buffer_info *out_info);

/* A read-write buffer of `size` bytes in the device memory of CUDA device `device_id` (count 1, held by the new
   guard); out_info has cuda_ptr, device_id and XMEM_BUFFER_CUDA, and cpu_ptr NULL. Allocations are rounded up to
   2 MiB and kept per slot for reuse (docs/cuda.md). XMEM_E_CUDA_UNAVAILABLE (with the reason: no driver, no device,
   device_id out of range) when CUDA cannot be used here; XMEM_E_OUT_OF_MEMORY when the device is full. */
xmem_status xmem_pool_acquire_cuda(xmem_pool pool, int64_t size, int32_t device_id, xmem_guard *out_guard,
                                   xmem_buffer_info *out_info);

/* Acquires `count` buffers and leaves each live with count 1 held by no process (in flight); writes their meta
   indexes to out_indexes[0..count-1]. All or nothing. */
xmem_status xmem_pool_preallocate_cpu(xmem_pool pool, int64_t size, int32_t count, int32_t *out_indexes);

/* Like xmem_pool_preallocate_cpu, in the device memory of CUDA device `device_id`. */
xmem_status xmem_pool_preallocate_cuda(xmem_pool pool, int64_t size, int32_t count, int32_t device_id,
                                       int32_t *out_indexes);

/* on != 0 (the default): xmem_pool_get/get_mut of a CUDA buffer make the legacy default stream wait (on the device)
   for the writes last recorded on the buffer (xmem_guard_record_writes_done, or the release of a read-write guard).
   on == 0: ordering is left to the caller (xmem_guard_wait_writes_done / xmem_guard_synchronize_writes). For this
   pool handle only. */
xmem_status xmem_pool_set_cuda_get_waits(xmem_pool pool, int32_t on);
xmem_status xmem_pool_cuda_get_waits(xmem_pool pool, int32_t *out_on);

/* A read-only (get) or read-write (get_mut) guard on a live slot; the slot's count goes up by one. For a CUDA buffer
   another process exported, the first get of each allocation opens its IPC handle (docs/cuda.md). */
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

/* The buffer's address; the _mut form fails with XMEM_E_READ_ONLY on a guard from xmem_pool_get.
   XMEM_E_INVALID_ARGUMENT for a CUDA buffer (it has no CPU address). */
xmem_status xmem_guard_cpu_ptr(xmem_guard guard, void **out_ptr);
xmem_status xmem_guard_cpu_ptr_mut(xmem_guard guard, void **out_ptr);


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
   closed already; XMEM_E_INVALID_ARGUMENT for a CUDA buffer (no CPU mapping: export it with DLPack instead). */
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

/* Exports the guard's memory as a DLPack managed tensor: on kDLCPU (device 0) for a CPU buffer, holding its own view
   lease; on kDLCUDA (the buffer's device) for a CUDA buffer, holding its own reference to the buffer (a guard of the
   same access, released by the deleter), because device memory let go may be freed or unmapped. *out_managed is a
   DLManagedTensorVersioned* (flags XMEM_DLPACK_VERSIONED) or a DLManagedTensor*; its deleter (call it exactly once)
   frees it and drops the lease or reference. Stream ordering of CUDA tensors is the caller's: call
   xmem_guard_wait_writes_done on the consumer's stream first. */
xmem_status xmem_guard_export_dlpack(xmem_guard guard, const xmem_dlpack_request *request, void **out_managed);

/* For Python bindings. xmem_dlpack_init_python gives xmem the addresses of PyCapsule_IsValid and
   PyCapsule_GetPointer; xmem_dlpack_capsule_destructor is then a PyCapsule destructor that calls the deleter of a
   capsule never consumed (still named "dltensor" or "dltensor_versioned"). It must run with the GIL held, as capsule
   destructors do. xmem_dlpack_capsule_name gives static NUL-terminated capsule names that outlive every capsule. */
xmem_status xmem_dlpack_init_python(void *py_capsule_is_valid, void *py_capsule_get_pointer);
void xmem_dlpack_capsule_destructor(void *capsule);
const char *xmem_dlpack_capsule_name(int32_t versioned);

/* ------------------------------------------------------------------------------------------------ CUDA */

/* Every function of this section returns XMEM_E_CUDA_UNAVAILABLE, with the reason, when CUDA cannot be used in this
   process (no libcuda.so.1, no device, a stub library), whatever the guard. With CUDA usable, asking a CPU buffer for
   CUDA state (pointer, events) is XMEM_E_INVALID_ARGUMENT. Streams are CUstream values: 0 is the default stream,
   1 (CU_STREAM_LEGACY) the legacy default stream, 2 (CU_STREAM_PER_THREAD) the per-thread one. */

/* The device pointer of a CUDA buffer, valid in this process's primary context of its device while the guard lives.
   The _mut form fails with XMEM_E_READ_ONLY on a guard from xmem_pool_get. */
xmem_status xmem_guard_cuda_ptr(xmem_guard guard, uint64_t *out_ptr);
xmem_status xmem_guard_cuda_ptr_mut(xmem_guard guard, uint64_t *out_ptr);

/* Records the buffer's interprocess event on `stream` after the writes queued there so far (read-write guards only:
   XMEM_E_READ_ONLY otherwise). Releasing a read-write CUDA guard records it on the legacy default stream by itself;
   call this when the writes run on another stream. */
xmem_status xmem_guard_record_writes_done(xmem_guard guard, uint64_t stream);

/* Makes later work on `stream` wait, on the device, for the writes last recorded on the buffer's event. */
xmem_status xmem_guard_wait_writes_done(xmem_guard guard, uint64_t stream);

/* Blocks the calling thread until the writes last recorded on the buffer's event are complete. */
xmem_status xmem_guard_synchronize_writes(xmem_guard guard);

/* Copies the buffer into a new buffer of the same pool and returns its read-write guard (count 1): on CUDA device
   `device_id` (copy_to_cuda), in CPU memory (copy_to_cpu), or either (copy_to_device: device_id -1 = CPU memory).
   The copy waits for the source's recorded writes; the new buffer's writes are recorded when it completes (a copy
   to CPU memory is complete on return). A CPU-to-CPU copy needs no CUDA. */
xmem_status xmem_guard_copy_to_cuda(xmem_guard guard, int32_t device_id, xmem_guard *out_guard, xmem_buffer_info *out_info);
xmem_status xmem_guard_copy_to_cpu(xmem_guard guard, xmem_guard *out_guard, xmem_buffer_info *out_info);
xmem_status xmem_guard_copy_to_device(xmem_guard guard, int32_t device_id, xmem_guard *out_guard,
                                      xmem_buffer_info *out_info);

/* ------------------------------------------------------------------------------------------------ descriptions */

/* Element types (the numbers stored in shared memory, the same in every language). */
#define XMEM_DTYPE_NONE      0  /* no tensor description */
#define XMEM_DTYPE_UINT8     1
#define XMEM_DTYPE_INT8      2
#define XMEM_DTYPE_UINT16    3
#define XMEM_DTYPE_INT16     4
#define XMEM_DTYPE_INT32     5
#define XMEM_DTYPE_INT64     6
#define XMEM_DTYPE_FLOAT16   7
#define XMEM_DTYPE_BFLOAT16  8
#define XMEM_DTYPE_FLOAT32   9
#define XMEM_DTYPE_FLOAT64  10
#define XMEM_DTYPE_BOOL     11  /* one byte, 0 false */

#define XMEM_DESC_CONTIGUOUS    0x1u  /* set: ignore strides, the tensor is C-contiguous; get: the strides are */
#define XMEM_DESC_TIMESTAMP_NOW 0x2u  /* set: ignore timestamp_ns, use CLOCK_MONOTONIC now */
#define XMEM_DESC_PRESENT       0x4u  /* get: the buffer has a description (else every field is 0) */

/* What a buffer says about itself, for every process that holds it. */
typedef struct xmem_description {
    int32_t dtype;             /* XMEM_DTYPE_*; 0: no tensor (then ndim is 0) */
    int32_t ndim;              /* 0..8 */
    uint32_t flags;            /* XMEM_DESC_* */
    uint32_t reserved;         /* 0 */
    int64_t shape[8];          /* elements per dimension, outermost first; shape[ndim..] are 0 */
    int64_t strides[8];        /* BYTES between elements of each dimension: non-negative multiples of the element size */
    uint64_t seq;              /* the producer's sequence number */
    int64_t timestamp_ns;      /* CLOCK_MONOTONIC, comparable across processes of one machine */
    char content_type[32];     /* UTF-8, NUL-terminated, at most 31 bytes, e.g. "image/rgb8"; "" when unset */
    char producer_tag[32];     /* UTF-8, NUL-terminated, at most 31 bytes, e.g. "cam0"; "" when unset */
} xmem_description;            /* 224 bytes */

/* Describes the buffer (read-write guards only: XMEM_E_READ_ONLY otherwise), replacing any earlier description.
   XMEM_E_INVALID_ARGUMENT, and nothing written, when the tensor reaches past the buffer, a dtype, ndim, stride or flag
   is invalid, or a tag is not NUL-terminated UTF-8 of at most 31 bytes. */
xmem_status xmem_guard_set_description(xmem_guard guard, const xmem_description *description);

/* The buffer's description, validated against its size (a torn or corrupt one reads as absent, never as an
   out-of-bounds tensor). Without one, *out_description is all zeros (flags without XMEM_DESC_PRESENT). */
xmem_status xmem_guard_description(xmem_guard guard, xmem_description *out_description);

/* ------------------------------------------------------------------------------------------------ channels */

#define XMEM_CHANNEL_QUEUE  0  /* each buffer sent is received once, by one receiver */
#define XMEM_CHANNEL_FANOUT 1  /* each buffer sent goes to every current subscriber (its own reference each) */

#define XMEM_RECEIVE_WRITABLE 0x1u  /* receive a read-write guard (default: read-only) */

typedef struct xmem_channel_properties {
    int32_t depth;     /* messages the channel holds (per subscriber in fan-out mode) */
    int32_t mode;      /* XMEM_CHANNEL_* */
    int32_t count;     /* messages waiting in a queue channel (approximate; 0 in fan-out mode) */
    uint32_t reserved; /* 0 */
} xmem_channel_properties;  /* 16 bytes */

/* Opens the channel `name` (1-48 of [A-Za-z0-9._-], not starting with '.') of the pool, creating it when it does not
   exist. depth: a power of two, 1..65536; mode: XMEM_CHANNEL_*. An existing channel must be opened with its depth and
   mode. References waiting in a channel belong to it (a process that dies loses none); the channel lives as long as
   the pool. */
xmem_status xmem_pool_channel(xmem_pool pool, const char *name, int32_t depth, int32_t mode, xmem_channel *out_channel);

/* Closes this handle (the channel and what waits in it stay). Calls in flight on other threads finish first. */
xmem_status xmem_channel_close(xmem_channel channel);

xmem_status xmem_channel_info(xmem_channel channel, xmem_channel_properties *out_info);

/* Moves the guard's reference into the channel, waiting up to timeout_ns (-1: as long as it takes) while it is full.
   On success the guard handle is destroyed (spent); in fan-out mode every subscriber gets its own reference, and with
   no subscriber the buffer is released. XMEM_E_WOULD_BLOCK (timeout_ns 0) or XMEM_E_TIMEOUT when it stayed full: the
   guard is untouched and still the caller's. The guard must come from the same pool handle as the channel. */
xmem_status xmem_channel_send(xmem_channel channel, xmem_guard guard, int64_t timeout_ns);

/* Takes the next buffer out of a queue channel as a new guard that owns its reference (read-only unless flags has
   XMEM_RECEIVE_WRITABLE), waiting up to timeout_ns (-1: as long as it takes; sleeping in the kernel).
   XMEM_E_WOULD_BLOCK (timeout_ns 0) or XMEM_E_TIMEOUT when nothing came. XMEM_E_INVALID_ARGUMENT on a fan-out
   channel (receive through a subscription). */
xmem_status xmem_channel_receive(xmem_channel channel, int64_t timeout_ns, uint32_t flags, xmem_guard *out_guard,
                                 xmem_buffer_info *out_info);

/* How long a receive that finds this channel empty (and a send that finds it full) spins on its CPU, looking again
   every few hundred nanoseconds, before it sleeps in the kernel. 0, the default, sleeps at once. Spinning sees a
   message within about a microsecond instead of the tens of microseconds a kernel wake-up takes, and keeps its CPU
   busy meanwhile: for a consumer that has a CPU of its own and frames coming faster than the spin. Applies to calls
   through this handle and its subscriptions; spin_ns 0..1,000,000,000 (rounded down to 100 ns), else
   XMEM_E_INVALID_ARGUMENT. */
xmem_status xmem_channel_set_spin(xmem_channel channel, int64_t spin_ns);

/* Joins a fan-out channel: the subscription receives every buffer sent from now on (at most 16 subscribers;
   XMEM_E_TOO_MANY_PROCESSES beyond). XMEM_E_INVALID_ARGUMENT on a queue channel. */
xmem_status xmem_channel_subscribe(xmem_channel channel, xmem_subscription *out_subscription);

/* Like xmem_channel_receive, for one subscriber. */
xmem_status xmem_subscription_receive(xmem_subscription subscription, int64_t timeout_ns, uint32_t flags,
                                      xmem_guard *out_guard, xmem_buffer_info *out_info);

/* Leaves the channel, releasing the buffers still waiting for this subscriber. */
xmem_status xmem_subscription_close(xmem_subscription subscription);

#ifdef __cplusplus
}
#endif

#endif /* XMEM_H */
