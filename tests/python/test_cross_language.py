"""The same pool from C# (tests/Xmem.TestChild, commands in Commands/PythonInteropCommands.cs) and Python."""

import os
import subprocess

import pytest

import xmem
from conftest import locate_testchild

np = pytest.importorskip("numpy", reason="numpy is not installed (buffers are checked with it)")
from _children import pattern  # noqa: E402

TIMEOUT = 60


@pytest.fixture(scope="module")
def child_cmd():
    dll = locate_testchild()
    if dll is None or not os.path.isfile(dll):
        pytest.fail("the C# test child is not built; run `dotnet build tests/Xmem.TestChild -c Release` "
                    "(scripts/test-python.sh does) or set XMEM_TESTCHILD_DLL.")
    return ["dotnet", dll]


def run_child(child_cmd, *args):
    res = subprocess.run(child_cmd + [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, "child %r exited %d: %s %s" % (args, res.returncode, res.stdout, res.stderr)
    return res.stdout.strip()


def test_csharp_produces_python_consumes(pool, child_cmd):
    out = run_child(child_cmd, "py-produce", pool.name, 50000, 40, 3)
    word, *indexes = out.split()
    assert word == "produced" and len(indexes) == 3
    for k, i in enumerate(int(x) for x in indexes):
        assert pool.ref_count(i) == 1  # forgotten by C#: in flight, for us to release
        with pool.get(i) as buf:
            assert buf.size == 50000
            assert (buf.numpy() == pattern(40 + k, 50000)).all()
            assert (np.from_dlpack(buf) == pattern(40 + k, 50000)).all()
        assert pool.release(i) == 0


def test_python_produces_csharp_consumes(pool, child_cmd):
    indexes = []
    for k in range(3):
        buf = pool.acquire_cpu(70000 + k)
        buf.numpy()[:] = pattern(7 + k, buf.size)
        indexes.append(buf.meta_index)
        buf.forget()
    out = run_child(child_cmd, "py-consume", pool.name, 7, *indexes)
    assert out == "consumed 70000 70001 70002"
    assert all(pool.ref_count(i) == 0 for i in indexes)


def test_csharp_holder_counts_writes_and_crash(unique_name, child_cmd):
    with xmem.BufferPool(unique_name(), 1) as pool:
        buf = pool.acquire_cpu(1024)
        i = buf.meta_index
        child = subprocess.Popen(child_cmd + ["py-hold", pool.name, str(i)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().split() == ["holding", "2"]
            child.stdin.write("write 99\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "written"
            assert (buf.numpy() == pattern(99, 1024)).all()
            buf.release()
            assert pool.ref_count(i) == 1  # the C# guard's
            child.stdin.write("die\n")
            child.stdin.flush()
            assert child.wait(TIMEOUT) == 9
        finally:
            if child.poll() is None:  # pragma: no cover
                child.kill()
                child.wait()
        with pool.acquire_cpu(8, timeout=30) as again:  # reclaimed from the dead C# process
            assert again.meta_index == i
