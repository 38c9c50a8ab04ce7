"""python/examples/consumer.py: the standalone consumer, and the protocol `xmem demo --python` speaks with it
(src/Xmem.Cli/Demo/DemoProtocol.cs, PythonConsumer.cs)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

import xmem
from conftest import REPO_ROOT

np = pytest.importorskip("numpy", reason="the example consumer needs numpy")

SCRIPT = os.path.join(REPO_ROOT, "python", "examples", "consumer.py")
TIMEOUT = 60


def _module():
    spec = importlib.util.spec_from_file_location("xmem_example_consumer", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _start(*args):
    return subprocess.Popen([sys.executable, "-u", SCRIPT] + list(args), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_standalone_consumer_prints_described_frames(pool):
    with pool.channel("frames", 4) as ch:
        p = _start(pool.name, "--channel", "frames", "--depth", "4", "--count", "3", "--timeout", "30")
        try:
            for n in range(3):
                buf = pool.acquire_cpu(shape=(4, 6), dtype="float32", seq=n, content_type="test/f32", timeout=10)
                buf.numpy()[:] = n
                ch.send(buf, timeout=30)
            out, err = p.communicate(timeout=TIMEOUT)
        finally:
            if p.poll() is None:  # pragma: no cover
                p.kill()
                p.wait()
    assert p.returncode == 0, err
    lines = out.splitlines()
    assert [ln.split()[:5] for ln in lines[:3]] == [["seq", str(n), "(4,", "6)", "float32"] for n in range(3)]
    assert lines[3].startswith("3 frames; handoff latency")


def test_demo_protocol_checks_frames_and_reports(pool):
    mod = _module()
    shape = (48, 64, 3)
    with pool.channel("frames", 4) as ch:
        p = _start("--demo", pool.name, "--channel", "frames", "--depth", "4")
        try:
            assert p.stdout.readline().strip() == "ready"
            for seq in range(3):
                buf = pool.acquire_cpu(shape=shape, dtype="uint8", seq=seq, content_type="image/rgb8", timeout=10)
                flat = buf.numpy().reshape(-1)
                # The pattern, computed the way FramePattern.Fill writes it: word j = seed(seq) + j * step.
                words = (flat.size + 7) // 8
                with np.errstate(over="ignore"):
                    expected = (np.arange(words, dtype=np.uint64) * np.uint64(mod._STEP) + np.uint64(mod._seed(seq)))
                flat[:] = expected.astype("<u8").view(np.uint8)[:flat.size]
                if seq == 2:
                    flat[1000] ^= 0xFF  # one bad byte: reported with its offset
                ch.send(buf, timeout=30)
            ch.send(pool.acquire_cpu(1, content_type="application/x-xmem-end"), timeout=30)
            line = p.stdout.readline()
            p.stdin.close()
            assert p.wait(TIMEOUT) == 1  # a mismatch was found
        finally:
            if p.poll() is None:  # pragma: no cover
                p.kill()
                p.wait()
    assert line.startswith("result ")
    report = json.loads(line[len("result "):])
    assert report["runtime"] == "python" and report["view"] == "numpy (48, 64, 3) uint8"
    assert report["seqs"] == [0, 1, 2] and report["mismatchSeq"] == 2 and report["mismatchOffset"] == 1000
    assert report["bytesChecked"] == 2 * 48 * 64 * 3 and report["error"] is None
    assert len(report["latencyNs"]) == 3 and len(report["doneNs"]) == 3


def test_demo_consumer_stops_when_stdin_closes(pool):
    with pool.channel("frames", 4):
        p = _start("--demo", pool.name, "--channel", "frames", "--depth", "4")
        try:
            assert p.stdout.readline().strip() == "ready"
            p.stdin.close()  # the producer died
            assert p.wait(TIMEOUT) == 1
            assert p.stdout.read() == ""
        finally:
            if p.poll() is None:  # pragma: no cover
                p.kill()
                p.wait()
