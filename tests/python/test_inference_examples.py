"""python/examples/torch_consumer.py and numpy_consumer.py: real consumer processes run a model (or NumPy statistics)
on described frames sent from this process, without copying them, and their outputs match the same computation run
here on copies of the frames."""

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT

np = pytest.importorskip("numpy", reason="the examples need numpy")

EXAMPLES = os.path.join(REPO_ROOT, "python", "examples")
TIMEOUT = 90


def _module(name):
    spec = importlib.util.spec_from_file_location("xmem_example_" + name, os.path.join(EXAMPLES, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_consumer(name, pool, frames, shape, dtype):
    """Starts the example as a process, sends `frames` (arrays) described as `shape`/`dtype`, returns its JSON lines."""
    p = subprocess.Popen([sys.executable, "-u", os.path.join(EXAMPLES, name + ".py"), pool.name, "--channel", "frames",
                          "--depth", "4", "--count", str(len(frames)), "--timeout", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with pool.channel("frames", 4) as ch:
            assert p.stdout.readline().strip() == "ready"
            for seq, frame in enumerate(frames):
                buf = pool.acquire_cpu(shape=shape, dtype=dtype, seq=seq, content_type="test/frame", timeout=30)
                buf.numpy()[...] = frame
                ch.send(buf, timeout=30)
                time.sleep(0.05)  # the consumer waits for each frame
            out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:  # pragma: no cover
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_torch_consumer_runs_the_model_on_shared_memory_and_matches_a_copy(pool):
    torch = pytest.importorskip("torch", reason="the PyTorch example needs torch")
    rng = np.random.default_rng(7)
    frames = [rng.random((3, 12, 16), dtype=np.float32) for _ in range(4)]
    lines = _run_consumer("torch_consumer", pool, frames, (3, 12, 16), "float32")
    assert [ln["seq"] for ln in lines] == [0, 1, 2, 3]
    assert all(ln["zero_copy"] for ln in lines)
    model = _module("torch_consumer").make_model()
    with torch.inference_mode():
        expected = [model(torch.from_numpy(f.copy()).unsqueeze(0))[0].tolist() for f in frames]
    for ln, want in zip(lines, expected):
        assert np.allclose(ln["output"], want, rtol=1e-5, atol=1e-6), (ln["output"], want)
    assert len({tuple(np.round(ln["output"], 4)) for ln in lines}) == 4  # different frames, different outputs
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))


def test_numpy_consumer_computes_on_shared_memory_from_asyncio_and_matches_a_copy(pool):
    rng = np.random.default_rng(11)
    frames = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(5)]
    lines = _run_consumer("numpy_consumer", pool, frames, (24, 32, 3), "uint8")
    stats, ticks = lines[:-1], lines[-1]
    assert [ln["seq"] for ln in stats] == list(range(5))
    assert all(ln["zero_copy"] and ln["shape"] == [24, 32, 3] for ln in stats)
    frame_stats = _module("numpy_consumer").frame_stats
    for ln, f in zip(stats, frames):
        want = frame_stats(f.copy())
        assert ln["mean"] == pytest.approx(want["mean"]) and ln["max"] == want["max"]
    assert ticks["ticks"] > 0  # the event loop ran while the consumer waited
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))
