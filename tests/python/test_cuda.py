"""CUDA from Python on a machine without CUDA: every CUDA method exists and raises CudaUnavailableError saying why,
and CPU buffers are unaffected. (With a GPU, tests/gpu/cuda_ipc_suite.py runs the real thing: scripts/gpu-test.sh.)"""

import ast
import os

import pytest

import xmem
from conftest import REPO_ROOT


def _cuda_available(pool):
    try:
        pool.acquire_cuda(1, 0).release()
        return True
    except xmem.CudaUnavailableError:
        return False


@pytest.fixture
def no_cuda(pool):
    if _cuda_available(pool):
        pytest.skip("CUDA is available here: the GPU suite (scripts/gpu-test.sh) covers it")
    return pool


def _raises_unavailable(fn, *args):
    with pytest.raises(xmem.CudaUnavailableError) as e:
        fn(*args)
    assert isinstance(e.value, xmem.XmemError) and e.value.status == xmem.Status.CUDA_UNAVAILABLE
    assert "CUDA is unavailable: " in str(e.value) and len(str(e.value)) > 40  # says why
    return e.value


def test_every_cuda_method_says_why_it_is_unavailable(no_cuda):
    pool = no_cuda
    _raises_unavailable(pool.acquire_cuda, 64)
    _raises_unavailable(pool.acquire_cuda, 64, 3)
    _raises_unavailable(pool.preallocate_cuda, 64, 2)
    with pool.acquire_cpu(64) as buf, pool.get(buf.meta_index) as ro:
        e = _raises_unavailable(lambda: buf.cuda_ptr)
        assert "CPU memory" in str(e)
        _raises_unavailable(lambda: buf.cuda_ptr_mut)
        _raises_unavailable(buf.record_writes_done)
        _raises_unavailable(buf.record_writes_done, 12345)
        _raises_unavailable(buf.wait_writes_done)
        _raises_unavailable(buf.synchronize_writes)
        _raises_unavailable(buf.copy_to_cuda)
        _raises_unavailable(buf.copy_to_cuda, 1)
        _raises_unavailable(buf.copy_to_device, 0)
        _raises_unavailable(lambda: ro.cuda_ptr)
        with pytest.raises(xmem.ReadOnlyError):
            ro.cuda_ptr_mut
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def test_cpu_features_are_unaffected(no_cuda):
    pool = no_cuda
    np = pytest.importorskip("numpy")
    with pytest.raises(xmem.CudaUnavailableError):
        pool.acquire_cuda(64)
    with pool.acquire_cpu(64, shape=(16,), dtype="float32") as buf:
        assert not buf.is_cuda and buf.device_id == -1 and buf.cpu_ptr != 0
        assert not hasattr(buf, "__cuda_array_interface__")
        assert buf.__dlpack_device__() == (1, 0)
        buf.numpy()[:] = 3
        with buf.copy_to_cpu() as c, buf.copy_to_device(-1) as d:  # CPU to CPU copies need no CUDA
            assert (c.numpy("float32") == 3).all() and (d.numpy("float32") == 3).all()
            assert c.meta_index != buf.meta_index and not c.is_read_only
        assert (np.from_dlpack(buf) == 3).all()
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def test_argument_errors_come_before_cuda(pool):
    with pytest.raises(ValueError):
        pool.acquire_cuda(0)
    with pytest.raises(ValueError):
        pool.acquire_cuda(64, -1)
    with pool.acquire_cpu(8) as buf:
        with pytest.raises(ValueError):
            buf.copy_to_device(-2)
        with pytest.raises(TypeError):
            buf.wait_writes_done("stream")
        with pytest.raises(xmem.GuardInvalidError):
            buf.release() or buf.synchronize_writes()


def test_get_waits_setting(pool):
    assert pool.cuda_get_waits_for_writes is True
    pool.cuda_get_waits_for_writes = False
    assert pool.cuda_get_waits_for_writes is False
    pool.cuda_get_waits_for_writes = True
    assert pool.cuda_get_waits_for_writes is True


def test_the_gpu_suite_calls_only_what_the_package_has():
    """tests/gpu/cuda_ipc_suite.py runs on GPU machines only: check here that every attribute it uses on pools and
    guards exists, so a renamed method cannot wait for a GPU to be noticed."""
    path = os.path.join(REPO_ROOT, "tests", "gpu", "cuda_ipc_suite.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    pool_names = {"acquire_cuda", "get", "get_mut", "ref_count", "release", "trim", "close", "open", "remove"}
    guard_names = {"cuda_ptr", "cuda_ptr_mut", "size", "meta_index", "forget", "release", "record_writes_done",
                   "copy_to_cpu", "copy_to_cuda", "copy_to_device", "memoryview"}
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for name in pool_names:
        assert name in used or name in ("open", "remove", "close"), name
        assert hasattr(xmem.BufferPool, name), name
    for name in guard_names:
        assert name in used, "the suite no longer uses %s; update this list" % name
        assert hasattr(xmem.BufferGuard, name), name


def test_the_gpu_suite_hands_pytorch_no_read_only_cuda_array_interface():
    """PyTorch refuses a __cuda_array_interface__ whose read-only flag is True ("the read only flag is not
    supported"): the suite reads get() guards through DLPack and calls torch.as_tensor only on writable guards."""
    path = os.path.join(REPO_ROOT, "tests", "gpu", "cuda_ipc_suite.py")
    tree = ast.parse(open(path, encoding="utf-8").read())

    def torch_as_tensor_calls(node):
        return [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                and n.func.attr == "as_tensor" and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch"]

    helper = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "as_tensor")
    writable_branch = [n for n in ast.walk(helper) if isinstance(n, ast.If) and isinstance(n.test, ast.Name)
                       and n.test.id == "writable"]
    allowed = {id(c) for b in writable_branch for stmt in b.body for c in torch_as_tensor_calls(stmt)}
    calls = torch_as_tensor_calls(tree)
    assert calls and all(id(c) in allowed for c in calls)
    assert any(isinstance(n, ast.Attribute) and n.attr == "from_dlpack" for n in ast.walk(helper))


def test_gpu_test_script_tells_a_missing_library_from_a_missing_gpu(tmp_path):
    """scripts/gpu-test.sh: 3 when libxmem.so is missing, 2 when there is no usable GPU, 4 when PyTorch or NumPy is."""
    import subprocess
    import sys
    script = os.path.join(REPO_ROOT, "scripts", "gpu-test.sh")
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("XMEM_LIBRARY", None)
    r = subprocess.run([script, str(tmp_path / "missing" / "libxmem.so")], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 3, r.stderr
    assert "scripts/build-native.sh" in r.stderr
    from xmem import _native
    r = subprocess.run([script, _native.library_path], capture_output=True, text=True, timeout=120, env=env)
    if r.returncode == 0:
        pytest.skip("this machine has a GPU and PyTorch with CUDA: the suite ran")
    assert r.returncode in (2, 4), (r.returncode, r.stderr)
    assert ("PyTorch" in r.stderr) if r.returncode == 4 else ("CUDA" in r.stderr or "GPU" in r.stderr)
