# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, embedsignature=False
"""xmem's compiled binding: the hot paths of BufferPool, BufferGuard and channels, calling libxmem.so directly.

Loaded by :mod:`xmem._accel` unless ``XMEM_IMPLEMENTATION=ctypes``. It calls the C ABI (include/xmem.h) through
function pointers taken from the library :mod:`xmem._native` loaded (so ``XMEM_LIBRARY``, the ABI check and the
messages of a failed load stay in one place), with the GIL held for calls that never wait, and without it, in slices
of at most 100 ms with the signal handlers run between them, for calls that wait (Ctrl-C works; the common case is
one native call).

``PoolBase``, ``GuardBase`` are the bases of :class:`xmem.BufferPool` and :class:`xmem.BufferGuard`: they hold the
native handles in C fields and implement the methods named in ``POOL_METHODS``/``GUARD_METHODS``; the Python classes
keep every other method and the single copy of the docstrings (``install`` moves them onto these methods).

Invariants
  * ``GuardBase.gh`` is the guard handle while the guard owns its reference, else 0; it goes to 0 in the same
    uninterruptible step (no Python code, no signal check in between) as the handle is released, forgotten or sent,
    so a handle is given back exactly once.
  * The native calls that hand out a guard write its handle and info straight into the C fields of a guard object
    made before the call (as the ctypes implementation's pending guards, xmem._guard.PENDING): the moment the call
    returns the reference is owned by an object whose __dealloc__ releases it (no interrupt, no failed allocation can
    leave it owned by nothing). A pending guard made by the Python code (``_h = _PENDING``, then ``_out``) is
    finished by ``_h = out.guard``; until then ``__dealloc__`` releases ``_out.guard``.
  * Fork: every pool stamps the fork generation it was opened in (``PoolBase.gen``, ``_gen``), and
    ``xmem._lifecycle.fork_gen[0]`` is this process's. A guard whose pool is of an older generation was inherited through
    fork(): its reference (and any lease) is the parent's, so its release/forget/exit/dealloc never call the
    library here, and using it raises PoolClosedError naming fork. Objects the child makes itself work normally.
  * Every buffer export (``__getbuffer__``) takes its own native lease (xmem_guard_lease_view) and drops it in
    ``__releasebuffer__``: a view never outlives the mapping, whatever happens to the guard or the pool.
    ``memoryview()``, ``numpy()`` and the Python views share one ``Lease`` object per guard (cached in
    ``lease_obj``, let go with the reference): the views made from it hold it, not the guard, so a view never keeps
    a reference alive. DLPack tensors hold a lease of their own, taken by the library.
  * Nothing here trusts the description read from shared memory: the core validates it against the buffer's size,
    and the export checks the extent again before handing out a pointer.
"""

from cpython.buffer cimport PyBUF_WRITABLE, PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES, PyBUF_C_CONTIGUOUS, \
    PyBUF_F_CONTIGUOUS, PyBUF_ANY_CONTIGUOUS
from cpython.exc cimport PyErr_CheckSignals
from cpython.long cimport PyLong_CheckExact
from cpython.memoryview cimport PyMemoryView_FromObject
from cpython.pycapsule cimport PyCapsule_New, PyCapsule_Destructor
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from cpython.object cimport PyObject, PyTypeObject

cdef extern from "Python.h":
    ctypedef struct PyMethodDef:
        const char *ml_doc
    ctypedef struct PyMethodDescrObject:
        PyMethodDef *d_method
    ctypedef struct PyGetSetDef:
        const char *doc
    ctypedef struct PyGetSetDescrObject:
        PyGetSetDef *d_getset
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1

cdef extern from "time.h" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec *tp)
    int CLOCK_MONOTONIC

# ---------------------------------------------------------------------------------------------------- the C ABI

cdef extern from "xmem.h":
    ctypedef int32_t xmem_status

    ctypedef struct xmem_buffer_info:
        int64_t size
        void *cpu_ptr
        uint64_t cuda_ptr
        int32_t meta_index
        int32_t device_id
        uint32_t flags
        uint32_t reserved

    ctypedef struct xmem_description:
        int32_t dtype
        int32_t ndim
        uint32_t flags
        uint32_t reserved
        int64_t shape[8]
        int64_t strides[8]
        uint64_t seq
        int64_t timestamp_ns
        char content_type[32]
        char producer_tag[32]

    ctypedef struct xmem_dlpack_request:
        uint8_t dtype_code
        uint8_t dtype_bits
        uint16_t dtype_lanes
        int32_t ndim
        const int64_t *shape
        const int64_t *strides
        uint64_t byte_offset
        uint32_t flags
        uint32_t reserved

