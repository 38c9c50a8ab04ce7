"""The GStreamer elements xmemsink and xmemsrc (artifacts/gstreamer/libgstxmem.so, built by scripts/build-native.sh),
run in real gst-launch-1.0 processes against xmem producers and consumers in this process (docs/gstreamer.md).

Run once, with the compiled implementation (the Python side only feeds and checks; what is tested is the plugin).
Every wait has a timeout (a receive, a process) and the conftest watchdog ends a hung test.
"""

import os
import re
import shlex
import signal
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import xmem
from conftest import REPO_ROOT

PLUGIN_DIR = os.path.join(REPO_ROOT, "artifacts", "gstreamer")
STATE_CYCLES = os.path.join(REPO_ROOT, "artifacts", "gstreamer-tests", "state_cycles")
GST_LAUNCH = shutil.which("gst-launch-1.0")

pytestmark = [
    pytest.mark.skipif(GST_LAUNCH is None, reason="gst-launch-1.0 is not installed (scripts/install-deps.sh)"),
    pytest.mark.skipif(os.environ.get("XMEM_IMPLEMENTATION") == "ctypes",
                       reason="the GStreamer tests run once, with the compiled implementation"),
]

WAIT_S = 30  # watchdog of each receive and process wait (never a timing assertion)
TRAILER = struct.Struct("<IIIIQQ")
TRAILER_MAGIC = 0x54534758
TRAILER_PTS, TRAILER_DURATION, TRAILER_ZERO_COPY = 1, 2, 4
EOS_CONTENT_TYPE = "application/x-xmem-end"


@pytest.fixture(scope="session")
def gst_env(tmp_path_factory):
    if not os.path.isfile(os.path.join(PLUGIN_DIR, "libgstxmem.so")):
        pytest.fail("artifacts/gstreamer/libgstxmem.so is missing: run scripts/build-native.sh", pytrace=False)
    env = dict(os.environ)
    env["GST_PLUGIN_PATH"] = PLUGIN_DIR
    # A registry of this run's own, so that a stale cache elsewhere cannot hide the plugin just built.
    env["GST_REGISTRY"] = str(tmp_path_factory.mktemp("gst") / "registry.bin")
    env["GST_DEBUG_NO_COLOR"] = "1"
    return env


def launch(env, pipeline, *, verbose=True, extra_env=None, line_buffered=False):
    """A gst-launch-1.0 process running `pipeline` (stdout and stderr together, as text). line_buffered: its stdout
    is flushed at every line (stdbuf), for a test that reads it while the process runs."""
    args = [GST_LAUNCH] + (["-v"] if verbose else []) + shlex.split(pipeline)
    if line_buffered:
        args = [shutil.which("stdbuf") or pytest.fail("stdbuf (coreutils) is missing"), "-oL"] + args
    e = dict(env, **(extra_env or {}))
    return subprocess.Popen(args, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, expect_ok=True):
    out, _ = proc.communicate(timeout=WAIT_S)
    if expect_ok:
        assert proc.returncode == 0, out[-4000:]
    return out


def run(env, pipeline, expect_ok=True):
    return finish(launch(env, pipeline), expect_ok)


def counter(out, name):
    found = re.findall(r"GstXmemSink:xmemsink0: %s = (\d+)" % name, out)
    assert found, "no %s in the gst-launch output:\n%s" % (name, out[-3000:])
    return int(found[-1])


def trailer_of(buf):
    magic, flags, buffer_flags, _, pts, duration = TRAILER.unpack(bytes(buf.memoryview()[-TRAILER.size:]))
    assert magic == TRAILER_MAGIC
    return flags, buffer_flags, pts, duration


def ru(x, n):
    return (x + n - 1) // n * n


# Formats: (channels or None for bytes, numpy dtype) and GStreamer's default layout (docs/gstreamer.md).
PACKED = {"RGB": 3, "BGR": 3, "RGBA": 4, "BGRA": 4, "RGBx": 4, "BGRx": 4, "GRAY8": 1, "GRAY16_LE": 1}
FORMATS = list(PACKED) + ["I420", "NV12"]
W, H, N = 321, 17, 3  # an odd width: rows are padded to 4 bytes, chroma planes round up


