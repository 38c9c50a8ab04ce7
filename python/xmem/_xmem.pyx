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
  * A view never outlives the mapping, whatever happens to the guard or the pool. ``memoryview()``, ``numpy()``
    and the Python views share one ``Lease`` object per guard (a native lease, xmem_guard_lease_view; cached in
    ``lease_obj``, let go with the reference): the views made from it hold it, not the guard, so a view never keeps
    a reference alive. A buffer export (``memoryview(buf)``, ``numpy.asarray(buf)``) holds that Lease when the
    guard has one; otherwise it *borrows* the guard's own mapping, which stays mapped while the guard holds its
    reference (include/xmem.h), and makes no C ABI call: ``borrowed`` counts those exports, and the pool lists the
    guard in ``exporting``. Before the guard gives its reference up (release, forget, ``with``, send) or its pool
    is closed, ``settle_exports`` moves the borrowed exports onto a Lease (``export_lease``, kept until the last of
    them goes). When no Lease can be had then, a release is deferred instead: the native reference is kept in
    ``deferred`` until the last borrowed export goes (a view keeps the reference alive only in that failure);
    forget and send raise, and the guard stays the caller's. DLPack tensors hold a lease of their own, taken by
    the library.
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
from cpython.ref cimport Py_INCREF, Py_DECREF
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

    /* Hot methods with more than one argument as METH_FASTCALL | METH_KEYWORDS methods: the arguments arrive as a
       C array and the keyword names as a tuple, so a call makes no argument tuple and no keyword dict (Cython 0.29
       gives a def method with more than one argument METH_VARARGS | METH_KEYWORDS, which makes both). Slot i sorts
       its arguments into v[] (NULL: not given) and calls its entry, a Cython function that holds the body.
       Filled once by xmem_fast_method at install(), under the GIL; never changed after. */
    #define XMEM_FAST_SLOTS 12
    #define XMEM_FAST_MAXARGS 8
    typedef PyObject *(*xmem_entry_t)(PyObject *self, PyObject **v);
    typedef struct {
        PyMethodDef def;
        PyObject *name;                           /* the method's name (str), for the messages */
        Py_ssize_t nargs, npos;                   /* npos positional-or-keyword, then keyword-only */
        PyObject *names[XMEM_FAST_MAXARGS];       /* interned */
        xmem_entry_t entry;
    } xmem_fast_t;
    static xmem_fast_t xmem_fast[XMEM_FAST_SLOTS];

    static PyObject *xmem_fast_call(xmem_fast_t *m, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames) {
        PyObject *v[XMEM_FAST_MAXARGS] = {NULL};
        Py_ssize_t i, k, nk = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
        if (nargs > m->npos) {
            PyErr_Format(PyExc_TypeError, "%U() takes at most %zd positional arguments (%zd given)", m->name,
                         m->npos, nargs);
            return NULL;
        }
        for (i = 0; i < nargs; i++)
            v[i] = args[i];
        for (i = 0; i < nk; i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            for (k = 0; k < m->nargs && key != m->names[k]; k++) {
            }
            if (k == m->nargs) { /* not interned by the caller (a **kwargs call): compare the text */
                for (k = 0; k < m->nargs; k++) {
                    int eq = PyObject_RichCompareBool(key, m->names[k], Py_EQ);
                    if (eq < 0)
                        return NULL;
                    if (eq)
                        break;
                }
            }
            if (k == m->nargs) {
                PyErr_Format(PyExc_TypeError, "%U() got an unexpected keyword argument '%S'", m->name, key);
                return NULL;
            }
            if (v[k] != NULL) {
                PyErr_Format(PyExc_TypeError, "%U() got multiple values for argument '%U'", m->name, m->names[k]);
                return NULL;
            }
            v[k] = args[nargs + i];
        }
        return m->entry(self, v);
    }

    #define XMEM_FAST_FN(i) \
        static PyObject *xmem_fast_fn_##i(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw) { \
            return xmem_fast_call(&xmem_fast[i], self, args, nargs, kw); \
        }
    XMEM_FAST_FN(0) XMEM_FAST_FN(1) XMEM_FAST_FN(2) XMEM_FAST_FN(3) XMEM_FAST_FN(4) XMEM_FAST_FN(5)
    XMEM_FAST_FN(6) XMEM_FAST_FN(7) XMEM_FAST_FN(8) XMEM_FAST_FN(9) XMEM_FAST_FN(10) XMEM_FAST_FN(11)
    typedef PyObject *(*xmem_fastcall_t)(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);
    static const xmem_fastcall_t xmem_fast_fns[XMEM_FAST_SLOTS] = {
        xmem_fast_fn_0, xmem_fast_fn_1, xmem_fast_fn_2, xmem_fast_fn_3, xmem_fast_fn_4, xmem_fast_fn_5,
        xmem_fast_fn_6, xmem_fast_fn_7, xmem_fast_fn_8, xmem_fast_fn_9, xmem_fast_fn_10, xmem_fast_fn_11};

    /* Fills slot i (method `name`, argument names `names`: a tuple of str, the first npos positional) and returns
       its method descriptor for instances of `type`. */
    static PyObject *xmem_fast_method(int i, PyTypeObject *type, PyObject *name, Py_ssize_t npos, PyObject *names,
                                      void *entry) {
        xmem_fast_t *m;
        Py_ssize_t k, n;
        if (i < 0 || i >= XMEM_FAST_SLOTS || !PyUnicode_Check(name) || !PyTuple_Check(names)
            || (n = PyTuple_GET_SIZE(names)) > XMEM_FAST_MAXARGS || npos > n || npos < 0 || entry == NULL) {
            PyErr_SetString(PyExc_SystemError, "xmem._xmem: bad fast method definition");
            return NULL;
        }
        m = &xmem_fast[i];
        if (m->entry != NULL) {
            PyErr_Format(PyExc_SystemError, "xmem._xmem: fast method slot %d is taken", i);
            return NULL;
        }
        for (k = 0; k < n; k++) {
            PyObject *s = PyTuple_GET_ITEM(names, k);
            if (!PyUnicode_Check(s)) {
                PyErr_SetString(PyExc_SystemError, "xmem._xmem: argument names must be str");
                return NULL;
            }
            Py_INCREF(s);
            PyUnicode_InternInPlace(&s);
            m->names[k] = s; /* kept for ever, as the slot */
        }
        Py_INCREF(name);
        m->name = name;
        m->nargs = n;
        m->npos = npos;
        m->entry = (xmem_entry_t)entry;
        m->def.ml_name = PyUnicode_AsUTF8(name);
        if (m->def.ml_name == NULL)
            return NULL;
        m->def.ml_meth = (PyCFunction)(void (*)(void))xmem_fast_fns[i];
        m->def.ml_flags = METH_FASTCALL | METH_KEYWORDS;
        m->def.ml_doc = NULL;
        return PyDescr_NewMethod(type, &m->def);
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
    object xmem_fast_method(int i, PyTypeObject *type, object name, Py_ssize_t npos, object names, void *entry)

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
cdef object subscription_type = None  # xmem.Subscription, given by install_channels()
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
    cdef set exporting  # guards with buffer exports that borrow their mapping (GuardBase.borrowed); None: none yet
    cdef object __weakref__

    def _settle_exports(self):
        # BufferPool.close, before the native close: every export that borrows a guard's mapping moves onto a
        # Lease while the pool can still give one (a guard whose lease fails keeps its views on its own mapping,
        # which stays mapped while the guard holds its reference; its release then waits for them).
        cdef GuardBase g
        if not self.exporting:
            return
        for g in list(self.exporting):
            try:
                settle_exports(g)
            except Exception:
                pass
        self.exporting = None

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


cdef object acquire_entry(object obj, PyObject **v):
    """BufferPool.acquire_cpu (its METH_FASTCALL slot sorts the arguments into ``v``: size, timeout, shape, dtype,
    strides, seq, content_type, producer; NULL where not given). The whole call in C when nothing is to be
    described (the common case: no Python frame, no second call); a description goes through
    BufferPool._acquire_described, shared with the ctypes implementation."""
    cdef PoolBase self = <PoolBase>obj  # the descriptor checked the type
    cdef object size = <object>v[0] if v[0] != NULL else None
    cdef object timeout = <object>v[1] if v[1] != NULL else None
    cdef int overflow = 0
    cdef long long n
    cdef int k
    cdef bint plain = True
    for k in range(2, 8):
        if v[k] != NULL:
            plain = False
            break
    if not plain:  # described, unless every description argument was given its default
        shape = <object>v[2] if v[2] != NULL else None
        dtype = <object>v[3] if v[3] != NULL else None
        strides = <object>v[4] if v[4] != NULL else None
        seq = <object>v[5] if v[5] != NULL else 0
        content_type = <object>v[6] if v[6] != NULL else ""
        producer = <object>v[7] if v[7] != NULL else ""
        if not (shape is None and dtype is None and strides is None and seq == 0 and not content_type
                and not producer):
            return self._acquire_described(size, timeout, shape, dtype, strides, seq, content_type, producer)
    if PyLong_CheckExact(size):
        n = PyLong_AsLongLongAndOverflow(size, &overflow)
        if not overflow and n > 0:
            return self.acquire(n, timeout)
    return self.acquire(self._size_arg(size), timeout)


POOL_METHODS = ("add_ref", "release", "ref_count", "get", "get_mut", "_acquire_cpu")


# ---------------------------------------------------------------------------------------------------- guard

ctypedef struct ExportState:
    PyObject *lease  # the guard's cached Lease (a strong reference), which holds the native lease; else NULL and:
    uint64_t native  # a native lease of this export's own (after the pool was closed: see __getbuffer__), or
    bint borrowed  # the export borrows the guard's mapping (counted in GuardBase.borrowed)
    long long gen  # taken in this fork generation: released only in that process
    Py_ssize_t shape[8]
    Py_ssize_t strides[8]


cdef void drop_export(GuardBase g, ExportState *st):
    # What an export held: the Lease (its last holder drops the native lease, in the process that took it), its
    # own native lease (a view inherited through fork holds the parent's: not released here), or a borrow of the
    # guard's mapping (the last one lets go of the Lease the borrows were settled onto, or of a deferred release).
    cdef PyObject *lease = st.lease
    cdef bint borrowed = st.borrowed
    if st.native and st.gen == current_gen():
        c_lease_release(st.native)
    free(st)
    if lease != NULL:
        Py_DECREF(<object>lease)
    if borrowed:
        g.borrowed -= 1
        if g.borrowed == 0:
            unlist_exporting(g)
            g.export_lease = None
            if g.deferred:
                finish_deferred(g)


cdef void unlist_exporting(GuardBase g):
    cdef PoolBase pool = g.pool_obj
    if pool is not None and pool.exporting is not None:
        pool.exporting.discard(g)


cdef void finish_deferred(GuardBase g):
    # The release that waited for the last borrowed export (settle_exports could not take a lease).
    cdef uint64_t h = g.deferred
    g.deferred = 0
    if h and not inherited(g):
        c_guard_release(h)


cdef int settle_exports(GuardBase g) except -1:
    # Before the guard gives its reference up: the exports that borrow its mapping move onto a Lease (one C ABI
    # call, only when such an export is still alive). Raises when no lease can be had (the guard is unchanged).
    if g.borrowed == 0 or g.export_lease is not None or inherited(g):
        return 0
    g.export_lease = g.lease_obj if g.lease_obj is not None else new_lease(g)
    unlist_exporting(g)
    return 0


cdef bint settle_or_defer(GuardBase g, uint64_t h):
    # For a release: settles the borrowed exports, or, when that fails, keeps the native reference (in ``deferred``)
    # until the last of them goes. True when the caller is to release ``h`` now.
    try:
        settle_exports(g)
        return True
    except Exception:
        g.deferred = h
        return False


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
    cdef Py_ssize_t borrowed  # live buffer exports that borrow the guard's own mapping (no lease of their own)
    cdef object export_lease  # the Lease those exports were settled onto when the reference was given up
    cdef uint64_t deferred  # a release that waits for the last borrowed export (no lease could be had)
    cdef object out_obj
    cdef object __weakref__

    def __dealloc__(self):
        cdef uint64_t h = self.gh
        if self.pending and self.out_obj is not None:
            h = self.out_obj.guard  # interrupted between the native call and taking its handle
        if h and not inherited(self):
            self.gh = 0
            c_guard_release(h)
        h = self.deferred  # no export is left once the guard goes (each holds it): a deferred release is due
        if h and not inherited(self):
            self.deferred = 0
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
        if not inherited(self) and settle_or_defer(self, h):  # an inherited guard's reference is the parent's
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
        settle_exports(self)
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
            if not inherited(self) and settle_or_defer(self, h):
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
        cdef PoolBase pool = self.pool_obj
        st = <ExportState *>malloc(sizeof(ExportState))
        if st == NULL:
            raise MemoryError()
        st.gen = current_gen()
        st.native = 0
        st.borrowed = False
        # A guard that made a Lease (memoryview(), numpy()) lends it: the export holds it. Otherwise the export
        # borrows the guard's mapping (no C ABI call; settle_exports moves it onto a Lease before the guard gives
        # its reference up). After the pool's close there is nothing to settle onto, so an export takes a native
        # lease of its own, which then fails as a new lease does ("take views before closing the pool").
        cdef Lease lease = self.lease_obj
        if lease is not None:
            st.lease = <PyObject *>lease
            Py_INCREF(lease)
            ptr = lease.addr
            size = lease.nbytes
        elif pool is not None and pool.ph and self.info.cpu_ptr != NULL and self.info.size >= 0:
            st.lease = NULL
            st.borrowed = True
            if self.borrowed == 0:
                if pool.exporting is None:
                    pool.exporting = set()
                pool.exporting.add(self)
            self.borrowed += 1
            ptr = self.info.cpu_ptr
            size = self.info.size
        else:
            st.lease = NULL
            rc = c_guard_lease_view(h, &st.native, &ptr, &size)
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
            drop_export(self, st)
            raise

    def __releasebuffer__(self, Py_buffer *view):
        cdef ExportState *st = <ExportState *>view.internal
        if st != NULL:
            view.internal = NULL
            drop_export(self, st)


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
    return receive_guard(cfn, handle, timeout, writable, pool, owner, what)


cdef object receive_guard(fn_receive_t cfn, uint64_t h, object timeout, bint writable, PoolBase pool, object owner,
                          object what):
    """The body of receive(); ``what`` names the receiver in a message (None: made from ``owner`` when needed)."""
    cdef uint32_t flags = RECEIVE_WRITABLE if writable else 0
    cdef int64_t deadline = deadline_of(timeout)
    cdef int64_t wait
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
                raise pool_closed("%s was closed while waiting to receive." % (receiver_name(owner) if what is None else what))
    if rc == E_TIMEOUT or rc == E_WOULD_BLOCK:
        g.gh = 0
        return None
    if rc:
        g.gh = 0
        raise pool._fail(rc) if not pool.ph else last_error_for(rc)
    return g


cdef str receiver_name(object owner):
    # As xmem._channel names them in messages.
    if type(owner) is subscription_type:
        return "subscription of %r" % owner._channel._name
    return "channel %r" % owner._name


def send(channel, buf, timeout):
    """xmem._channel.Channel._send: True when sent, False when the channel stayed full for ``timeout``."""
    return send_guard(channel, buf, timeout)


cdef object send_guard(object channel, object buf, object timeout):
    # The body of send().
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
        settle_exports(gb)  # a view of the buffer keeps working after the send (on a lease), as before
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


cdef inline object arg(PyObject *v, object default):
    return <object>v if v != NULL else default


cdef object channel_send_entry(object ch, PyObject **v):
    """Channel.send(buf, timeout=None)."""
    if v[0] == NULL:
        raise TypeError("send() missing 1 required positional argument: 'buf'")
    timeout = arg(v[1], None)
    if not send_guard(ch, <object>v[0], timeout):
        raise timeout_error("channel %r stayed full (%d buffers) for %g s; the buffer is still yours. Receive faster, "
                            "wait longer, or open the channel with a larger depth." % (ch._name, ch._depth, timeout))
    return None


cdef object channel_try_send_entry(object ch, PyObject **v):
    """Channel.try_send(buf, timeout=0)."""
    if v[0] == NULL:
        raise TypeError("try_send() missing 1 required positional argument: 'buf'")
    return send_guard(ch, <object>v[0], arg(v[1], 0))


cdef object stashed_fn = None  # xmem._channel._stashed, given by install_channels()


cdef inline object stashed(object owner, object writable):
    """A buffer a cancelled coroutine gave back to ``owner`` (xmem._async): it comes before the next one received.
    None (one attribute load) while no coroutine ever waited on it."""
    cdef object pair = owner._async
    if pair is None:
        return None
    return stashed_fn(pair, bool(writable))


cdef object channel_recv(object ch, PyObject **v, object default_timeout):
    cdef uint64_t h = ch._h
    if not h:
        h = ch._live()  # raises: closed, or its pool closed or inherited through fork
    g = stashed(ch, arg(v[1], False))
    if g is not None:
        return g
    return receive_guard(c_channel_receive, h, arg(v[0], default_timeout), arg(v[1], False), ch._pool, ch, None)


cdef object channel_recv_entry(object ch, PyObject **v):
    """Channel.recv(timeout=None, *, writable=False)."""
    g = channel_recv(ch, v, None)
    if g is None:
        raise timeout_error("nothing arrived in channel %r within %g s." % (ch._name, arg(v[0], None)))
    return g


cdef object channel_try_recv_entry(object ch, PyObject **v):
    """Channel.try_recv(timeout=0, *, writable=False)."""
    return channel_recv(ch, v, 0)


cdef object subscription_recv(object sub, PyObject **v, object default_timeout):
    cdef uint64_t h = sub._h
    if not h:
        h = sub._live()  # raises
    g = stashed(sub, arg(v[1], False))
    if g is not None:
        return g
    return receive_guard(c_subscription_receive, h, arg(v[0], default_timeout), arg(v[1], False),
                         sub._channel._pool, sub, None)


cdef object subscription_recv_entry(object sub, PyObject **v):
    """Subscription.recv(timeout=None, *, writable=False)."""
    g = subscription_recv(sub, v, None)
    if g is None:
        raise timeout_error("nothing arrived for this subscriber of channel %r within %g s."
                            % (sub._channel._name, arg(v[0], None)))
    return g


cdef object subscription_try_recv_entry(object sub, PyObject **v):
    """Subscription.try_recv(timeout=0, *, writable=False)."""
    return subscription_recv(sub, v, 0)


cdef class ReceiveIterator:
    """``iter(channel)`` / ``iter(subscription)``: receives read-only guards for ever, one native call per buffer
    (tp_iternext: no generator frame, no argument tuple), and ends when the receiver or its pool is closed, as the
    Python generators of xmem._channel do."""

    cdef object owner  # the Channel or Subscription
    cdef PoolBase pool
    cdef fn_receive_t cfn

    def __iter__(self):
        return self

    def __next__(self):
        cdef uint64_t h
        while True:
            h = self.owner._h
            if not h or not self.pool.ph:
                raise StopIteration
            try:
                g = stashed(self.owner, False)
                if g is None:
                    g = receive_guard(self.cfn, h, None, False, self.pool, self.owner, None)
            except pool_closed_type:
                raise StopIteration
            if g is not None:
                return g


cdef object pool_closed_type = None  # xmem.PoolClosedError, given by install_channels()


cdef object channel_iter_entry(object ch, PyObject **v):
    """Channel.__iter__()."""
    cdef ReceiveIterator it = ReceiveIterator.__new__(ReceiveIterator)
    it.owner = ch
    it.pool = ch._pool
    it.cfn = c_channel_receive
    return it


cdef object subscription_iter_entry(object sub, PyObject **v):
    """Subscription.__iter__()."""
    cdef ReceiveIterator it = ReceiveIterator.__new__(ReceiveIterator)
    it.owner = sub
    it.pool = sub._channel._pool
    it.cfn = c_subscription_receive
    return it


def install_channels(channel_cls, subscription_cls, pool_closed_cls, stashed_cls_fn):
    """Makes ``channel_cls``/``subscription_cls`` (xmem.Channel, xmem.Subscription) use the compiled send and
    receive methods and iterators, with the docstrings of their Python definitions; iteration ends on
    ``pool_closed_cls`` (xmem.PoolClosedError); receives serve first what ``stashed_cls_fn`` (xmem._channel._stashed)
    gives back from cancelled coroutines, as the Python definitions do."""
    global subscription_type, pool_closed_type, stashed_fn
    subscription_type = subscription_cls
    pool_closed_type = pool_closed_cls
    stashed_fn = stashed_cls_fn
    install_fast(channel_cls, channel_cls, "send", <void *>channel_send_entry)
    install_fast(channel_cls, channel_cls, "try_send", <void *>channel_try_send_entry)
    install_fast(channel_cls, channel_cls, "recv", <void *>channel_recv_entry)
    install_fast(channel_cls, channel_cls, "try_recv", <void *>channel_try_recv_entry)
    install_fast(subscription_cls, subscription_cls, "recv", <void *>subscription_recv_entry)
    install_fast(subscription_cls, subscription_cls, "try_recv", <void *>subscription_try_recv_entry)
    install_fast(channel_cls, channel_cls, "__iter__", <void *>channel_iter_entry)
    install_fast(subscription_cls, subscription_cls, "__iter__", <void *>subscription_iter_entry)


cdef int fast_slots_used = 0


cdef int install_fast(object cls, object self_type, str name, void *entry) except -1:
    """Replaces the Python method ``cls.name`` by a METH_FASTCALL method (for instances of ``self_type``) that sorts
    the arguments the Python definition takes and calls ``entry`` with them; the docstring and text signature move
    onto it. ``entry`` gives each argument the Python definition's default."""
    global fast_slots_used
    import inspect
    doc = documentation(cls, name)
    params = list(inspect.signature(cls.__dict__[name]).parameters.values())[1:]  # without self
    npos = 0
    for p in params:
        if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD:
            npos += 1
        elif p.kind != inspect.Parameter.KEYWORD_ONLY:
            raise TypeError("xmem._xmem: %s.%s takes a %s argument" % (cls.__name__, name, p.kind))
    descr = xmem_fast_method(fast_slots_used, <PyTypeObject *>self_type, name, npos, tuple(p.name for p in params),
                             entry)
    fast_slots_used += 1
    setattr(cls, name, descr)
    set_doc(cls, name, doc)
    return 0


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


cdef str documentation(object cls, str name):
    """The docstring of the Python definition ``cls.name``, with its text signature for a method (what
    inspect.signature of the compiled method reads)."""
    import inspect
    py = cls.__dict__.get(name)
    if py is None:
        raise ImportError("xmem._xmem: %s.%s has no Python definition to replace" % (cls.__name__, name))
    doc = inspect.getdoc(py) or ""
    if isinstance(py, property):
        return doc
    # Without annotations: the text signature must be plain Python syntax.
    params = [p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(py).parameters.values()]
    sig = str(inspect.Signature(params)).replace("(self", "($self", 1)
    return "%s%s\n--\n\n%s" % (name, sig, doc)


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
            doc = documentation(cls, name)
            set_doc(base, name, doc)
            if cls is not views_cls:  # GuardViews comes after GuardBase: its definitions stay, as the fallbacks
                delattr(cls, name)
    install_fast(pool_cls, PoolBase, "acquire_cpu", <void *>acquire_entry)
    if "__del__" in guard_cls.__dict__:
        delattr(guard_cls, "__del__")  # GuardBase.__dealloc__ releases a guard left alive (never an inherited one)