# The function pointers, declared in C with the prototypes of include/xmem.h (__typeof__), so that the C compiler
# checks every call below against the header; they are set from the addresses the ctypes loader resolved.
cdef extern from *:
    """
    #include "xmem.h"
    #define XMEM_PTR(fn) static __typeof__(fn) *p_##fn = NULL;
    XMEM_PTR(xmem_pool_acquire_cpu) XMEM_PTR(xmem_pool_acquire_cpu_wait) XMEM_PTR(xmem_pool_get)
    XMEM_PTR(xmem_pool_get_mut) XMEM_PTR(xmem_pool_add_ref) XMEM_PTR(xmem_pool_release) XMEM_PTR(xmem_pool_ref_count)
    XMEM_PTR(xmem_guard_release) XMEM_PTR(xmem_guard_forget) XMEM_PTR(xmem_guard_lease_view)
    XMEM_PTR(xmem_lease_release) XMEM_PTR(xmem_guard_description) XMEM_PTR(xmem_guard_info)
    XMEM_PTR(xmem_channel_send) XMEM_PTR(xmem_channel_receive) XMEM_PTR(xmem_subscription_receive)
    XMEM_PTR(xmem_guard_export_dlpack) XMEM_PTR(xmem_dlpack_capsule_destructor) XMEM_PTR(xmem_dlpack_capsule_name)
    XMEM_PTR(xmem_guard_wait_writes_done)
    #include <string.h>
    /* Sets the pointer of the function `name` to `addr`; 0 when `name` is not one of them. */
    static int xmem_bind(const char *name, uintptr_t addr) {
    #define XMEM_BIND(fn) if (strcmp(name, #fn) == 0) { p_##fn = (__typeof__(fn) *)addr; return 1; }
        XMEM_BIND(xmem_pool_acquire_cpu) XMEM_BIND(xmem_pool_acquire_cpu_wait) XMEM_BIND(xmem_pool_get)
        XMEM_BIND(xmem_pool_get_mut) XMEM_BIND(xmem_pool_add_ref) XMEM_BIND(xmem_pool_release)
        XMEM_BIND(xmem_pool_ref_count) XMEM_BIND(xmem_guard_release) XMEM_BIND(xmem_guard_forget)
        XMEM_BIND(xmem_guard_lease_view) XMEM_BIND(xmem_lease_release) XMEM_BIND(xmem_guard_description)
        XMEM_BIND(xmem_guard_info) XMEM_BIND(xmem_channel_send) XMEM_BIND(xmem_channel_receive)
        XMEM_BIND(xmem_subscription_receive) XMEM_BIND(xmem_guard_export_dlpack)
        XMEM_BIND(xmem_dlpack_capsule_destructor) XMEM_BIND(xmem_dlpack_capsule_name)
        XMEM_BIND(xmem_guard_wait_writes_done)
    #undef XMEM_BIND
        return 0;
    }
    """
    xmem_status c_pool_acquire_cpu "p_xmem_pool_acquire_cpu"(uint64_t, int64_t, uint64_t *, xmem_buffer_info *) nogil
    xmem_status c_pool_acquire_cpu_wait "p_xmem_pool_acquire_cpu_wait"(uint64_t, int64_t, int64_t, uint64_t *,
                                                                        xmem_buffer_info *) nogil
    xmem_status c_pool_get "p_xmem_pool_get"(uint64_t, int32_t, uint64_t *, xmem_buffer_info *) nogil
    xmem_status c_pool_get_mut "p_xmem_pool_get_mut"(uint64_t, int32_t, uint64_t *, xmem_buffer_info *) nogil
    xmem_status c_pool_add_ref "p_xmem_pool_add_ref"(uint64_t, int32_t, int32_t *) nogil
    xmem_status c_pool_release "p_xmem_pool_release"(uint64_t, int32_t, int32_t *) nogil
    xmem_status c_pool_ref_count "p_xmem_pool_ref_count"(uint64_t, int32_t, int32_t *) nogil
    xmem_status c_guard_release "p_xmem_guard_release"(uint64_t) nogil
    xmem_status c_guard_forget "p_xmem_guard_forget"(uint64_t) nogil
    xmem_status c_guard_lease_view "p_xmem_guard_lease_view"(uint64_t, uint64_t *, void **, int64_t *) nogil
    xmem_status c_lease_release "p_xmem_lease_release"(uint64_t) nogil
    xmem_status c_guard_description "p_xmem_guard_description"(uint64_t, xmem_description *) nogil
    xmem_status c_guard_info "p_xmem_guard_info"(uint64_t, xmem_buffer_info *) nogil
    xmem_status c_channel_send "p_xmem_channel_send"(uint64_t, uint64_t, int64_t) nogil
    xmem_status c_channel_receive "p_xmem_channel_receive"(uint64_t, int64_t, uint32_t, uint64_t *,
                                                           xmem_buffer_info *) nogil
    xmem_status c_subscription_receive "p_xmem_subscription_receive"(uint64_t, int64_t, uint32_t, uint64_t *,
                                                                     xmem_buffer_info *) nogil
    xmem_status c_guard_export_dlpack "p_xmem_guard_export_dlpack"(uint64_t, const xmem_dlpack_request *, void **)
    void c_dlpack_capsule_destructor "p_xmem_dlpack_capsule_destructor"(void *)
    const char *c_dlpack_capsule_name "p_xmem_dlpack_capsule_name"(int32_t)
    xmem_status c_guard_wait_writes_done "p_xmem_guard_wait_writes_done"(uint64_t, uint64_t) nogil
    int xmem_bind(const char *name, uintptr_t addr)

ctypedef xmem_status (*fn_receive_t)(uint64_t, int64_t, uint32_t, uint64_t *, xmem_buffer_info *) nogil

# Statuses (include/xmem.h).
DEF E_POOL_FULL = 6
DEF E_TIMEOUT = 8
DEF E_DISPOSED = 19
DEF E_INVALID_HANDLE = 21
DEF E_WOULD_BLOCK = 22
DEF BUFFER_CUDA = 0x2
DEF DESC_PRESENT = 0x4
DEF RECEIVE_WRITABLE = 0x1
DEF XMEM_DLPACK_VERSIONED = 0x1
DEF XMEM_DLPACK_READ_ONLY = 0x2
DEF CU_STREAM_LEGACY = 1
DEF I32_MAX = 0x7FFFFFFF
DEF I64_MAX = 0x7FFFFFFFFFFFFFFF
# A blocking call waits at most this long per native call: between slices the signal handlers run (Ctrl-C).
DEF SLICE_NS = 100000000

# xmem._lifecycle.fork_gen (given by install()): [the fork generation of this process]; see "Fork" above.
cdef list fork_gen = None

# Python objects of the package, given by install().
cdef object Status_ = None
cdef object GuardOut_ = None
cdef object last_error_for = None
cdef object as_int = None
cdef object guard_invalid = None  # () -> GuardInvalidError
cdef object read_only_error = None  # (meta_index) -> ReadOnlyError
cdef object invalid_argument = None  # (message) -> InvalidArgumentError
cdef object timeout_error = None  # (message) -> XmemTimeoutError
cdef object pool_closed = None  # (message) -> PoolClosedError
cdef object inherited_message = None  # (pool name) -> the message for objects inherited through fork
cdef object guard_type = None  # xmem.BufferGuard
cdef PyTypeObject *guard_tp = NULL
cdef object empty_tuple = ()
cdef list doc_bytes = []  # keeps the docstrings install() gave the descriptors alive


cdef inline int64_t now_ns() nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef int64_t deadline_of(object timeout) except -2:
    """-1 for None (no deadline), else CLOCK_MONOTONIC ns; validates like xmem._channel._deadline."""
    if timeout is None:
        return -1
    cdef double t = float(timeout)
    if not t >= 0:
        raise invalid_argument("timeout is %r; it must be None (wait as long as it takes), 0 (do not wait) or a "
                               "number of seconds." % (timeout,))
    if t > 9.0e9:  # ~285 years: as good as no deadline, and no overflow below
        return -1
    return now_ns() + <int64_t>(t * 1e9)