def frame_size(fmt, w=W, h=H):
    if fmt in PACKED:
        item = 2 if fmt == "GRAY16_LE" else 1
        return ru(w * PACKED[fmt] * item, 4) * h
    y = ru(w, 4) * ru(h, 2)
    if fmt == "I420":
        return y + 2 * ru(ru(w, 2) // 2, 4) * (ru(h, 2) // 2)
    if fmt == "NV12":
        return y + ru(w, 4) * (ru(h, 2) // 2)
    raise AssertionError(fmt)


def planes(fmt, data, w=W, h=H):
    """The pixel bytes of each plane of a planar frame in GStreamer's default layout, without row padding."""
    ys, ch_h, ch_w = ru(w, 4), ru(h, 2) // 2, ru(w, 2) // 2
    a = np.frombuffer(data, np.uint8)
    y = a[:ys * h].reshape(h, ys)[:, :w]
    off = ys * ru(h, 2)
    if fmt == "I420":
        cs = ru(ch_w, 4)
        u = a[off:off + cs * ch_h].reshape(ch_h, cs)[:, :ch_w]
        v = a[off + cs * ch_h:off + 2 * cs * ch_h].reshape(ch_h, cs)[:, :ch_w]
        return [y, u, v]
    uv = a[off:off + ys * ch_h].reshape(ch_h, ys)[:, :2 * ch_w]
    return [y, uv]


def pts_of(i, fps=30):
    return i * 1_000_000_000 // fps


SOURCE = "videotestsrc num-buffers=%d pattern=smpte horizontal-speed=13 ! video/x-raw,format=%s,width=%d,height=%d,framerate=30/1"


@pytest.fixture(scope="module")
def reference_frames(gst_env, tmp_path_factory):
    """What videotestsrc makes of each format, written by filesink: N frames in GStreamer's default layout."""
    cache = {}

    def get(fmt):
        if fmt not in cache:
            path = tmp_path_factory.mktemp("ref") / ("%s.raw" % fmt)
            run(gst_env, (SOURCE % (N, fmt, W, H)) + " ! filesink location=%s" % path)
            data = path.read_bytes()
            size = frame_size(fmt)
            assert len(data) == N * size, "the default layout of %s is not what docs/gstreamer.md says" % fmt
            frames = [data[i * size:(i + 1) * size] for i in range(N)]
            assert len(set(frames)) == N, "the reference frames should differ (horizontal-speed)"
            cache[fmt] = frames
        return cache[fmt]

    return get


def receive_frames(ch, n, proc=None):
    """n buffers from the channel; fails early when the gst-launch process `proc` ended without sending them."""
    frames = []
    deadline = time.monotonic() + WAIT_S
    while len(frames) < n:
        buf = ch.try_recv(timeout=0.2)
        if buf is not None:
            frames.append(buf)
            continue
        if proc is not None and proc.poll() is not None and len(ch) == 0:
            pytest.fail("gst-launch ended after %d of %d buffers:\n%s" % (len(frames), n, proc.stdout.read()[-3000:]))
        assert time.monotonic() < deadline, "received %d of %d buffers" % (len(frames), n)
    return frames


@pytest.mark.parametrize("path", ["zero-copy", "copy"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_xmemsink_describes_each_format_with_shape_strides_and_bytes(gst_env, unique_name, reference_frames, fmt,
                                                                   path):
    ref = reference_frames(fmt)
    name = unique_name("gst")
    # copy: identity drops the allocation query, so videotestsrc writes into its own memory and xmemsink copies.
    middle = " ! identity drop-allocation=true" if path == "copy" else ""
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=8) as ch:
        proc = launch(gst_env, (SOURCE % (N, fmt, W, H)) + middle + " ! xmemsink sync=false pool=" + name)
        t0 = time.monotonic_ns()
        got = receive_frames(ch, N + 1, proc)
        out = finish(proc)
        for i, buf in enumerate(got[:N]):
            with buf:
                assert buf.content_type == "video/%s;w=%d;h=%d" % (fmt, W, H)
                assert buf.seq == i + 1
                assert buf.timestamp_ns >= t0 - 60_000_000_000
                if fmt in PACKED:
                    c = PACKED[fmt]
                    item = 2 if fmt == "GRAY16_LE" else 1
                    stride = ru(W * c * item, 4)
                    assert buf.dtype == ("uint16" if item == 2 else "uint8")
                    if c == 1:
                        assert buf.shape == (H, W) and buf.strides == (stride, item)
                    else:
                        assert buf.shape == (H, W, c) and buf.strides == (stride, c, 1)
                    expect = np.frombuffer(ref[i], np.uint8).reshape(H, stride)[:, :W * c * item]
                    expect = expect.copy().view(buf.dtype).reshape(buf.shape)
                    assert np.array_equal(buf.numpy(), expect)
                else:
                    assert buf.dtype == "uint8" and buf.shape == (frame_size(fmt),) and buf.strides == (1,)
                    got_planes = planes(fmt, bytes(buf.memoryview()[:frame_size(fmt)]))
                    for p, q in zip(got_planes, planes(fmt, ref[i])):
                        assert np.array_equal(p, q)
                flags, _, pts, duration = trailer_of(buf)
                assert flags & TRAILER_PTS and pts == pts_of(i)
                assert flags & TRAILER_DURATION and duration == pts_of(i + 1) - pts_of(i)
                assert bool(flags & TRAILER_ZERO_COPY) == (path == "zero-copy")
        with got[N] as eos:
            assert eos.content_type == EOS_CONTENT_TYPE and eos.seq == N + 1 and eos.shape == (1,)
        if path == "zero-copy":
            assert counter(out, "frames-zero-copy") == N and counter(out, "frames-copied") == 0
        else:
            assert counter(out, "frames-zero-copy") == 0 and counter(out, "frames-copied") == N


@pytest.mark.parametrize("middle", [
    "video/x-raw,format=I420,width=64,height=48 ! videoconvert ! video/x-raw,format=RGB",
    "video/x-raw,format=RGB,width=64,height=48 ! videoscale ! video/x-raw,width=32,height=24",
    "video/x-raw,width=64,height=48 ! jpegenc ! jpegdec",
])
def test_upstream_elements_write_straight_into_xmem_buffers(gst_env, unique_name, middle):
    name = unique_name("gst")
    with xmem.BufferPool(name, 32) as pool, pool.channel("frames", depth=8) as ch:
        proc = launch(gst_env, "videotestsrc num-buffers=%d ! %s ! xmemsink sync=false pool=%s" % (N, middle, name))
        got = receive_frames(ch, N + 1, proc)
        out = finish(proc)
        for b in got[:N]:
            with b:
                assert trailer_of(b)[0] & TRAILER_ZERO_COPY
        got[N].release()
    assert counter(out, "frames-zero-copy") == N and counter(out, "frames-copied") == 0


def test_xmemsink_fanout_gives_every_subscriber_every_frame(gst_env, unique_name):
    name = unique_name("gst")
    with xmem.BufferPool(name, 32) as pool, pool.channel("live", depth=4, mode="fanout") as ch:
        subs = [ch.subscribe(), ch.subscribe()]
        proc = launch(gst_env, (SOURCE % (N, "RGB", W, H)) + " ! xmemsink sync=false channel=live depth=4 mode=fanout "
                               "pool=" + name)
        got = [receive_frames(s, N + 1, proc) for s in subs]
        finish(proc)
        for frames in got:
            assert [b.seq for b in frames] == list(range(1, N + 2))
            assert all(b.shape == (H, W, 3) for b in frames[:N]) and frames[N].content_type == EOS_CONTENT_TYPE
        # Both subscribers hold references to the same slots: one frame, no copy per subscriber.
        assert [b.meta_index for b in got[0]] == [b.meta_index for b in got[1]]
        for frames in got:
            for b in frames:
                b.release()
        for s in subs:
            s.close()


def test_xmemsink_sends_other_caps_as_bytes_named_by_media_type(gst_env, unique_name, tmp_path):
    src = "audiotestsrc num-buffers=3 samplesperbuffer=100 wave=saw ! audio/x-raw,format=S16LE,rate=8000,channels=1"
    ref_path = tmp_path / "ref.raw"
    run(gst_env, src + " ! filesink location=%s" % ref_path)
    ref = ref_path.read_bytes()
    assert len(ref) == 600
    name = unique_name("gst")
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=8) as ch:
        proc = launch(gst_env, src + " ! xmemsink sync=false pool=" + name)
        got = receive_frames(ch, 4, proc)
        finish(proc)
        data = b""
        for buf in got[:3]:
            with buf:
                assert buf.content_type == "audio/x-raw" and buf.dtype == "uint8" and buf.shape == (200,)
                data += bytes(buf.numpy())
        assert data == ref
        assert got[3].content_type == EOS_CONTENT_TYPE
        got[3].release()


@pytest.mark.parametrize("caps,message", [
    ("application/x-this-media-type-is-longer-than-31-bytes", "longer than the 31 bytes"),
    ("video/x-raw(memory:DMABuf),format=RGB,width=4,height=4,framerate=1/1", "memory features (memory:DMABuf)"),
])
def test_xmemsink_refuses_caps_a_description_cannot_express(gst_env, unique_name, caps, message):
    name = unique_name("gst")
    with xmem.BufferPool(name, 4):
        # A live source: gst-launch-1.0 1.22 can stay waiting after an error during a non-live preroll that
        # completes on EOS afterwards (seen here in about 1 run in 3; not understood yet); a live pipeline does not
        # preroll.
        out = run(gst_env, "fakesrc is-live=true num-buffers=1 sizetype=fixed sizemax=48 ! capsfilter caps=%s ! "
                           "xmemsink pool=%s" % (shlex.quote(caps), name), expect_ok=False)
    assert message in out and "ERROR" in out, out[-3000:]


def test_xmemsink_blocks_while_the_channel_is_full_and_loses_nothing(gst_env, unique_name):
    name = unique_name("gst")
    frames = 12
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=2) as ch:
        proc = launch(gst_env, (SOURCE % (frames, "GRAY8", 64, 8)) + " ! xmemsink sync=false depth=2 pool=" + name)
        deadline = time.monotonic() + WAIT_S
        while len(ch) < 2:
            assert time.monotonic() < deadline, "the channel never filled"
            time.sleep(0.01)
        # Full: the sink can only be waiting (it must send 12 frames and the end marker through 2 places).
        assert proc.poll() is None
        seqs = [b.seq for b in receive_frames(ch, frames + 1, proc)]
        out = finish(proc)
        assert seqs == list(range(1, frames + 2))
        assert counter(out, "frames-dropped") == 0
        assert counter(out, "frames-zero-copy") + counter(out, "frames-copied") == frames


def test_xmemsink_leaky_drops_frames_when_the_channel_is_full(gst_env, unique_name):
    name = unique_name("gst")
    frames = 20
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=2) as ch:
        proc = launch(gst_env, (SOURCE % (frames, "GRAY8", 64, 8)) + " ! xmemsink sync=false leaky=true depth=2 pool="
                      + name, line_buffered=True)
        # The counters are reported before the end marker, which waits for room (it is never dropped).
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "frames-dropped" in line:
                break
        dropped = counter("".join(lines), "frames-dropped")
        got = receive_frames(ch, 3, proc)
        out = finish(proc)
        assert dropped == frames - 2
        assert [b.seq for b in got[:2]] == [1, 2]
        assert got[2].content_type == EOS_CONTENT_TYPE and got[2].seq == frames + 1
        for b in got:
            b.release()
        assert "ERROR" not in out


