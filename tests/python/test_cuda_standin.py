"""CUDA from Python in two real processes, against the strict stand-in driver (tests/cuda-standin: a contract
checker, not a GPU): DLPack and CUDA Array Interface views, copies, recycling, close in either order, a killed
importer and a killed exporter. Each test fails when the stand-in logs a broken driver rule (use of freed memory or
a destroyed event, a free with an importer open, unordered access across processes, ...) as well as on a wrong byte
or count. Run by scripts/test-python.sh with both implementations (compiled and ctypes)."""

import os
import shutil
import signal
import subprocess
import sys

import pytest

import _cuda_standin

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 3 << 20  # a 4 MiB allocation
ALLOC = 4 << 20
KDL_CUDA = 2


class Role:
    """A child process running _cuda_roles.py on the stand-in."""

    def __init__(self, env, name, create):
        args = [sys.executable, os.path.join(HERE, "_cuda_roles.py"), name] + (["--create"] if create else [])
        self.p = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        self.expect_prefix("ready")

    def expect_prefix(self, prefix):
        line = self.p.stdout.readline().strip()
        if not line.startswith(prefix):
            self.p.kill()
            raise AssertionError("child answered %r, expected %r...; stderr:\n%s" % (line, prefix, self.p.stderr.read()))
        return line[len(prefix):].split()

    def ok(self, instruction):
        self.p.stdin.write(instruction + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        assert line == "ok" or line.startswith("ok "), "%r answered %r" % (instruction, line)
        return line[3:].split()

    def ask(self, instruction):
        self.p.stdin.write(instruction + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def exit(self):
        self.ok("exit")
        assert self.p.wait(timeout=60) == 0, self.p.stderr.read()

    def kill(self):
        self.p.kill()
        self.p.wait(timeout=60)


def _standin(unique_name, vmm):
    directory = _cuda_standin.new_directory()
    env = _cuda_standin.environment(directory, vmm=vmm)
    name = unique_name("cuda")
    roles = []

    def start(create=False):
        r = Role(env, name, create)
        roles.append(r)
        return r

    start.violations = lambda: _cuda_standin.violations(directory)
    start.vmm = vmm
    yield start
    for r in roles:
        if r.p.poll() is None:
            r.kill()
    left = _cuda_standin.violations(directory)
    # VMM memory is a memfd: nothing of it may stay in the stand-in's directory (IPC memory of a killed exporter
    # is a file there until the driver's next sweep).
    stray = [f for f in os.listdir(directory) if f.startswith("mem.")] if vmm else []
    shutil.rmtree(directory, ignore_errors=True)
    assert not left, "the stand-in CUDA driver logged violations:\n" + "\n".join(left)
    assert not stray, stray


@pytest.fixture
def standin(unique_name):
    yield from _standin(unique_name, vmm=False)


@pytest.fixture
def standin_vmm(unique_name):
    yield from _standin(unique_name, vmm=True)


@pytest.fixture(params=[False, True], ids=["ipc", "vmm"])
def standin_either(request, unique_name):
    yield from _standin(unique_name, vmm=request.param)
    

def produce(a, seed):
    g, idx = a.ok("acquire %d 0" % SIZE)
    a.ok("fill %s %d" % (g, seed))
    a.ok("forget " + g)  # records the writes; the reference is in flight
    return int(idx)


def test_dlpack_and_cai_views_in_another_process_see_the_exporters_bytes(standin):
    a, b = standin(create=True), standin()
    idx = produce(a, 3)
    g = b.ok("get %d" % idx)[0]
    for versioned in ("0", "1"):
        cap, dtype, dev, ro = b.ok("dlpack %s %s" % (g, versioned))
        assert (int(dtype), int(dev)) == (KDL_CUDA, 0)
        assert ro == ("1" if versioned == "1" else "0")  # read-only flag of a get() guard (versioned capsules)
        b.ok("verify %s 3" % cap)
        b.ok("drop " + cap)
    cai, ro, stream = b.ok("cai " + g)
    assert (ro, stream) == ("1", "1")  # read-only for get(): Numba honours it (PyTorch refuses it: use DLPack)
    b.ok("verify %s 3" % cai)
    m = b.ok("get_mut %d" % idx)[0]
    cai_w, ro_w, _ = b.ok("cai " + m)
    assert ro_w == "0"
    b.ok("release " + m)
    b.ok("release " + g)
    b.ok("drop " + cai)
    b.ok("drop " + cai_w)
    b.ok("drop " + g)
    b.ok("drop " + m)  # the CAI's own references go with the guards
    assert a.ok("release_index %d" % idx) == ["0"]
    b.exit()
    a.exit()


def test_views_outlive_the_importers_close_and_the_exporter_frees_only_after_them(standin):
    a, b = standin(create=True), standin()
    idx = produce(a, 5)
    g = b.ok("get %d" % idx)[0]
    cap = b.ok("dlpack %s 1" % g)[0]
    cai = b.ok("cai " + g)[0]
    b.ok("release " + g)
    b.ok("close")  # the views still point at the mapping: it must stay open, and the slot live
    b.ok("verify %s 5" % cap)
    b.ok("verify %s 5" % cai)
    assert a.ok("release_index %d" % idx) == ["1"]  # the importer's pin: one in-flight reference for its mapping
    assert a.ok("trim") == ["0"]
    b.ok("drop " + cap)
    b.ok("drop " + cai)
    b.ok("drop " + g)  # the interface's reference goes with the guard
    assert a.ok("refcount %d" % idx) == ["0"]
    assert a.ok("trim") == [str(ALLOC)]
    b.exit()
    a.exit()


def test_views_outlive_the_exporters_close_and_a_writable_release_after_close_is_safe(standin):
    a = standin(create=True)
    g, _ = a.ok("acquire %d 0" % SIZE)
    a.ok("fill %s 7" % g)
    cap = a.ok("dlpack %s 1" % g)[0]
    cai = a.ok("cai " + g)[0]
    a.ok("close")
    a.ok("verify %s 7" % cap)
    a.ok("verify %s 7" % cai)
    a.ok("verify %s 7" % g)
    a.ok("release " + g)  # records on the slot's event: it must still exist
    a.ok("drop " + cap)
    a.ok("drop " + cai)
    a.ok("drop " + g)
    a.exit()


def test_recycling_copies_and_a_writer_in_another_process_are_ordered(standin):
    a, b = standin(create=True), standin()
    idx = produce(a, 1)
    m = b.ok("get_mut %d" % idx)[0]
    b.ok("fill %s 2" % m)
    b.ok("release " + m)  # records the consumer's writes
    assert a.ok("release_index %d" % idx) == ["0"]
    g, idx2 = a.ok("acquire %d 0" % SIZE)
    assert int(idx2) == idx  # the kept allocation: its reuse waits on the consumer's writes
    a.ok("fill %s 4" % g)
    c, same = a.ok("copy_to_cpu %s 4" % g)
    assert same == "1"
    d1 = a.ok("copy_to_cuda %s 1" % g)[0]
    a.ok("verify %s 4 1" % d1)
    for x in (g, c, d1):
        a.ok("release " + x)
    b.exit()
    a.exit()


def test_a_killed_importer_and_a_killed_exporter(standin):
    a, b = standin(create=True), standin()
    idx = produce(a, 6)
    g = b.ok("get %d" % idx)[0]
    b.ok("dlpack %s 1" % g)
    b.kill()  # dies holding a guard, a capsule and an open mapping
    c = standin()
    g2 = c.ok("get %d" % idx)[0]
    c.ok("verify %s 6" % g2)
    c.ok("release " + g2)
    assert a.ok("release_index %d" % idx) in (["0"], ["1"], ["2"])  # the dead importer's references: recovered lazily
    a.kill()  # the exporter dies: its memory goes with it
    mine, _ = c.ok("acquire %d 0" % (2 * SIZE))
    c.ok("fill %s 8" % mine)
    c.ok("verify %s 8" % mine)
    c.ok("release " + mine)
    c.exit()


def test_a_fork_child_is_told_that_cuda_cannot_be_used_after_fork(standin):
    a = standin(create=True)
    g, _ = a.ok("acquire %d 0" % SIZE)  # CUDA initialized in this process
    msg = " ".join(a.ok("fork_acquire"))
    assert msg.startswith("CudaUnavailableError") and "fork" in msg, msg
    a.ok("release " + g)
    a.exit()


def test_the_compiled_module_has_its_own_cuda_views(standin):
    """Both implementations run these tests (scripts/test-python.sh): the compiled one defines __dlpack__ and
    __cuda_array_interface__ for CUDA buffers itself; the ctypes one uses xmem._views.GuardViews."""
    a = standin(create=True)
    g, _ = a.ok("acquire %d 0" % SIZE)
    owners = a.ok("owners " + g)
    compiled = os.environ.get("XMEM_IMPLEMENTATION") == "compiled"
    assert owners == (["GuardBase", "GuardBase"] if compiled else ["GuardViews", "GuardViews"]), owners
    a.ok("release " + g)
    a.exit()


def test_a_cuda_buffer_sent_on_a_channel_is_received_with_its_writes_ordered(standin):
    a, b = standin(create=True), standin()
    g, idx = a.ok("acquire %d 0" % SIZE)
    a.ok("fill %s 9" % g)
    a.ok("send q " + g)  # records the writes, moves the reference into the channel
    r = b.ok("recv q w")[0]
    b.ok("verify %s 9" % r)
    cap = b.ok("dlpack %s 1" % r)[0]
    b.ok("verify %s 9" % cap)
    b.ok("fill %s 10" % r)
    b.ok("send back " + r)
    back = a.ok("recv back")[0]
    a.ok("verify %s 10" % back)
    a.ok("release " + back)
    b.ok("drop " + cap)
    assert a.ok("refcount %s" % idx) == ["0"]
    b.exit()
    a.exit()


def test_only_vmm_memory_outlives_its_producer_killed_while_the_consumer_holds_it(standin_either):
    """The headline of docs/cuda.md, "Buffers that outlive their producer": with VMM the consumer reads every byte
    after the producer was SIGKILLed (through its own handle, guard and DLPack capsule alike); with IPC the
    stand-in faults the read, as a GPU does (the documented IPC limit)."""
    a, b, late = standin_either(create=True), standin_either(), standin_either()
    vmm = standin_either.vmm
    idx = produce(a, 11)
    g = b.ok("get %d" % idx)[0]
    cap = b.ok("dlpack %s 1" % g)[0]
    b.ok("verify %s 11" % g)
    a.kill()
    if not vmm:
        answer = b.ask("verify %s 11" % g)
        assert answer.startswith("error") and "failed: 700" in answer, answer  # CUDA_ERROR_ILLEGAL_ADDRESS
        b.ok("release " + g)
        b.ok("drop " + cap)
        b.exit()
        late.exit()
        return
    b.ok("verify %s 11" % g)
    b.ok("verify %s 11" % cap)
    b.ok("release " + g)  # the capsule holds a guard of its own
    b.ok("verify %s 11" % cap)
    denied = late.ask("get %d" % idx)
    assert denied.startswith("error CudaError") and "has exited" in denied, denied
    b.ok("drop " + cap)
    b.ok("drop " + g)
    assert b.ok("release_index %d" % idx) == ["0"]  # the in-flight reference of the producer's forget
    mine, idx2 = b.ok("acquire %d 0" % SIZE)
    b.ok("fill %s 12" % mine)
    b.ok("forget " + mine)
    r = late.ok("get %s" % idx2)[0]
    late.ok("verify %s 12" % r)
    late.ok("release " + r)
    assert late.ok("release_index %s" % idx2) == ["0"]
    late.exit()
    b.exit()


def test_vmm_channel_handoff_every_byte_and_no_descriptor_leaks(standin_vmm):
    a, b = standin_vmm(create=True), standin_vmm()
    counts = []
    for round_ in range(2):
        g, _ = a.ok("acquire %d 0" % SIZE)
        a.ok("fill %s %d" % (g, 20 + round_))
        a.ok("send q " + g)
        r = b.ok("recv q")[0]
        b.ok("verify %s %d" % (r, 20 + round_))
        b.ok("release " + r)
        b.ok("drop " + r)
        counts.append((a.ok("fds")[0], b.ok("fds")[0]))
    assert counts[0] == counts[1], counts  # the second round adds no descriptor in either process
    b.exit()
    a.exit()


def test_vmm_close_in_either_order_and_a_killed_importer(standin_vmm):
    a, b = standin_vmm(create=True), standin_vmm()
    idx = produce(a, 13)
    g = b.ok("get %d" % idx)[0]
    cap = b.ok("dlpack %s 1" % g)[0]
    b.ok("release " + g)
    b.ok("close")  # the importer first: its capsule keeps the mapping, and the slot live
    b.ok("verify %s 13" % cap)
    assert a.ok("release_index %d" % idx) == ["1"]
    b.ok("drop " + cap)
    b.ok("drop " + g)
    assert a.ok("refcount %d" % idx) == ["0"]
    assert a.ok("trim") == [str(ALLOC)]
    b.exit()
    idx = produce(a, 14)
    c = standin_vmm()
    g = c.ok("get %d" % idx)[0]
    a.ok("close")  # the exporter first: the live slot's allocation and its fd server stay
    c.ok("verify %s 14" % g)
    c.ok("release " + g)
    c.ok("drop " + g)
    assert c.ok("release_index %d" % idx) == ["0"]
    a.exit()
    d = standin_vmm()
    dg, idx = d.ok("acquire %d 0" % SIZE)
    idx = int(idx)
    d.ok("fill %s 15" % dg)
    d.ok("forget " + dg)
    e = standin_vmm()
    e.ok("get %d" % idx)
    e.kill()  # dies holding a guard and a mapping
    f = standin_vmm()
    g = f.ok("get %d" % idx)[0]  # the exporter still serves the descriptor to the next importer
    f.ok("verify %s 15" % g)
    f.ok("release " + g)
    f.exit()
    assert d.ok("release_index %d" % idx) in (["0"], ["1"])  # the dead importer's reference: recovered lazily
    d.exit()
    c.exit()


def test_a_fork_child_of_the_exporter_does_not_keep_its_fd_socket_alive(standin_vmm):
    """The exporter's fd server socket dies with the exporter even while a fork child of it lives: the child's
    inherited copy of the listening socket is closed by xmem's atfork handler, so a later importer is told at once
    that the exporter exited (with the copy open, its request would wait for an answer nobody gives)."""
    a, b = standin_vmm(create=True), standin_vmm()
    idx = produce(a, 16)
    child = int(a.ok("fork_hold")[0])
    try:
        g = b.ok("get %d" % idx)[0]  # served by the parent
        a.kill()
        b.ok("verify %s 16" % g)  # the consumer keeps its copy
        late = standin_vmm()
        denied = late.ask("get %d" % idx)
        assert denied.startswith("error CudaError") and "has exited" in denied, denied
        b.ok("release " + g)
        b.ok("drop " + g)
        late.exit()
        b.exit()
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_stand_in_reports_each_broken_vmm_rule():
    """The contract checker itself: each VMM rule broken once (tests/python/_vmm_rules.py, through ctypes in a child)
    is refused and logged; what the rules allow (a copy after cuMemSetAccess, cuMemRelease of a handle still mapped
    and a copy through that mapping) is neither."""
    directory = _cuda_standin.new_directory()
    try:
        env = _cuda_standin.environment(directory, vmm=True)
        out = subprocess.run([sys.executable, os.path.join(HERE, "_vmm_rules.py")], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        rc = dict(line.split() for line in out.stdout.splitlines())
        log = _cuda_standin.violations(directory)
        expected = [  # step, CUresult, what the violation says
            ("create-unaligned", "1", "cuMemCreate: VIOLATION: size 2097153 must be a non-zero multiple of the granularity"),
            ("map-unreserved", "1", "cuMemMap: VIOLATION: 0x10000000000 + 2097152 is not inside one range reserved"),
            ("copy-before-access", "1", "its access is 0: cuMemSetAccess"),
            ("copy-unmapped-half", "1", "is reserved VA that is not mapped"),
            ("free-while-mapped", "1", "cuMemAddressFree: VIOLATION:"),
            ("copy-after-unmap", "1", "is reserved VA that is not mapped"),
            ("map-released", "1", "was released (cuMemRelease) before this use"),
            ("export-not-requested", "1", "created without CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR"),
            ("double-release", "1", "cuMemRelease: VIOLATION: allocation handle"),
        ]
        for step, code, text in expected:
            assert rc[step] == code, (step, rc[step])
            assert any(text in line for line in log), (step, text, log)
        assert (rc["copy-after-access"], rc["release-while-mapped"], rc["copy-after-release"]) == ("0", "0", "0")
        assert len(log) == len(expected), log  # one line per broken rule, none for what is allowed
    finally:
        shutil.rmtree(directory, ignore_errors=True)