cdef inline int64_t slice_of(int64_t deadline) nogil:
    if deadline < 0:
        return SLICE_NS
    cdef int64_t left = deadline - now_ns()
    if left <= 0:
        return 0
    return left if left < SLICE_NS else SLICE_NS


cdef inline int32_t index_of(object meta_index) except? -1:
    cdef int overflow = 0
    cdef long long v
    if PyLong_CheckExact(meta_index):
        v = PyLong_AsLongLongAndOverflow(meta_index, &overflow)
        if not overflow and -I32_MAX - 1 <= v <= I32_MAX:
            return <int32_t>v
    return <int32_t>as_int(meta_index, "meta_index", -I32_MAX - 1, I32_MAX)


cdef inline long long current_gen() except? -1:
    if fork_gen is None:  # install() not run: no guard or pool of the package exists yet
        return 0
    return fork_gen[0]


cdef inline bint inherited(GuardBase g) except -1:
    """True when ``g`` came from a pool opened before this process was forked (its reference is the parent's)."""
    return g.gen != current_gen()


cdef inline GuardBase empty_guard(PoolBase pool, bint ro):
    # A guard that owns nothing yet (gh 0), for a native call to write its handle and info into (see Invariants).
    # tp_new of GuardBase, inherited by BufferGuard: no __init__ (BufferGuard's refuses direct construction).
    cdef GuardBase g = <GuardBase>guard_tp.tp_new(guard_type, empty_tuple, None)
    g.ro = ro
    g.pool_obj = pool
    g.gen = pool.gen
    return g


# ---------------------------------------------------------------------------------------------------- pool

cdef class PoolBase:
    """The native state of a BufferPool: its handle. The methods are BufferPool's (see its docstrings)."""

    cdef uint64_t ph
    cdef long long gen
    cdef object __weakref__

    @property
    def _h(self):
        return self.ph

    @_h.setter
    def _h(self, value):
        self.ph = value

    @property
    def _gen(self):
        return self.gen

    @_gen.setter
    def _gen(self, value):
        self.gen = value

    def add_ref(self, meta_index):
        cdef int32_t out = 0
        cdef xmem_status rc = c_pool_add_ref(self.ph, index_of(meta_index), &out)
        if rc:
            raise self._fail(rc)
        return out

    def release(self, meta_index):
        cdef int32_t out = 0
        cdef xmem_status rc = c_pool_release(self.ph, index_of(meta_index), &out)
        if rc:
            raise self._fail(rc)
        return out

    def ref_count(self, meta_index):
        cdef int32_t out = 0
        cdef xmem_status rc = c_pool_ref_count(self.ph, index_of(meta_index), &out)
        if rc:
            raise self._fail(rc)
        return out

    def get(self, meta_index):
        cdef int32_t i = index_of(meta_index)
        cdef GuardBase g = empty_guard(self, True)  # before the call: it owns the reference once the call returns
        cdef xmem_status rc = c_pool_get(self.ph, i, &g.gh, &g.info)
        if rc:
            g.gh = 0
            raise self._fail(rc)
        return g

    def get_mut(self, meta_index):
        cdef int32_t i = index_of(meta_index)
        cdef GuardBase g = empty_guard(self, False)
        cdef xmem_status rc = c_pool_get_mut(self.ph, i, &g.gh, &g.info)
        if rc:
            g.gh = 0
            raise self._fail(rc)
        return g

    def acquire_cpu(self, size=None, timeout=None, *, shape=None, dtype=None, strides=None, seq=0,
                    content_type="", producer=""):
        # The whole call in C when nothing is to be described (the common case: no Python frame, no second call);
        # a description goes through BufferPool._acquire_described, shared with the ctypes implementation.
        cdef int overflow = 0
        cdef long long n
        if shape is None and dtype is None and strides is None and seq == 0 and not content_type and not producer:
            if PyLong_CheckExact(size):
                n = PyLong_AsLongLongAndOverflow(size, &overflow)
                if not overflow and n > 0:
                    return self.acquire(n, timeout)
            return self.acquire(self._size_arg(size), timeout)
        return self._acquire_described(size, timeout, shape, dtype, strides, seq, content_type, producer)

    def _acquire_cpu(self, size, timeout):
        return self.acquire(size, timeout)

    cdef GuardBase acquire(self, int64_t n, object timeout):
        cdef xmem_status rc
        cdef int64_t deadline, wait
        cdef uint64_t h = self.ph
        cdef double t
        cdef GuardBase g = empty_guard(self, False)
        if timeout is None:
            rc = c_pool_acquire_cpu(h, n, &g.gh, &g.info)
        else:
            t = float(timeout)
            if not t >= 0:
                raise invalid_argument("timeout is %r; it must be None, a number of seconds >= 0, or math.inf." % t)
            deadline = -1 if t > 9.0e9 else now_ns() + <int64_t>(t * 1e9)
            # A free slot is the common case: take it without letting go of the GIL.
            rc = c_pool_acquire_cpu(h, n, &g.gh, &g.info)
            while rc == E_POOL_FULL:
                g.gh = 0
                wait = slice_of(deadline)
                with nogil:
                    rc = c_pool_acquire_cpu_wait(h, n, wait, &g.gh, &g.info)
                if rc != E_TIMEOUT:
                    break  # a slot, or an error: XMEM_E_DISPOSED when close() woke the wait (_fail says "closed")
                rc = E_POOL_FULL
                g.gh = 0
                if deadline >= 0 and now_ns() >= deadline:
                    raise timeout_error(
                        "pool %r: no slot was released within %g s (all %d are live). Release buffers sooner, wait "
                        "longer, or create the pool with a larger capacity." % (self._name, t, self._capacity))
                PyErr_CheckSignals()  # raises KeyboardInterrupt & co. (nothing is held yet)
                h = self.ph  # closed meanwhile: the next call reports it
        if rc:
            g.gh = 0
            raise self._fail(rc)
        return g


POOL_METHODS = ("add_ref", "release", "ref_count", "get", "get_mut", "acquire_cpu", "_acquire_cpu")