def _send_rgb(pool, ch, frame, seq, content_type="image/rgb8"):
    buf = pool.acquire_cpu(shape=frame.shape, dtype=frame.dtype, seq=seq, content_type=content_type, timeout=WAIT_S)
    buf.numpy()[:] = frame
    ch.send(buf, timeout=WAIT_S)


def _send_eos(pool, ch):
    buf = pool.acquire_cpu(1, timeout=WAIT_S)
    buf.set_description(content_type=EOS_CONTENT_TYPE)
    ch.send(buf, timeout=WAIT_S)


@pytest.mark.parametrize("src_props", ["", "spin-us=200"])
def test_xmemsrc_turns_python_frames_into_video_with_caps_from_the_description(gst_env, unique_name, tmp_path,
                                                                               src_props):
    name = unique_name("gst")
    rng = np.random.default_rng(11)
    frames = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(3)]
    out_path = tmp_path / "out.raw"
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=8) as ch:
        for i, f in enumerate(frames):
            _send_rgb(pool, ch, f, i + 1)
        _send_eos(pool, ch)
        # videoconvert reads the rows through the video meta (stride 21, not GStreamer's 24).
        out = run(gst_env, "xmemsrc pool=%s %s ! videoconvert ! video/x-raw,format=BGR ! filesink location=%s"
                  % (name, src_props, out_path))
        assert "video/x-raw, format=(string)RGB, width=(int)7, height=(int)5" in out, out[-3000:]
        data = out_path.read_bytes()
        stride = ru(7 * 3, 4)
        expect = b""
        for f in frames:
            rows = np.zeros((5, stride), np.uint8)
            rows[:, :21] = f[:, :, ::-1].reshape(5, 21)
            expect += rows.tobytes()
        assert data == expect
        assert len(ch) == 0


