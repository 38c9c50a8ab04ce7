"""Fixtures of the Python package's tests.

* Every pool name is unique per run: ``pyt<pid>x<counter>``. After each test, no segment of the names it used may
  remain in the shared-memory directory (the test fails, and the leftovers are removed); at the end of the session
  no ``xmem.v1.pyt<pid>x*`` entry at all may remain.
* A watchdog (faulthandler) dumps every thread's stack and ends the run when one test takes longer than
  ``XMEM_TEST_TIMEOUT`` seconds (default 120), so nothing that waits can hang the suite.
* Run by scripts/test-python.sh with ``XMEM_EXPECT_INSTALLED=1``: ``import xmem`` must then be the installed wheel,
  not the source tree.
"""

import faulthandler
import gc
import glob
import itertools
import os
import sys

import pytest

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PREFIX = "pyt%dx" % os.getpid()
SHM_DIR = (os.environ.get("XMEM_SHM_DIR") or "/dev/shm").rstrip("/")
WATCHDOG_S = float(os.environ.get("XMEM_TEST_TIMEOUT", "120"))

_counter = itertools.count()

# The stale-pool sweep (a process's first create/open removes pools with no live process) stays off in this suite and
# the processes it starts, as in the C# suite: a sweep run by a test here must not remove a stale pool that a test of
# another suite running at the same time is looking at. Set before the library loads (its runtime reads the
# environment once).
os.environ.setdefault("XMEM_STALE_SWEEP", "0")

import xmem  # noqa: E402  (after the constants: a failing import should name the library problem first)


def segments_of(name):
    """The shared-memory entries of pool `name` (its control segment and every instance segment)."""
    base = os.path.join(SHM_DIR, "xmem.v1." + name)
    return sorted(p for p in glob.glob(base) + glob.glob(base + ".*"))


class Names:
    """Hands out unique pool names and remembers them for the leak check."""

    def __init__(self):
        self.used = []

    def __call__(self, tag=""):
        name = "%s%d%s" % (PREFIX, next(_counter), ("-" + tag) if tag else "")
        self.used.append(name)
        return name


@pytest.fixture
def unique_name(request):
    """A factory of unique pool names; after the test none of them may leave anything in the shm directory."""
    names = Names()
    yield names
    gc.collect()
    leaked = {n: segments_of(n) for n in names.used}
    leaked = {n: s for n, s in leaked.items() if s}
    for n in leaked:
        xmem.BufferPool.remove(n)
    if leaked and not hasattr(request.node, "_xmem_failed"):
        pytest.fail("shared-memory segments left behind: %r" % leaked, pytrace=False)


@pytest.fixture
def pool(unique_name):
    """A fresh pool of 16 slots, closed after the test."""
    p = xmem.BufferPool(unique_name(), 16)
    yield p
    p.close()


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session", autouse=True)
def _no_segments_left_at_the_end():
    yield
    gc.collect()
    left = glob.glob(os.path.join(SHM_DIR, "xmem.v1." + PREFIX + "*"))
    assert not left, "the tests left shared-memory entries behind: %r" % sorted(left)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item._xmem_failed = True


def pytest_report_header(config):
    return "xmem %s from %s; library %s; shm dir %s; pool names %s*" % (
        xmem.__version__, os.path.dirname(xmem.__file__), xmem.library_path, SHM_DIR, PREFIX)


def pytest_sessionstart(session):
    if os.environ.get("XMEM_EXPECT_INSTALLED") == "1":
        source = os.path.join(REPO_ROOT, "python")
        where = os.path.dirname(os.path.abspath(xmem.__file__))
        if where.startswith(source + os.sep):
            raise pytest.UsageError("xmem was imported from the source tree (%s), not the installed wheel" % where)


def locate_testchild():
    """The C# helper program (tests/Xmem.TestChild), built by scripts/test-python.sh."""
    env = os.environ.get("XMEM_TESTCHILD_DLL")
    if env:
        return env
    for cfg in ("Release", "Debug"):
        p = os.path.join(REPO_ROOT, "tests", "Xmem.TestChild", "bin", cfg, "net10.0", "Xmem.TestChild.dll")
        if os.path.isfile(p):
            return p
    return None


sys.dont_write_bytecode = True