# ---------------------------------------------------------------------------------------------------- guard

ctypedef struct ExportState:
    uint64_t lease
    long long gen  # the fork generation the lease was taken in: released only in that process
    Py_ssize_t shape[8]
    Py_ssize_t strides[8]


cdef const char *format_of(int32_t dtype, Py_ssize_t *itemsize):
    # XMEM_DTYPE_* -> struct format. bfloat16 has none: its bits are exported as uint16 ('H').
    if dtype == 1:
        itemsize[0] = 1; return "B"
    if dtype == 2:
        itemsize[0] = 1; return "b"
    if dtype == 3 or dtype == 8:
        itemsize[0] = 2; return "H"
    if dtype == 4:
        itemsize[0] = 2; return "h"
    if dtype == 5:
        itemsize[0] = 4; return "i"
    if dtype == 6:
        itemsize[0] = 8; return "q"
    if dtype == 7:
        itemsize[0] = 2; return "e"
    if dtype == 9:
        itemsize[0] = 4; return "f"
    if dtype == 10:
        itemsize[0] = 8; return "d"
    if dtype == 11:
        itemsize[0] = 1; return "?"
    return NULL


# ---------------------------------------------------------------------------------------------------- views

ctypedef void (*dl_deleter_t)(void *)

# Per XMEM_DTYPE_* (index 1..11): NumPy's name, DLPack (code, bits), item size. bfloat16 (8) has no NumPy type.
cdef const char *DTYPE_NAMES[12]
DTYPE_NAMES[:] = [NULL, "uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "bfloat16", "float32",
                  "float64", "bool"]
cdef uint8_t DL_CODE[12]
DL_CODE[:] = [0, 1, 0, 1, 0, 0, 0, 2, 4, 2, 2, 6]
cdef uint8_t ITEM[12]
ITEM[:] = [0, 1, 1, 2, 2, 4, 8, 2, 2, 4, 8, 1]

cdef object np_mod = None  # numpy, imported on first use
cdef list np_dtypes = None  # numpy.dtype per XMEM_DTYPE_*
cdef object views_numpy = None  # xmem._views.GuardViews.numpy: numpy(dtype=..., shape=...)
cdef object typestr_table = None  # xmem._description.TYPESTR, on first use


cdef object typestr_of():
    global typestr_table
    if typestr_table is None:
        from xmem import _description
        typestr_table = _description.TYPESTR
    return typestr_table
cdef Py_ssize_t deleter_offset[2]  # of DLManagedTensor / DLManagedTensorVersioned.deleter (from xmem._views)


cdef class Lease:
    """A native lease on one buffer's mapping (xmem_guard_lease_view) that exports its bytes (1-D, format 'B'),
    read-only for a guard from get. Views made from it hold it; the lease is dropped when the last of them goes, in
    the process that took it (one inherited through fork is the parent's)."""

    cdef uint64_t lh
    cdef void *addr
    cdef Py_ssize_t nbytes
    cdef Py_ssize_t one
    cdef long long gen
    cdef bint ro
    cdef int32_t meta_index

    def __dealloc__(self):
        cdef uint64_t h = self.lh
        self.lh = 0
        if h and self.gen == current_gen():
            c_lease_release(h)

    @property
    def _h(self):
        return self.lh

    @property
    def ptr(self):
        return <uintptr_t>self.addr

    @property
    def size(self):
        return self.nbytes

    def __getbuffer__(self, Py_buffer *view, int flags):
        if self.ro and (flags & PyBUF_WRITABLE) == PyBUF_WRITABLE:
            raise read_only_error(self.meta_index)
        view.buf = self.addr
        view.obj = self
        view.len = self.nbytes
        view.readonly = self.ro
        view.itemsize = 1
        view.format = <char *>"B" if (flags & PyBUF_FORMAT) == PyBUF_FORMAT else NULL
        view.ndim = 1
        view.shape = &self.nbytes if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = &self.one if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer *view):
        pass


cdef Lease new_lease(GuardBase g):
    # The lease handle is written straight into the object that drops it (no interrupt can leave it owned by nothing).
    if inherited(g):
        raise pool_closed(inherited_message(g.pool_obj._name))
    cdef Lease lease = Lease.__new__(Lease)
    cdef int64_t size = 0
    lease.gen = current_gen()
    lease.ro = g.ro
    lease.meta_index = g.info.meta_index
    lease.one = 1
    cdef xmem_status rc = c_guard_lease_view(g.gh, &lease.lh, &lease.addr, &size)
    if rc:
        lease.lh = 0
        raise last_error_for(rc)
    if size < 0:
        raise invalid_argument("the buffer in slot %d reports a size of %d bytes." % (g.info.meta_index, size))
    lease.nbytes = <Py_ssize_t>size
    return lease


cdef int read_tensor(GuardBase g, int32_t *dtype, int *ndim, int64_t *shape, int64_t *strides) except -1:
    """The tensor the default views show: the description's (validated by the core against the buffer's size; its
    numbers are checked again here), else every byte as uint8."""
    cdef xmem_description d
    cdef int i
    cdef xmem_status rc = c_guard_description(g.gh, &d)
    if rc:
        raise last_error_for(rc)
    if (d.flags & DESC_PRESENT) and d.dtype != 0:
        if not 1 <= d.dtype <= 11 or not 0 <= d.ndim <= 8:
            raise invalid_argument("the buffer in slot %d has a description this xmem cannot read (dtype %d, ndim %d)."
                                   % (g.info.meta_index, d.dtype, d.ndim))
        for i in range(d.ndim):
            if d.shape[i] < 0 or d.strides[i] < 0 or d.strides[i] % ITEM[d.dtype]:
                raise invalid_argument("the buffer in slot %d has a description out of range." % g.info.meta_index)
            shape[i] = d.shape[i]
            strides[i] = d.strides[i]
        dtype[0] = d.dtype
        ndim[0] = d.ndim
    else:
        dtype[0] = 1
        ndim[0] = 1
        shape[0] = g.info.size
        strides[0] = 1
    return 0


cdef tuple int_tuple(int n, const int64_t *v):
    cdef tuple t = PyTuple_New(n)
    cdef int i
    cdef object x
    for i in range(n):
        x = v[i]
        Py_INCREF(x)
        PyTuple_SET_ITEM(t, i, x)
    return t