def test_xmemsrc_lists_spin_us(gst_env):
    """spin-us sets the channel's spin (xmem_channel_set_spin); the test above runs with it too."""
    inspect = subprocess.run(["gst-inspect-1.0", "xmemsrc"], env=gst_env, capture_output=True, text=True, timeout=60)
    assert "spin-us" in inspect.stdout, inspect.stdout[-2000:]


def test_xmemsrc_renegotiates_when_the_description_changes(gst_env, unique_name, tmp_path):
    name = unique_name("gst")
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    gray = (np.arange(4 * 6, dtype=np.uint16) * 1000).reshape(4, 6)
    out_path = tmp_path / "out.raw"
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=8) as ch:
        _send_rgb(pool, ch, rgb, 1)
        _send_rgb(pool, ch, gray, 2, content_type="image/gray16")
        _send_rgb(pool, ch, rgb, 3)
        _send_eos(pool, ch)
        out = run(gst_env, "xmemsrc pool=%s ! filesink location=%s" % (name, out_path))
    caps = re.findall(r"xmemsrc0.GstPad:src: caps = (.*)", out)
    assert len(caps) == 3, out[-3000:]
    assert "format=(string)RGB, width=(int)7, height=(int)5" in caps[0]
    assert "format=(string)GRAY16_LE, width=(int)6, height=(int)4" in caps[1]
    assert caps[2] == caps[0]
    # filesink takes no GstVideoMeta: it gets frames in GStreamer's default layout. The 7-pixel RGB rows (21 bytes,
    # not the default 24) are copied into it; the 6-pixel GRAY16 rows (12 bytes) are already, and go uncopied.
    padded = np.zeros((5, 24), np.uint8)
    padded[:, :21] = rgb.reshape(5, 21)
    assert out_path.read_bytes() == padded.tobytes() + gray.tobytes() + padded.tobytes()


def test_xmemsink_follows_caps_changes_mid_stream(gst_env, unique_name):
    name = unique_name("gst")
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    gray = (np.arange(4 * 6, dtype=np.uint16) * 1000).reshape(4, 6)
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=8) as ch, \
            pool.channel("out", depth=8) as out:
        _send_rgb(pool, ch, rgb, 1)
        _send_rgb(pool, ch, gray, 2, content_type="image/gray16")
        _send_rgb(pool, ch, rgb, 3)
        _send_eos(pool, ch)
        # xmemsrc renegotiates at each change; xmemsink describes each buffer by the caps it came with.
        proc = launch(gst_env, "xmemsrc pool=%s ! xmemsink sync=false channel=out pool=%s" % (name, name))
        got = receive_frames(out, 4, proc)
        finish(proc)
        assert [b.content_type for b in got] == ["video/RGB;w=7;h=5", "video/GRAY16_LE;w=6;h=4", "video/RGB;w=7;h=5",
                                                 EOS_CONTENT_TYPE]
        assert np.array_equal(got[0].numpy(), rgb) and got[0].strides == (24, 3, 1)
        assert np.array_equal(got[1].numpy(), gray) and got[1].dtype == "uint16"
        assert np.array_equal(got[2].numpy(), rgb)
        for b in got:
            b.release()


def test_xmemsink_to_xmemsrc_keeps_pts_duration_and_caps(gst_env, unique_name, tmp_path):
    name = unique_name("gst")
    ref_path, out_path = tmp_path / "ref.raw", tmp_path / "out.raw"
    run(gst_env, (SOURCE % (5, "I420", 64, 48)) + " ! filesink location=%s" % ref_path)
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=8):
        sink = launch(gst_env, (SOURCE % (5, "I420", 64, 48)) + " ! xmemsink sync=false pool=" + name)
        out = run(gst_env, "xmemsrc pool=%s ! identity silent=false ! filesink location=%s" % (name, out_path))
        finish(sink)
    got, ref = out_path.read_bytes(), ref_path.read_bytes()
    size = frame_size("I420", 64, 48)
    assert len(got) == len(ref) == 5 * size
    for i in range(5):
        for p, q in zip(planes("I420", got[i * size:(i + 1) * size], 64, 48), planes("I420", ref[i * size:(i + 1) * size], 64, 48)):
            assert np.array_equal(p, q)
    assert "format=(string)I420, width=(int)64, height=(int)48" in out
    pts = [int(m) for m in re.findall(r"pts: 0:00:00\.(\d+)", out)]
    assert pts == [pts_of(i) for i in range(5)], out[-3000:]


