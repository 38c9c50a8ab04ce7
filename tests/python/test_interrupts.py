"""A KeyboardInterrupt may land at any point of an xmem call (CPython raises it at its next check: a line, a call,
right after a C call returns). Wherever it lands, nothing stays held once the interrupted program's objects are gone:
no pool left attached (and so in /dev/shm), no reference left owned by nothing. Each test replays one scenario with
the interrupt injected at the 1st, 2nd, 3rd ... line executed in xmem's own Python code, until a replay completes."""

import gc
import os
import sys

import pytest

import xmem

from conftest import segments_of

# An interrupt injected into a finalizer that runs during a replay is reported by CPython as "Exception ignored in
# ... __del__" (the very thing a real Ctrl-C may meet): expected here, not a failure.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

_XMEM_DIR = os.path.dirname(os.path.abspath(xmem.__file__)) + os.sep


def _run_interrupted_at(n, scenario):
    """Runs scenario() with a KeyboardInterrupt raised at the n-th line event in xmem's modules; True when it did."""
    seen = [0]

    def local(frame, event, arg):
        if event == "line":
            seen[0] += 1
            if seen[0] == n:
                raise KeyboardInterrupt  # a trace function's exception is raised in the traced frame
        return local

    def on_call(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(_XMEM_DIR) else None

    sys.settrace(on_call)
    try:
        scenario()
    except KeyboardInterrupt:
        return True
    finally:
        sys.settrace(None)
    return False


def _replay_everywhere(unique_name, scenario, what):
    n = 1
    while True:
        name = unique_name("intr")
        landed = _run_interrupted_at(n, lambda: scenario(name))
        gc.collect()  # the program's objects are gone (the exception and its frames too): their finalizers ran
        left = segments_of(name)
        assert not left, "%s interrupted at xmem line %d left %r" % (what, n, left)
        if not landed:
            return n - 1
        n += 1


def test_an_interrupt_anywhere_in_create_open_or_close_leaves_no_pool(unique_name):
    def scenario(name):
        with xmem.BufferPool(name, 2):
            with xmem.BufferPool.open(name):
                pass

    assert _replay_everywhere(unique_name, scenario, "create/open/close") > 20


def test_an_interrupt_anywhere_in_acquire_get_or_receive_leaves_no_reference(unique_name):
    """The pool is kept open throughout (by the test), so a reference left owned by nothing would show as a count."""
    name = unique_name("keep")
    with xmem.BufferPool(name, 2) as keeper, keeper.channel("c", depth=2) as ch:
        def scenario(_):
            with keeper.acquire_cpu(8) as g:
                with keeper.get(g.meta_index), keeper.get_mut(g.meta_index):
                    pass
                ch.send(keeper.get(g.meta_index))
            ch.recv(timeout=5).release()

        n = 1
        while True:
            landed = _run_interrupted_at(n, lambda: scenario(None))
            gc.collect()
            counts = [keeper.ref_count(i) for i in range(2)]
            if counts != [0, 0]:
                # A buffer the interrupted program sent may still wait in the channel: take it out, then check.
                got = ch.try_recv(0)
                if got is not None:
                    got.release()
                counts = [keeper.ref_count(i) for i in range(2)]
            assert counts == [0, 0], "interrupted at xmem line %d: counts %r left" % (n, counts)
            if not landed:
                break
            n += 1
        # The compiled implementation runs the whole scenario in C (acquire_cpu, get, release, send and recv are
        # compiled methods: no line there to interrupt, and a C call and the storing of its result are one step), so
        # no line of xmem's Python code runs in it and the first replay completes; the ctypes one has many.
        assert n > 20 if xmem.implementation == "ctypes" else n == 1