cdef object numpy_module():
    global np_mod, np_dtypes
    if np_mod is None:
        try:
            import numpy
        except ImportError:
            raise ImportError("BufferGuard.numpy() needs NumPy; install it (pip install numpy) or use memoryview().") from None
        np_dtypes = [None] + [None if i == 8 else numpy.dtype(DTYPE_NAMES[i].decode("ascii")) for i in range(1, 12)]
        np_mod = numpy
    return np_mod


cdef class GuardBase:
    """The native state of a BufferGuard (handle, buffer info, access) and its buffer protocol. The methods are
    BufferGuard's (see its docstrings)."""

    cdef uint64_t gh
    cdef xmem_buffer_info info
    cdef bint ro
    cdef bint pending  # made by xmem._guard.pending_guard, its native call not yet taken: the handle is in out_obj
    cdef PoolBase pool_obj
    cdef long long gen  # pool_obj's fork generation, kept here so that __dealloc__ never needs pool_obj (which a
                        # garbage collection of a cycle may have cleared first)
    cdef object lease_obj
    cdef object out_obj
    cdef object __weakref__

    def __dealloc__(self):
        cdef uint64_t h = self.gh
        if self.pending and self.out_obj is not None:
            h = self.out_obj.guard  # interrupted between the native call and taking its handle
        if h and not inherited(self):
            self.gh = 0
            c_guard_release(h)

    # --- the fields the Python methods of BufferGuard use

    @property
    def _h(self):
        return -1 if self.pending else self.gh

    @_h.setter
    def _h(self, value):
        if value == -1:  # xmem._guard.PENDING: the native call will fill _out
            self.pending = True
            self.gh = 0
            return
        if self.pending:
            self.pending = False
            out = self.out_obj
            if out is not None:  # the call filled it: take its info along with the handle
                self.copy_out(out)
        self.gh = value

    cdef int copy_out(self, out) except -1:
        self.info.size = out.size
        self.info.cpu_ptr = <void *><uintptr_t>(out.cpu_ptr or 0)
        self.info.cuda_ptr = out.cuda_ptr
        self.info.meta_index = out.meta_index
        self.info.device_id = out.device_id
        self.info.flags = out.flags
        return 0

    @property
    def _pool(self):
        return self.pool_obj

    @_pool.setter
    def _pool(self, PoolBase value):
        self.pool_obj = value
        self.gen = value.gen if value is not None else current_gen()

    @property
    def _ro(self):
        return self.ro

    @_ro.setter
    def _ro(self, value):
        self.ro = value

    @property
    def _lease(self):
        return self.lease_obj

    @_lease.setter
    def _lease(self, value):
        self.lease_obj = value

    @property
    def _out(self):
        # A ctypes GuardOut, as the ctypes implementation keeps; made on first use (the cold paths).
        out = self.out_obj
        if out is None:
            i = &self.info
            out = self.out_obj = GuardOut_(self.gh, i.size, <uintptr_t>i.cpu_ptr, i.cuda_ptr, i.meta_index,
                                           i.device_id, i.flags, 0)
        return out

    @_out.setter
    def _out(self, out):
        self.out_obj = out
        self.copy_out(out)
        if not self.pending:
            self.gh = out.guard

    # --- hot methods

    @property
    def is_valid(self):
        return self.gh != 0

    @property
    def meta_index(self):
        if not self.gh:
            raise guard_invalid()
        return self.info.meta_index

    @property
    def size(self):
        if not self.gh:
            raise guard_invalid()
        return self.info.size

    def release(self):
        cdef uint64_t h = self.gh
        cdef xmem_status rc = 0
        if not h:
            raise guard_invalid()
        if not inherited(self):  # an inherited guard's reference is the parent's: nothing to do
            rc = c_guard_release(h)
        self.gh = 0
        self.lease_obj = None
        if rc:
            raise last_error_for(rc)

    def forget(self):
        cdef uint64_t h = self.gh
        cdef xmem_status rc
        if not h:
            raise guard_invalid()
        if inherited(self):
            self.gh = 0
            self.lease_obj = None
            raise pool_closed(inherited_message(self.pool_obj._name))
        rc = c_guard_forget(h)
        self.gh = 0
        self.lease_obj = None
        if rc:
            raise last_error_for(rc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        cdef uint64_t h = self.gh
        if h:
            if not inherited(self):
                c_guard_release(h)
            self.gh = 0
            self.lease_obj = None

    # --- the buffer protocol

    def __getbuffer__(self, Py_buffer *view, int flags):
        cdef uint64_t h = self.gh
        cdef xmem_status rc
        cdef xmem_description d
        cdef ExportState *st
        cdef void *ptr = NULL
        cdef int64_t size = 0, extent, expect
        cdef Py_ssize_t itemsize = 1, nbytes
        cdef const char *fmt = "B"
        cdef int i, ndim
        cdef bint contiguous
        if not h:
            raise guard_invalid()
        if inherited(self):
            raise pool_closed(inherited_message(self.pool_obj._name))
        if self.ro and (flags & PyBUF_WRITABLE) == PyBUF_WRITABLE:
            raise read_only_error(self.info.meta_index)
        if self.info.flags & BUFFER_CUDA:
            raise invalid_argument(
                "the buffer in slot %d is CUDA device memory (device %d): it has no CPU mapping to export. Use "
                "torch.from_dlpack(buf), __cuda_array_interface__, or copy_to_cpu()."
                % (self.info.meta_index, self.info.device_id))
        rc = c_guard_description(h, &d)
        if rc:
            raise last_error_for(rc)
        st = <ExportState *>malloc(sizeof(ExportState))
        if st == NULL:
            raise MemoryError()
        st.gen = current_gen()
        rc = c_guard_lease_view(h, &st.lease, &ptr, &size)
        if rc:
            free(st)
            raise last_error_for(rc)
        try:
            # The default view: the description's tensor, else every byte as uint8 (as BufferGuard.numpy()).
            if (d.flags & DESC_PRESENT) and d.dtype != 0:
                fmt = format_of(d.dtype, &itemsize)
                ndim = d.ndim
                if fmt == NULL or not 0 <= ndim <= 8:
                    raise invalid_argument("the buffer in slot %d has a description this xmem cannot read (dtype %d, "
                                           "ndim %d)." % (self.info.meta_index, d.dtype, d.ndim))
                extent = itemsize
                nbytes = itemsize
                contiguous = True
                expect = itemsize
                for i in range(ndim - 1, -1, -1):
                    if d.shape[i] < 0 or d.strides[i] < 0 or d.shape[i] > size or d.strides[i] > size:
                        raise invalid_argument("the buffer in slot %d has a description out of range." % self.info.meta_index)
                    st.shape[i] = <Py_ssize_t>d.shape[i]
                    st.strides[i] = <Py_ssize_t>d.strides[i]
                    nbytes *= st.shape[i]
                    if d.shape[i] == 0:
                        extent = 0
                    elif extent:
                        extent += (d.shape[i] - 1) * d.strides[i]
                    if d.shape[i] != 1 and d.strides[i] != expect:
                        contiguous = False
                    expect *= d.shape[i]
                if extent > size:  # the core checked it; a view must never reach past the mapping whatever it said
                    raise invalid_argument("the buffer in slot %d is described as %d bytes; it has %d."
                                           % (self.info.meta_index, extent, size))
                if nbytes == 0:
                    contiguous = True
            else:
                ndim = 1
                itemsize = 1
                nbytes = <Py_ssize_t>size
                st.shape[0] = nbytes
                st.strides[0] = 1
                contiguous = True
            if not contiguous and ((flags & PyBUF_STRIDES) != PyBUF_STRIDES
                                   or (flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS
                                   or (flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS
                                   or (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS):
                raise BufferError("the buffer in slot %d holds a strided (non-contiguous) tensor; this consumer needs "
                                  "contiguous memory: copy it (numpy.ascontiguousarray(buf)) first." % self.info.meta_index)
            if (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS and (flags & PyBUF_ANY_CONTIGUOUS) != PyBUF_ANY_CONTIGUOUS:
                for i in range(ndim - 1):
                    if st.shape[i] > 1:
                        raise BufferError("the buffer in slot %d is C-ordered, not Fortran-ordered." % self.info.meta_index)
            if (flags & PyBUF_FORMAT) != PyBUF_FORMAT:
                # No format asked: unsigned bytes (the tensor's bytes, contiguous as checked above).
                fmt = NULL
                itemsize = 1
                if ndim != 1 or st.strides[0] != 1:
                    ndim = 1
                    st.shape[0] = nbytes
                    st.strides[0] = 1
            view.buf = ptr
            view.obj = self
            view.len = nbytes
            view.readonly = self.ro
            view.itemsize = itemsize
            view.format = <char *>fmt
            view.ndim = ndim
            view.shape = st.shape if (flags & PyBUF_ND) == PyBUF_ND else NULL
            view.strides = st.strides if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
            view.suboffsets = NULL
            view.internal = st
        except BaseException:
            c_lease_release(st.lease)  # taken just above, in this process
            free(st)
            raise

    def __releasebuffer__(self, Py_buffer *view):
        cdef ExportState *st = <ExportState *>view.internal
        if st != NULL:
            view.internal = NULL
            if st.gen == current_gen():  # a view inherited through fork holds the parent's lease
                c_lease_release(st.lease)
            free(st)


    # --- views without ctypes (xmem._views.GuardViews has the docstrings and the rest)

    def memoryview(self):
        if not self.gh:
            raise guard_invalid()
        lease = self.lease_obj
        if lease is None or inherited(self):
            lease = self.lease_obj = new_lease(self)
        return PyMemoryView_FromObject(lease)

    def numpy(self, dtype=None, shape=None):
        cdef int32_t code
        cdef int ndim, i
        cdef int64_t dims[8]
        cdef int64_t strides[8]
        cdef int64_t expect, count
        cdef bint contiguous = True
        if dtype is not None or shape is not None:
            return views_numpy(self, dtype, shape)
        np = numpy_module()
        if not self.gh:
            raise guard_invalid()
        read_tensor(self, &code, &ndim, dims, strides)
        if code == 8:
            raise invalid_argument(
                "the buffer is described as bfloat16, which NumPy has no type for; use torch.from_dlpack(buf), "
                "or pass dtype= (e.g. 'uint16') to see the raw bits.")
        mv = self.memoryview()
        dt = np_dtypes[code]
        expect = ITEM[code]
        count = 1
        for i in range(ndim - 1, -1, -1):
            if dims[i] != 1 and strides[i] != expect:
                contiguous = False
            expect *= dims[i]
            count *= dims[i]
        if contiguous or count == 0:
            arr = np_mod.frombuffer(mv, dt, count)
            return arr if ndim == 1 else arr.reshape(int_tuple(ndim, dims))
        # numpy checks that the strided extent lies within the buffer (the core has checked it too)
        return np_mod.ndarray(int_tuple(ndim, dims), dt, mv, 0, int_tuple(ndim, strides))

    def __dlpack_device__(self):
        if self.info.flags & BUFFER_CUDA:
            return (2, self.info.device_id)  # kDLCUDA
        return (1, 0)  # kDLCPU

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        cdef int32_t code
        cdef int ndim, i
        cdef int64_t dims[8]
        cdef int64_t strides[8]
        cdef xmem_dlpack_request req
        cdef void *managed = NULL
        cdef bint versioned
        cdef xmem_status rc
        if not self.gh:
            raise guard_invalid()
        if inherited(self):
            raise pool_closed(inherited_message(self.pool_obj._name))
        if copy:
            raise BufferError("xmem exports zero-copy views only; copy the array after importing it.")
        device = self.__dlpack_device__()
        if dl_device is not None and tuple(dl_device) != device:
            raise BufferError("this xmem buffer lives on DLPack device %r; cannot export to %r." % (device, tuple(dl_device)))
        if self.info.flags & BUFFER_CUDA:
            # The consumer's stream waits for the recorded writes; the tensor takes a reference of its own (the C ABI).
            if stream is None:
                stream = CU_STREAM_LEGACY
            elif stream == 0 or not isinstance(stream, int):
                raise BufferError("stream %r is not a CUDA stream for DLPack (None, 1, 2, a CUstream, or -1)." % (stream,))
            if stream != -1:
                rc = c_guard_wait_writes_done(self.gh, <uint64_t>stream)
                if rc:
                    raise last_error_for(rc)
        elif stream is not None and stream != -1:
            raise BufferError("stream must be None for CPU buffers (got %r)." % (stream,))
        versioned = max_version is not None and int(max_version[0]) >= 1
        read_tensor(self, &code, &ndim, dims, strides)
        for i in range(ndim):
            strides[i] //= ITEM[code]  # DLPack counts strides in elements
        memset(&req, 0, sizeof(req))
        req.dtype_code = DL_CODE[code]
        req.dtype_bits = ITEM[code] * 8
        req.dtype_lanes = 1
        req.ndim = ndim
        req.shape = dims
        req.strides = strides
        req.flags = (XMEM_DLPACK_VERSIONED if versioned else 0) | (XMEM_DLPACK_READ_ONLY if self.ro else 0)
        rc = c_guard_export_dlpack(self.gh, &req, &managed)
        if rc:
            raise last_error_for(rc)
        try:
            return PyCapsule_New(managed, c_dlpack_capsule_name(1 if versioned else 0),
                                 <PyCapsule_Destructor>c_dlpack_capsule_destructor)
        except BaseException:
            # No capsule owns the tensor: free it through its own deleter.
            (<dl_deleter_t *>(<char *>managed + deleter_offset[1 if versioned else 0]))[0](managed)
            raise

    @property
    def __cuda_array_interface__(self):
        cdef int32_t code
        cdef int ndim, i
        cdef int64_t dims[8]
        cdef int64_t strides[8]
        cdef int64_t step
        cdef bint contiguous = True
        cdef xmem_status rc
        if not self.info.flags & BUFFER_CUDA:
            raise AttributeError("__cuda_array_interface__: the buffer in slot %d is in CPU memory" % self.info.meta_index)
        if not self.gh:
            raise guard_invalid()
        if inherited(self):
            raise pool_closed(inherited_message(self.pool_obj._name))
        read_tensor(self, &code, &ndim, dims, strides)
        name = DTYPE_NAMES[code].decode("ascii")
        typestr = typestr_of().get(name)
        if typestr is None:
            raise TypeError("the buffer is described as %s, which the CUDA Array Interface cannot express; use "
                            "torch.from_dlpack(buf)." % name)
        # The consumer holds this guard; the guard holds a reference of its own (and so the device memory) until it
        # is collected, even after release() or the pool's close().
        ref = getattr(self, "_cuda_ref", None)
        if ref is None or not (<GuardBase>ref).gh:
            ref = self.pool_obj.get(self.info.meta_index) if self.ro else self.pool_obj.get_mut(self.info.meta_index)
            # The legacy default stream waits for the recorded writes even when the pool leaves ordering to us.
            rc = c_guard_wait_writes_done((<GuardBase>ref).gh, CU_STREAM_LEGACY)
            if rc:
                ref.release()
                raise last_error_for(rc)
            self._cuda_ref = ref
        step = ITEM[code]
        for i in range(ndim - 1, -1, -1):
            if strides[i] != step:
                contiguous = False
            step *= dims[i] if dims[i] > 1 else 1
        return {
            "shape": int_tuple(ndim, dims),
            "typestr": typestr,
            "descr": [("", typestr)],
            "data": (self.info.cuda_ptr, bool(self.ro)),
            "strides": None if contiguous else int_tuple(ndim, strides),
            "version": 3,
            "stream": CU_STREAM_LEGACY,
        }

GUARD_METHODS = ("is_valid", "meta_index", "size", "release", "forget", "__enter__", "__exit__")
# Defined in xmem._views.GuardViews (after GuardBase in BufferGuard's bases, so these take over); their docstrings move here.
VIEW_METHODS = ("memoryview", "numpy", "__dlpack__", "__dlpack_device__", "__cuda_array_interface__")


# ---------------------------------------------------------------------------------------------------- channels

def receive(fn, handle, timeout, writable, PoolBase pool not None, what, owner):
    """xmem._channel._receive, with the wait in native slices: one native call when a buffer is there or comes
    within a slice. The guard is made before the call, which writes its handle into it (see Invariants). A close()
    of the pool or of ``owner`` meanwhile ends the wait with PoolClosedError (the library returns XMEM_E_DISPOSED to
    a wait the pool's close woke)."""
    cdef fn_receive_t cfn = <fn_receive_t>(c_subscription_receive if fn is subscription_receive_ctypes else c_channel_receive)
    cdef uint32_t flags = RECEIVE_WRITABLE if writable else 0
    cdef int64_t deadline = deadline_of(timeout)
    cdef int64_t wait
    cdef uint64_t h = handle
    cdef xmem_status rc
    cdef GuardBase g = empty_guard(pool, not writable)
    if deadline >= 0 and timeout == 0:
        rc = cfn(h, 0, flags, &g.gh, &g.info)
    else:
        while True:
            wait = slice_of(deadline)
            with nogil:
                rc = cfn(h, wait, flags, &g.gh, &g.info)
            if rc != E_TIMEOUT and rc != E_WOULD_BLOCK:
                break
            g.gh = 0
            if deadline >= 0 and now_ns() >= deadline:
                break
            PyErr_CheckSignals()
            h = owner._h  # closed meanwhile by another thread: stop
            if not h:
                raise pool_closed("%s was closed while waiting to receive." % what)
    if rc == E_TIMEOUT or rc == E_WOULD_BLOCK:
        g.gh = 0
        return None
    if rc:
        g.gh = 0
        raise pool._fail(rc) if not pool.ph else last_error_for(rc)
    return g


def send(channel, buf, timeout):
    """xmem._channel.Channel._send: True when sent, False when the channel stayed full for ``timeout``."""
    if not isinstance(buf, guard_type):
        raise TypeError("send() takes a BufferGuard, not %s" % type(buf).__name__)
    cdef GuardBase gb = <GuardBase>buf
    cdef uint64_t g = gb.gh, h
    cdef int64_t deadline, wait
    cdef xmem_status rc
    cdef xmem_buffer_info info
    if not g:
        raise guard_invalid()
    if gb.pool_obj is not channel._pool:
        raise invalid_argument(
            "the buffer comes from another BufferPool object than channel %r; send buffers acquired from the "
            "pool object the channel was opened on." % channel._name)
    deadline = deadline_of(timeout)
    while True:
        h = channel._h
        if not h:
            h = channel._live()  # raises: closed, its pool closed (by close() meanwhile), or inherited through fork
        wait = 0 if (deadline >= 0 and timeout == 0) else slice_of(deadline)
        if wait == 0:
            rc = c_channel_send(h, g, 0)
        else:
            with nogil:
                rc = c_channel_send(h, g, wait)
        if rc == 0:
            gb.gh = 0  # spent: its reference is in the channel
            gb.lease_obj = None
            return True
        if rc != E_TIMEOUT and rc != E_WOULD_BLOCK:
            err = channel._error(rc)  # XMEM_E_DISPOSED from a wait the pool's close woke: PoolClosedError
            if c_guard_info(g, &info) == E_INVALID_HANDLE:
                gb.gh = 0  # the failed send still took the reference (and gave it back)
            raise err
        if deadline >= 0 and now_ns() >= deadline:
            return False
        PyErr_CheckSignals()


# ---------------------------------------------------------------------------------------------------- install

cdef object subscription_receive_ctypes = None

# The C ABI functions this module calls (each has its pointer in the C block above).
BOUND = ("xmem_pool_acquire_cpu",
         "xmem_pool_acquire_cpu_wait",
         "xmem_pool_get",
         "xmem_pool_get_mut",
         "xmem_pool_add_ref",
         "xmem_pool_release",
         "xmem_pool_ref_count",
         "xmem_guard_release",
         "xmem_guard_forget",
         "xmem_guard_lease_view",
         "xmem_lease_release",
         "xmem_guard_description",
         "xmem_guard_info",
         "xmem_channel_send",
         "xmem_channel_receive",
         "xmem_subscription_receive",
         "xmem_guard_export_dlpack",
         "xmem_dlpack_capsule_destructor",
         "xmem_dlpack_capsule_name",
         "xmem_guard_wait_writes_done")


cdef void set_doc(object cls, str name, object doc) except *:
    cdef object descr = cls.__dict__[name]
    cdef bytes b = doc.encode("utf-8")
    doc_bytes.append(b)
    if type(descr).__name__ == "method_descriptor":
        (<PyMethodDescrObject *>descr).d_method.ml_doc = <const char *>b
    elif type(descr).__name__ == "getset_descriptor":
        (<PyGetSetDescrObject *>descr).d_getset.doc = <const char *>b
    else:
        raise TypeError("xmem._xmem: %s.%s is a %s" % (cls.__name__, name, type(descr).__name__))


cdef uintptr_t addr(object lib, str name) except 0:
    import ctypes
    v = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    if not v:
        raise ImportError("xmem._xmem: %s has no address" % name)
    return <uintptr_t>v


def install(lib, pool_cls, guard_cls, names):
    """Binds the C ABI of ``lib`` (xmem._native.lib), then makes ``pool_cls``/``guard_cls`` (subclasses of
    PoolBase/GuardBase) use the compiled methods: their Python definitions are removed, and their docstrings (with
    a text signature) move onto the compiled ones. ``names`` gives the package objects the cold paths use."""
    global Status_, GuardOut_, last_error_for, as_int, guard_invalid, read_only_error, invalid_argument
    global timeout_error, pool_closed, guard_type, guard_tp, subscription_receive_ctypes, fork_gen
    global views_numpy
    global inherited_message
    import ctypes
    import inspect

    for name in BOUND:
        if not xmem_bind(name.encode("ascii"), addr(lib, name)):
            raise ImportError("xmem._xmem: no pointer for %s" % name)
    subscription_receive_ctypes = lib.xmem_subscription_receive

    if not issubclass(pool_cls, PoolBase) or not issubclass(guard_cls, GuardBase):
        raise TypeError("xmem._xmem.install: the classes must derive from PoolBase and GuardBase")
    Status_ = names["Status"]
    GuardOut_ = names["GuardOut"]
    last_error_for = names["last_error_for"]
    as_int = names["as_int"]
    guard_invalid = names["guard_invalid"]
    read_only_error = names["read_only_error"]
    invalid_argument = names["invalid_argument"]
    timeout_error = names["timeout_error"]
    pool_closed = names["pool_closed"]
    inherited_message = names["inherited_message"]
    gens = names["fork_gen"]
    if type(gens) is not list or len(gens) != 1 or type(gens[0]) is not int:
        raise TypeError("xmem._xmem.install: fork_gen must be xmem._lifecycle.fork_gen, a list of one int")
    fork_gen = gens
    guard_type = guard_cls
    guard_tp = <PyTypeObject *>guard_cls

    views_cls = names["views_class"]
    if views_cls not in guard_cls.__mro__ or guard_cls.__mro__.index(views_cls) < guard_cls.__mro__.index(GuardBase):
        raise TypeError("xmem._xmem.install: %s must come after GuardBase in the guard's bases" % views_cls.__name__)
    offsets = names["dlpack_deleter_offset"]
    deleter_offset[0] = offsets[0]
    deleter_offset[1] = offsets[1]
    views_numpy = views_cls.__dict__["numpy"]

    for cls, base, methods in ((pool_cls, PoolBase, POOL_METHODS), (guard_cls, GuardBase, GUARD_METHODS),
                               (views_cls, GuardBase, VIEW_METHODS)):
        for name in methods:
            py = cls.__dict__.get(name)
            if py is None:
                raise ImportError("xmem._xmem: %s.%s has no Python definition to replace" % (cls.__name__, name))
            doc = inspect.getdoc(py) or ""
            if isinstance(py, property):
                set_doc(base, name, doc)
            else:
                sig = str(inspect.signature(py).replace(return_annotation=inspect.Signature.empty))
                sig = sig.replace("(self", "($self", 1)
                # Drop annotations from the text signature (it must be plain Python syntax without them).
                params = [p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(py).parameters.values()]
                sig = str(inspect.Signature(params)).replace("(self", "($self", 1)
                set_doc(base, name, "%s%s\n--\n\n%s" % (name, sig, doc))
            if cls is not views_cls:  # GuardViews comes after GuardBase: its definitions stay, as the fallbacks
                delattr(cls, name)
    if "__del__" in guard_cls.__dict__:
        delattr(guard_cls, "__del__")  # GuardBase.__dealloc__ releases a guard left alive (never an inherited one)