def test_xmemsrc_holds_the_reference_until_gstreamer_frees_the_buffer(gst_env, unique_name):
    name = unique_name("gst")
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=8) as ch:
        buf = pool.acquire_cpu(shape=(4, 4), dtype="uint8", seq=1, content_type="image/gray8")
        index = buf.meta_index
        # No trailer: xmemsrc stamps it with the running time, and a sink syncing on a clock far in the future holds
        # it: ts-offset puts it an hour ahead.
        ch.send(buf)
        proc = launch(gst_env, "xmemsrc pool=%s ! fakesink sync=true ts-offset=3600000000000" % name)
        deadline = time.monotonic() + WAIT_S
        while len(ch) > 0:
            assert time.monotonic() < deadline, "xmemsrc never received the buffer"
            time.sleep(0.01)
        # Received: the channel's reference is now the GstBuffer's, held while fakesink waits.
        assert pool.ref_count(index) == 1
        proc.send_signal(signal.SIGINT)  # gst-launch stops the pipeline: the buffer is freed
        finish(proc, expect_ok=False)
        assert pool.ref_count(index) == 0


def test_killed_gst_launch_leaves_nothing_held(gst_env, unique_name):
    name = unique_name("gst")
    capacity = 8
    with xmem.BufferPool(name, capacity) as pool, pool.channel("frames", depth=2) as ch:
        # Zero-copy: videotestsrc holds pool buffers, the sink blocks on the full channel.
        proc = launch(gst_env, (SOURCE % (1000, "RGB", 32, 8)) + " ! xmemsink sync=false depth=2 pool=" + name)
        deadline = time.monotonic() + WAIT_S
        while len(ch) < 2:
            assert time.monotonic() < deadline, "the channel never filled"
            time.sleep(0.01)
        proc.kill()
        proc.communicate(timeout=WAIT_S)
        # What was sent is intact and received; what the dead process held comes back: every slot can be taken.
        got = [ch.recv(timeout=WAIT_S) for _ in range(2)]
        assert [b.seq for b in got] == [1, 2] and all(b.shape == (8, 32, 3) for b in got)
        for b in got:
            b.release()
        held = [pool.acquire_cpu(64, timeout=WAIT_S) for _ in range(capacity)]
        for b in held:
            b.release()


