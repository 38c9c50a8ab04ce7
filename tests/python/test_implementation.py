"""xmem.implementation and XMEM_IMPLEMENTATION: the compiled module and the ctypes fallback behind one API."""

import os
import subprocess
import sys

import pytest

import xmem


def run_python(code, **env_extra):
    env = dict(os.environ)
    env.pop("XMEM_IMPLEMENTATION", None)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_implementation_is_what_the_environment_asked_for():
    asked = os.environ.get("XMEM_IMPLEMENTATION")
    assert xmem.implementation in ("compiled", "ctypes")
    if asked:
        assert xmem.implementation == asked


def test_the_installed_wheel_has_the_compiled_module():
    if os.environ.get("XMEM_EXPECT_INSTALLED") != "1":
        pytest.skip("only meaningful against the installed wheel")
    res = run_python("import xmem; print(xmem.implementation)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "compiled"


def test_xmem_implementation_ctypes_forces_the_fallback():
    res = run_python("import xmem; print(xmem.implementation); p = xmem.BufferPool.__mro__[1].__module__; print(p)",
                     XMEM_IMPLEMENTATION="ctypes")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["ctypes", "xmem._accel"]


def test_an_unknown_xmem_implementation_is_an_import_error_that_says_what_to_do():
    res = run_python("import xmem", XMEM_IMPLEMENTATION="fast")
    assert res.returncode != 0
    assert "ImportError" in res.stderr and "'compiled', 'ctypes'" in res.stderr


def test_both_implementations_document_the_same_methods():
    # The compiled methods carry the Python definitions' docstrings (one copy, in _pool.py).
    for cls, names in ((xmem.BufferPool, ("add_ref", "release", "ref_count", "get", "get_mut")),
                       (xmem.BufferGuard, ("release", "forget", "meta_index", "size", "is_valid"))):
        for name in names:
            doc = getattr(cls, name).__doc__
            assert doc and len(doc) > 20, (cls.__name__, name)
    code = ("import inspect, json, xmem; "
            "print(json.dumps([inspect.getdoc(xmem.BufferPool.get), inspect.getdoc(xmem.BufferGuard.size)]))")
    res = run_python(code, XMEM_IMPLEMENTATION="ctypes")
    assert res.returncode == 0, res.stderr
    import inspect
    import json
    assert json.loads(res.stdout) == [inspect.getdoc(xmem.BufferPool.get), inspect.getdoc(xmem.BufferGuard.size)]


def test_a_pending_guard_owns_the_reference_its_native_call_wrote_in_both_implementations(unique_name):
    """xmem._guard.pending_guard (the ctypes code's interrupt-safe guards: _h = _PENDING, the native call writes into
    _out) works on either base: finished by ``_h = out.guard`` it is a normal guard with the call's info; dropped
    before that (an interrupt right after the call), it releases the reference the call wrote into its _out."""
    import ctypes
    import gc

    from xmem import _guard, _pool

    with xmem.BufferPool(unique_name(), 2) as pool:
        with pool.acquire_cpu(16) as g:
            i = g.meta_index
            p = _guard.pending_guard(pool, True)
            out = p._out
            assert _pool._pool_get(pool._h, i, ctypes.byref(out), ctypes.byref(out, 8)) == 0
            p._h = out.guard
            assert p.is_valid and p.meta_index == i and p.size == 16 and p.is_read_only
            assert pool.ref_count(i) == 2
            p.release()
            assert pool.ref_count(i) == 1

            p = _guard.pending_guard(pool, False)
            out = p._out
            assert _pool._pool_get_mut(pool._h, i, ctypes.byref(out), ctypes.byref(out, 8)) == 0
            assert pool.ref_count(i) == 2
            del p, out  # never finished: the reference is in _out only
            gc.collect()
            assert pool.ref_count(i) == 1


@pytest.mark.skipif(xmem.implementation != "compiled", reason="the compiled implementation's hot paths")
def test_the_compiled_hot_paths_run_without_a_python_frame():
    """acquire_cpu (its keyword handling included), get and the counts are compiled methods, not Python functions
    that call one (issue 16: the Python-level acquire_cpu wrapper cost more than the native acquire)."""
    import types

    for name in ("acquire_cpu", "get", "get_mut", "add_ref", "release", "ref_count"):
        fn = getattr(xmem.BufferPool, name)
        assert not isinstance(fn, types.FunctionType), name
    for cls, names in ((xmem.Channel, ("send", "try_send", "recv", "try_recv")), (xmem.Subscription, ("recv", "try_recv"))):
        for name in names:
            fn = getattr(cls, name)
            assert not isinstance(fn, types.FunctionType), (cls.__name__, name)
            assert fn.__doc__ and len(fn.__doc__) > 20, (cls.__name__, name)
    assert not isinstance(xmem.BufferGuard.release, types.FunctionType)
    assert not isinstance(xmem.Channel.__iter__, types.FunctionType)
    assert not isinstance(xmem.Subscription.__iter__, types.FunctionType)


def test_acquire_cpu_checks_its_size_the_same_way_in_both_implementations(unique_name):
    with xmem.BufferPool(unique_name(), 2) as pool:
        for bad, exc in ((0, xmem.InvalidArgumentError), (-1, xmem.InvalidArgumentError),
                         (1 << 63, xmem.InvalidArgumentError), (1 << 70, xmem.InvalidArgumentError),
                         (None, TypeError), (8.0, TypeError), ("8", TypeError)):
            with pytest.raises(exc):
                pool.acquire_cpu(bad)
        with pool.acquire_cpu(True) as g:  # an int subclass: its __index__
            assert g.size == 1
        with pool.acquire_cpu(size=16, timeout=None) as g:
            assert g.size == 16
        with pool.acquire_cpu(shape=(2, 3), dtype="float32", seq=5) as g:
            assert g.size == 24 and g.shape == (2, 3) and g.seq == 5
        assert pool.ref_count(0) == 0 and pool.ref_count(1) == 0


def test_acquire_cpu_takes_its_arguments_the_same_way_in_both_implementations(unique_name):
    """The compiled acquire_cpu sorts its arguments itself (METH_FASTCALL): positional, by keyword, through
    **kwargs, with the description's defaults spelled out, and the TypeErrors of a Python function otherwise."""
    with xmem.BufferPool(unique_name(), 2) as pool:
        for args, kwargs in (((8,), {}), ((8, None), {}), ((8, 5.0), {}), ((), {"size": 8}),
                             ((8,), {"timeout": 5}), ((), {"timeout": None, "size": 8}),
                             ((), dict(size=8, shape=None, dtype=None, strides=None, seq=0, content_type="",
                                       producer="")),
                             ((), {"".join(["si", "ze"]): 8})):  # a key the caller did not intern
            with pool.acquire_cpu(*args, **kwargs) as g:
                assert g.size == 8 and g.description is None, (args, kwargs)
        with pool.acquire_cpu(8, seq=3) as g:  # one description argument is enough to describe it
            assert g.seq == 3 and g.description is not None
        with pool.acquire_cpu(None, 1.0, shape=[2], dtype="int16", content_type="x", producer="p") as g:
            assert g.size == 4 and g.dtype == "int16" and g.content_type == "x" and g.producer == "p"
        for args, kwargs, words in (((8, None, 3), {}, "positional"), ((8,), {"size": 8}, "multiple values"),
                                    ((8,), {"timeot": 1}, "unexpected keyword"),
                                    ((), {"size": 8, "shape": (2,), "colour": 1}, "unexpected keyword")):
            with pytest.raises(TypeError, match=words):
                pool.acquire_cpu(*args, **kwargs)
        if xmem.implementation == "compiled":
            with pytest.raises(TypeError):
                xmem.BufferPool.acquire_cpu(object(), 8)  # the method descriptor checks its self
        assert pool.ref_count(0) == 0 and pool.ref_count(1) == 0


def test_channel_methods_take_their_arguments_the_same_way_in_both_implementations(unique_name):
    import inspect
    with xmem.BufferPool(unique_name(), 4) as pool, pool.channel("q", 4) as ch, \
            pool.channel("f", 4, mode="fanout") as fan, fan.subscribe() as sub:
        assert list(inspect.signature(xmem.Channel.recv).parameters) == ["self", "timeout", "writable"]
        assert list(inspect.signature(xmem.Channel.send).parameters) == ["self", "buf", "timeout"]
        ch.send(pool.acquire_cpu(8))
        ch.send(pool.acquire_cpu(8), None)
        ch.send(buf=pool.acquire_cpu(8), timeout=1)
        assert ch.try_send(pool.acquire_cpu(8), 0) is True
        with ch.recv() as a, ch.recv(1.0) as b, ch.recv(timeout=1, writable=True) as c, ch.try_recv(writable=False) as d:
            assert a.is_read_only and b.is_read_only and not c.is_read_only and d.is_read_only
        assert ch.try_recv() is None and ch.try_recv(0.01) is None
        with pytest.raises(xmem.XmemTimeoutError, match="nothing arrived"):
            ch.recv(0)
        with pytest.raises(TypeError):
            ch.recv(1, True)  # writable is keyword-only
        with pytest.raises(TypeError):
            ch.send()
        with pytest.raises(TypeError):
            ch.try_recv(timeout=0, writeable=True)
        with pytest.raises(TypeError):
            ch.send(b"not a guard")
        fan.send(pool.acquire_cpu(8))
        with sub.recv(timeout=1, writable=True) as e:
            assert not e.is_read_only
        assert sub.try_recv() is None
        with pytest.raises(xmem.XmemTimeoutError, match="subscriber"):
            sub.recv(0.01)
        for i in range(4):
            assert pool.ref_count(i) == 0


@pytest.mark.skipif(xmem.implementation != "compiled", reason="the compiled implementation's hot paths")
def test_the_compiled_hot_paths_run_no_python_code_of_the_package(unique_name):
    """acquire_cpu, get, the counts, release, memoryview(), numpy() and DLPack (numpy.from_dlpack) of a CPU buffer
    run in the compiled module alone: no function of the package's Python modules (and so no ctypes call they would
    make) runs during them. Issue 16: numpy() and __dlpack__ built ctypes objects on every call."""
    import os
    import sys

    np = pytest.importorskip("numpy")
    package_dir = os.path.dirname(os.path.abspath(xmem.__file__)) + os.sep
    with xmem.BufferPool(unique_name(), 4) as pool:
        with pool.acquire_cpu(shape=(4, 6), dtype="float32") as described, pool.acquire_cpu(64) as plain:
            numpy_module = np.asarray(described).__class__  # numpy imported and the module's dtype table made
            described.numpy()
            del numpy_module
            ran = []

            def profile(frame, event, arg):
                if event == "call" and frame.f_code.co_filename.startswith(package_dir):
                    ran.append("%s:%d %s" % (os.path.basename(frame.f_code.co_filename), frame.f_lineno,
                                             frame.f_code.co_name))

            sys.setprofile(profile)
            try:
                with pool.acquire_cpu(128) as g:
                    pool.add_ref(g.meta_index)
                    pool.release(g.meta_index)
                    pool.ref_count(g.meta_index)
                    with pool.get(g.meta_index):
                        pass
                    g.memoryview()[0] = 1
                a = described.numpy()
                b = plain.numpy()
                c = np.from_dlpack(described)
                d = np.from_dlpack(plain)
            finally:
                sys.setprofile(None)
            assert ran == []
            assert a.shape == (4, 6) and a.dtype == np.float32 and b.shape == (64,) and b.dtype == np.uint8
            assert c.shape == (4, 6) and c.dtype == np.float32 and d.shape == (64,)
            a[1, 2] = 7.5
            assert c[1, 2] == 7.5 and described.numpy()[1, 2] == 7.5
            del a, b, c, d
