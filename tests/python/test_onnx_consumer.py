"""examples/OnnxConsumer (C#, ONNX Runtime): a consumer process receives frames from a channel and runs an ONNX model
on each with the model's input an OrtValue over the buffer's shared memory. The model is made here at test time
(torch.onnx.export of python/examples/torch_consumer.py's fixed-seed model), the frames are sent from this process,
and the consumer's outputs are checked against the same model run here on copies of the frames."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

np = pytest.importorskip("numpy", reason="the test makes its frames with numpy")
torch = pytest.importorskip("torch", reason="the test makes the ONNX model with torch.onnx.export")

TIMEOUT = 120
SHAPE = (3, 12, 16)
FRAMES = 4


def locate_consumer():
    """The built example: $XMEM_ONNX_CONSUMER_DLL (set by scripts/test-python.sh, which builds it), else the
    Release build in the source tree."""
    env = os.environ.get("XMEM_ONNX_CONSUMER_DLL")
    if env:
        assert os.path.isfile(env), "XMEM_ONNX_CONSUMER_DLL=%s does not exist: build examples/OnnxConsumer" % env
        return env
    p = os.path.join(REPO_ROOT, "examples", "OnnxConsumer", "bin", "Release", "net10.0", "linux-x64", "OnnxConsumer.dll")
    if not os.path.isfile(p):
        pytest.skip("examples/OnnxConsumer is not built (dotnet build examples/OnnxConsumer -c Release; "
                    "scripts/test-python.sh does it)")
    return p


def make_model():
    path = os.path.join(REPO_ROOT, "python", "examples", "torch_consumer.py")
    spec = importlib.util.spec_from_file_location("xmem_example_torch_consumer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_model()


def test_onnx_consumer_runs_the_model_over_shared_memory_and_matches_the_model_on_copies(pool, tmp_path):
    dll = locate_consumer()
    model = make_model()
    onnx_path = str(tmp_path / "tiny.onnx")
    torch.onnx.export(model, torch.zeros((1,) + SHAPE), onnx_path, input_names=["input"], output_names=["output"])
    rng = np.random.default_rng(3)
    frames = [rng.random(SHAPE, dtype=np.float32) for _ in range(FRAMES)]
    p = subprocess.Popen(["dotnet", dll, pool.name, "frames", "4", onnx_path, str(FRAMES)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with pool.channel("frames", 4) as ch:
            assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.poll() is not None else ""
            for seq, frame in enumerate(frames):
                buf = pool.acquire_cpu(shape=SHAPE, dtype="float32", seq=seq, content_type="test/chw", timeout=30)
                buf.numpy()[...] = frame
                ch.send(buf, timeout=30)
            out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:  # pragma: no cover
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [ln["seq"] for ln in lines] == list(range(FRAMES))
    assert all(ln["zeroCopy"] for ln in lines), "the OrtValue did not read the buffer's own memory"
    with torch.inference_mode():
        expected = [model(torch.from_numpy(f.copy()).unsqueeze(0))[0].tolist() for f in frames]
    for ln, want in zip(lines, expected):
        assert np.allclose(ln["output"], want, rtol=1e-4, atol=1e-5), (ln["output"], want)
    assert len({tuple(np.round(ln["output"], 4)) for ln in lines}) == FRAMES  # each frame its own output
    assert all(pool.ref_count(i) == 0 for i in range(pool.capacity))  # every guard went with its OrtValue