def state_cycles(env, pipeline, element, prop, target, cycles):
    """gstreamer/tests/state_cycles: PLAYING until element.prop grew by target, then NULL, `cycles` times."""
    assert os.path.isfile(STATE_CYCLES), "run scripts/build-native.sh (gstreamer/build.sh builds the driver)"
    return subprocess.Popen([STATE_CYCLES, pipeline, element, prop, str(target), str(cycles)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def drain(ch, until):
    """Receives (and releases) buffers until until() is true and the channel is empty; their seq numbers."""
    seqs = []
    deadline = time.monotonic() + WAIT_S * 2
    while True:
        buf = ch.try_recv(timeout=0.05)
        if buf is None:
            if until():
                return seqs
            assert time.monotonic() < deadline
            continue
        with buf:
            seqs.append(buf.seq)


def test_xmemsink_survives_playing_null_playing(gst_env, unique_name):
    name = unique_name("gst")
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=8) as ch:
        proc = state_cycles(gst_env, "videotestsrc ! video/x-raw,format=GRAY8,width=64,height=8 ! "
                                     "xmemsink name=sink sync=false pool=" + name, "sink", "frames-zero-copy", 5, 3)
        seqs = drain(ch, lambda: proc.poll() is not None)
        out = finish(proc)
        assert out.split() == ["cycle", "1", "cycle", "2", "cycle", "3"]
        # Each start numbers from 1 again: three runs, each 1, 2, 3, ... without a gap.
        runs = [i for i, s in enumerate(seqs) if s == 1]
        assert len(runs) == 3 and runs[0] == 0
        for a, b in zip(runs, runs[1:] + [len(seqs)]):
            assert seqs[a:b] == list(range(1, b - a + 1)) and b - a >= 5


def test_xmemsink_blocked_on_a_full_channel_stops_on_null(gst_env, unique_name):
    name = unique_name("gst")
    capacity = 16
    with xmem.BufferPool(name, capacity) as pool, pool.channel("frames", depth=2) as ch:
        # Two frames fill the channel; the third blocks the streaming thread until the NULL transition unlocks it.
        proc = state_cycles(gst_env, "videotestsrc ! video/x-raw,format=GRAY8,width=64,height=8 ! "
                                     "xmemsink name=sink sync=false depth=2 pool=" + name,
                            "sink", "frames-zero-copy", 2, 1)
        out = finish(proc)
        assert out.split() == ["cycle", "1"]
        assert [b.seq for b in receive_frames(ch, 2)] == [1, 2]
        held = [pool.acquire_cpu(64, timeout=WAIT_S) for _ in range(capacity)]
        for b in held:
            b.release()


def test_xmemsrc_survives_playing_null_playing(gst_env, unique_name):
    import threading
    name = unique_name("gst")
    capacity = 16
    stop = threading.Event()
    with xmem.BufferPool(name, capacity) as pool, pool.channel("frames", depth=4) as ch:
        def produce():
            seq = 0
            while not stop.is_set():
                buf = pool.acquire_cpu(shape=(8, 8), dtype="uint8", seq=seq, content_type="image/gray8", timeout=WAIT_S)
                seq += 1
                if not ch.try_send(buf, timeout=0.05):
                    buf.release()
        t = threading.Thread(target=produce)
        t.start()
        try:
            proc = state_cycles(gst_env, "xmemsrc name=src pool=%s depth=4 ! fakesink sync=false" % name,
                                "src", "frames-received", 5, 3)
            out = finish(proc)
        finally:
            stop.set()
            t.join(WAIT_S)
        assert out.split() == ["cycle", "1", "cycle", "2", "cycle", "3"]
        drain(ch, lambda: True)
        # Every buffer xmemsrc received was released when GStreamer freed it: all slots can be taken.
        held = [pool.acquire_cpu(64, timeout=WAIT_S) for _ in range(capacity)]
        for b in held:
            b.release()


def test_xmemsrc_refuses_a_description_that_does_not_fit_its_content_type(gst_env, unique_name):
    name = unique_name("gst")
    with xmem.BufferPool(name, 4) as pool, pool.channel("frames", depth=8) as ch:
        # Says 100x100 RGB, holds 4x4: xmemsrc must not believe the content type (that would read past the buffer).
        _send_rgb(pool, ch, np.zeros((4, 4, 3), np.uint8), 1, content_type="video/RGB;w=100;h=100")
        out = run(gst_env, "xmemsrc pool=%s ! fakesink" % name, expect_ok=False)
    assert "does not fit its content type" in out and "height and width" in out, out[-3000:]


def test_xmemsrc_reports_caps_downstream_refuses(gst_env, unique_name):
    name = unique_name("gst")
    with xmem.BufferPool(name, 4) as pool, pool.channel("frames", depth=8) as ch:
        _send_rgb(pool, ch, np.zeros((4, 4, 3), np.uint8), 1)
        out = run(gst_env, "xmemsrc pool=%s ! video/x-raw,format=BGR ! fakesink" % name, expect_ok=False)
    assert "downstream refused the caps of the received buffers: video/x-raw, format=(string)RGB" in out, out[-3000:]


def test_killed_xmemsrc_leaves_nothing_held(gst_env, unique_name):
    name = unique_name("gst")
    capacity = 8
    with xmem.BufferPool(name, capacity) as pool, pool.channel("frames", depth=4) as ch:
        for i in range(3):
            _send_rgb(pool, ch, np.full((4, 4, 3), i, np.uint8), i + 1)
        # The sink waits an hour for the first buffer: xmemsrc holds it (and the queue the others).
        proc = launch(gst_env, "xmemsrc pool=%s depth=4 ! queue ! fakesink sync=true ts-offset=3600000000000"
                      % name)
        deadline = time.monotonic() + WAIT_S
        while len(ch) > 0:
            assert time.monotonic() < deadline, "xmemsrc never received the buffers"
            time.sleep(0.01)
        proc.kill()
        proc.communicate(timeout=WAIT_S)
        held = [pool.acquire_cpu(64, timeout=WAIT_S) for _ in range(capacity)]
        for b in held:
            b.release()


def test_gst_launch_killed_at_random_moments_leaves_nothing_held(gst_env, unique_name):
    import random
    rounds, capacity = 6, 12
    rnd = random.Random(1234)
    received = 0
    for r in range(rounds):
        name = unique_name("gst")
        with xmem.BufferPool(name, capacity) as pool, pool.channel("frames", depth=4) as ch:
            path = " ! identity drop-allocation=true" if r % 2 else ""
            proc = launch(gst_env, (SOURCE % (100000, "RGB", 32, 8)) + path + " ! xmemsink sync=false depth=4 pool="
                          + name)
            stop_after = rnd.randrange(1, 40)
            seq = 0
            for _ in range(stop_after):
                with receive_frames(ch, 1, proc)[0] as b:
                    seq += 1
                    assert b.seq == seq and b.shape == (8, 32, 3)
            proc.kill()
            proc.communicate(timeout=WAIT_S)
            while True:  # what was sent before the kill is intact
                b = ch.try_recv(timeout=0)
                if b is None:
                    break
                with b:
                    seq += 1
                    assert b.seq == seq and b.shape == (8, 32, 3)
            received += seq
            held = [pool.acquire_cpu(64, timeout=WAIT_S) for _ in range(capacity)]
            for b in held:
                b.release()
    print("gstreamer kill rounds: %d kills, %d frames received intact" % (rounds, received))


def test_xmemsrc_without_its_pool_posts_a_clear_error(gst_env, unique_name):
    name = unique_name("gst")
    out = run(gst_env, "xmemsrc pool=%s ! fakesink" % name, expect_ok=False)
    assert "no xmem pool '%s'" % name in out and "XMEM_E_NOT_FOUND" in out, out[-3000:]


@pytest.mark.parametrize("props,message", [
    ("", "xmemsink needs a pool: set pool=NAME"),
    ("pool=bad/name!", "XMEM_E_INVALID_NAME"),
    ("pool={pool} depth=3", "could not open channel 'frames'"),
])
def test_xmemsink_bad_properties_post_clear_errors(gst_env, unique_name, props, message):
    name = unique_name("gst")
    with xmem.BufferPool(name, 4):
        out = run(gst_env, "videotestsrc num-buffers=1 ! xmemsink " + props.format(pool=name), expect_ok=False)
    assert message in out, out[-3000:]


# ------------------------------------------------------------------------------------------ across "hosts"

_PRODUCER = r"""
import sys, numpy as np, xmem
name, n, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pool = xmem.BufferPool(name, 16)
ch = pool.channel("frames", depth=8)
print("ready", flush=True)
sys.stdin.readline()
for i in range(n):
    buf = pool.acquire_cpu(shape=(h, w, 3), dtype="uint8", seq=i + 1, content_type="image/rgb8", timeout=30)
    buf.numpy()[:] = ((np.arange(h * w * 3) * 7 + i * 31) % 251).astype(np.uint8).reshape(h, w, 3)
    ch.send(buf, timeout=30)
end = pool.acquire_cpu(1, timeout=30)
end.set_description(content_type="application/x-xmem-end")
ch.send(end, timeout=30)
sys.stdin.readline()
ch.close()
pool.close()
"""

_CONSUMER = r"""
import sys, numpy as np, xmem
name, n, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pool = xmem.BufferPool(name, 16)
ch = pool.channel("frames", depth=8)
print("ready", flush=True)
checked = 0
for i in range(n):
    with ch.recv(timeout=30) as buf:
        assert buf.content_type == "video/RGB;w=%d;h=%d" % (w, h), (i, buf.content_type)
        assert buf.shape == (h, w, 3) and buf.seq == i + 1, (buf.shape, buf.seq)
        expect = ((np.arange(h * w * 3) * 7 + i * 31) % 251).astype(np.uint8).reshape(h, w, 3)
        assert np.array_equal(buf.numpy(), expect), "frame %d differs" % i
        checked += buf.numpy().nbytes
# Every frame is in: a test may now stop a receiver that has no EOS of its own (RTP) without losing one.
print("frames", n, flush=True)
with ch.recv(timeout=30) as buf:
    assert buf.content_type == "application/x-xmem-end", buf.content_type
print("ok", n, checked, flush=True)
ch.close()
pool.close()
"""


def _tcp_sockets(port, state):
    """Local sockets of /proc/net/tcp on `port` in `state` ("0A" listening, "01" established)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return [r for r in rows if int(r[1].split(":")[1], 16) == port and r[3] == state]


def _wait_for(what, predicate, procs):
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        for p in procs:
            assert p.poll() is None, "%s: a process ended early:\n%s" % (what, p.stdout.read()[-3000:])
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_two_hosts_over_tcp_with_gdp_lose_no_frame_and_keep_caps(gst_env, tmp_path):
    import socket
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    host_a.mkdir()
    host_b.mkdir()
    env_a = dict(gst_env, XMEM_SHM_DIR=str(host_a))
    env_b = dict(gst_env, XMEM_SHM_DIR=str(host_b))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n, h, w = 30, 48, 64
    py = [sys.executable, "-c"]
    args = ["cam", str(n), str(h), str(w)]
    popen = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs = []
    try:
        producer = subprocess.Popen(py + [_PRODUCER] + args, env=env_a, **popen)
        consumer = subprocess.Popen(py + [_CONSUMER] + args, env=env_b, **popen)
        procs += [producer, consumer]
        assert producer.stdout.readline().strip() == "ready"
        assert consumer.stdout.readline().strip() == "ready"
        # Host B listens, host A connects: tcpclientsink writes each buffer into the socket before it returns, so
        # the EOS message that ends host A's gst-launch comes after every byte is in the kernel, and closing the
        # socket delivers them. (tcpserversink only queues buffers for its writer thread, and stopping it at EOS
        # drops what that thread has not written yet: the tail of the stream.)
        receiver = launch(env_b, "tcpserversrc host=127.0.0.1 port=%d ! gdpdepay ! xmemsink pool=cam sync=false"
                          % port, verbose=False)
        procs.append(receiver)
        _wait_for("tcpserversrc listening", lambda: _tcp_sockets(port, "0A"), procs)
        sender = launch(env_a, "xmemsrc pool=cam ! gdppay ! tcpclientsink host=127.0.0.1 port=%d sync=false" % port,
                        verbose=False)
        procs.append(sender)
        _wait_for("tcpclientsink connected", lambda: _tcp_sockets(port, "01"), procs)
        producer.stdin.write("go\n")
        producer.stdin.flush()
        lines = [consumer.stdout.readline(), consumer.stdout.readline()]
        result = lines[1].split()
        assert lines[0].split() == ["frames", str(n)] and result[:2] == ["ok", str(n)], \
            ("".join(lines) + consumer.stdout.read())[-3000:]
        assert int(result[2]) == n * h * w * 3
        finish(sender)
        finish(receiver)
        producer.stdin.write("done\n")
        producer.stdin.flush()
        assert producer.wait(WAIT_S) == 0 and consumer.wait(WAIT_S) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(WAIT_S)
    assert os.listdir(host_a) == [] and os.listdir(host_b) == [], "segments left in the two shm directories"


def test_two_hosts_over_rtp_raw_video_on_loopback(gst_env, tmp_path):
    import socket
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    host_a.mkdir()
    host_b.mkdir()
    env_a = dict(gst_env, XMEM_SHM_DIR=str(host_a))
    env_b = dict(gst_env, XMEM_SHM_DIR=str(host_b))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Small frames (two packets each, all of them fit the receiver's socket buffer): loopback loses none.
    n, h, w = 20, 24, 32
    py = [sys.executable, "-c"]
    args = ["cam", str(n), str(h), str(w)]
    popen = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs = []
    try:
        producer = subprocess.Popen(py + [_PRODUCER] + args, env=env_a, **popen)
        # The consumer checks n frames, then the end marker the receiver's xmemsink sends on EOS (gst-launch -e).
        consumer = subprocess.Popen(py + [_CONSUMER] + args, env=env_b, **popen)
        procs += [producer, consumer]
        assert producer.stdout.readline().strip() == "ready"
        assert consumer.stdout.readline().strip() == "ready"
        caps = ("application/x-rtp,media=video,clock-rate=90000,encoding-name=RAW,sampling=RGB,depth=(string)8,"
                "width=(string)%d,height=(string)%d,colorimetry=(string)SMPTE240M,payload=96" % (w, h))
        receiver = subprocess.Popen([GST_LAUNCH, "-e", "udpsrc", "address=127.0.0.1", "port=%d" % port,
                                     "caps=" + caps, "!", "rtpvrawdepay", "!", "xmemsink", "pool=cam", "sync=false"],
                                    env=env_b, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(receiver)
        _wait_for("udpsrc bound", lambda: _udp_bound(port), procs)
        sender = launch(env_a, "xmemsrc pool=cam ! videoconvert ! video/x-raw,format=RGB ! rtpvrawpay ! "
                               "udpsink host=127.0.0.1 port=%d sync=false" % port, verbose=False)
        procs.append(sender)
        producer.stdin.write("go\n")
        producer.stdin.flush()
        finish(sender)  # the end marker ends the sender; RTP carries no EOS: the receiver is stopped with one
        # Only once the consumer has every frame: SIGINT makes gst-launch -e send EOS to udpsrc at once, and what
        # udpsrc and rtpvrawdepay have not pushed yet (datagrams still in the socket) is dropped with it.
        first = consumer.stdout.readline()
        assert first.split() == ["frames", str(n)], (first + consumer.stdout.read())[-3000:]
        # gst-launch -e: EOS, then xmemsink sends the end marker.
        receiver.send_signal(signal.SIGINT)
        result = consumer.stdout.read().split()
        assert result[:2] == ["ok", str(n)], " ".join(result)
        assert int(result[2]) == n * h * w * 3
        finish(receiver)
        producer.stdin.write("done\n")
        producer.stdin.flush()
        assert producer.wait(WAIT_S) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(WAIT_S)
    assert os.listdir(host_a) == [] and os.listdir(host_b) == [], "segments left in the two shm directories"


def _udp_bound(port):
    with open("/proc/net/udp") as f:
        return any(int(line.split()[1].split(":")[1], 16) == port for line in f.readlines()[1:])


def test_a_consumer_killed_mid_stream_loses_nothing_for_the_others(gst_env, unique_name):
    name = unique_name("gst")
    capacity, frames = 16, 40
    holder = r"""
import sys, xmem
pool = xmem.BufferPool.open(sys.argv[1])
ch = pool.channel("frames", depth=4)
held = [ch.recv(timeout=30) for _ in range(3)]
print(" ".join(str(b.seq) for b in held), flush=True)
sys.stdin.readline()
"""
    with xmem.BufferPool(name, capacity) as pool, pool.channel("frames", depth=4) as ch:
        proc = launch(gst_env, (SOURCE % (frames, "RGB", 32, 8)) + " ! xmemsink sync=false depth=4 pool=" + name)
        victim = subprocess.Popen([sys.executable, "-c", holder, name], env=gst_env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        taken = [int(x) for x in victim.stdout.readline().split()]
        assert len(taken) == 3
        victim.kill()  # holding three frames
        victim.wait(WAIT_S)
        rest = []
        for _ in range(frames + 1 - 3):  # released at once: the pool has room only once the dead one's come back
            with receive_frames(ch, 1, proc)[0] as b:
                rest.append(b.seq)
        finish(proc)
        # Every frame went to exactly one consumer, the end marker too.
        assert sorted(taken + rest) == list(range(1, frames + 2))
        # The dead consumer's three references come back: every slot can be taken.
        held = [pool.acquire_cpu(64, timeout=WAIT_S) for _ in range(capacity)]
        for b in held:
            b.release()


# ------------------------------------------------------------------------------------------ examples

EXAMPLES = os.path.join(REPO_ROOT, "python", "examples")


def test_examples_encode_numpy_frames_to_a_file_and_decode_it_back(gst_env, unique_name, tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("numpy_to_gst", os.path.join(EXAMPLES, "numpy_to_gst.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    video = tmp_path / "out.avi"
    n, h, w = 12, 96, 128
    enc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "numpy_to_gst.py"), str(video), "--count", str(n),
                          "--width", str(w), "--height", str(h), "--pool", unique_name("gst")],
                         env=gst_env, capture_output=True, text=True, timeout=WAIT_S * 2)
    assert enc.returncode == 0, enc.stdout + enc.stderr
    # The file is real Motion JPEG: decoded by GStreamer into xmem, each frame is the one sent (lossy, so close).
    name = unique_name("gst")
    with xmem.BufferPool(name, 16) as pool, pool.channel("frames", depth=8) as ch:
        proc = launch(gst_env, "filesrc location=%s ! avidemux ! jpegdec ! videoconvert ! video/x-raw,format=RGB ! "
                               "xmemsink sync=false pool=%s" % (video, name))
        got = receive_frames(ch, n + 1, proc)
        finish(proc)
        for i, buf in enumerate(got[:n]):
            with buf:
                diff = np.abs(buf.numpy().astype(np.int16) - example.frame(i, h, w).astype(np.int16))
                assert diff.mean() < 8, "frame %d: mean difference %.1f" % (i, diff.mean())
        assert got[n].content_type == EOS_CONTENT_TYPE
        got[n].release()
    dec = subprocess.run([sys.executable, os.path.join(EXAMPLES, "gst_to_numpy.py"), "--file", str(video), "--quiet",
                          "--width", str(w), "--height", str(h), "--pool", unique_name("gst")],
                         env=gst_env, capture_output=True, text=True, timeout=WAIT_S * 2)
    assert dec.returncode == 0 and dec.stdout.startswith("frames %d " % n), dec.stdout + dec.stderr
