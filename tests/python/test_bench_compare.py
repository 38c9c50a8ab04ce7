"""bench/compare.py on a fixed results file (tests/python/data/compare-results.txt, made-up figures in the format
bench/compare.sh writes), so that the parser and the tables of the side-by-side comparison cannot rot. No benchmark
runs here: the figures are fixed, the assertions are on the table cells computed from them."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
COMPARE = os.path.join(REPO_ROOT, "bench", "compare.py")
SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "compare-results.txt")
COLUMNS = ["xmem", "C pool + socket", "C spin ring", "iceoryx WaitSet", "iceoryx busy-poll", "py shm+Pipe",
           "torch.mp", "xmem Python", "xmem ÷ best peer"]


def run_compare(results, *args, env=None):
    return subprocess.run([sys.executable, COMPARE, results, *args], capture_output=True, text=True, timeout=120,
                          env=env)


def table_rows(stdout, first_header):
    """{row label: {column: cell}} of the Markdown table whose first header cell is `first_header`."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| " + first_header + " |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(head[1:], cells[1:]))
    return rows


def side_by_side(stdout):
    return table_rows(stdout, "6 MiB frame, benchmark protocol")


def without_iceoryx(tmp_path):
    """The sample as a machine without iceoryx would give it: no iceoryx RESULT, the peers' SKIP line instead."""
    out = []
    with open(SAMPLE, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[1] == "RESULT" and parts[2].startswith("iceoryx."):
                continue
            out.append(line)
            if line.startswith("ROUND") and "begin=" in line:
                r = line.split()[1]
                out.append("%s SKIP iceoryx: apt-get install iceoryx libiceoryx-binding-c-dev\n" % r)
    path = tmp_path / "no-iceoryx.txt"
    path.write_text("".join(out), encoding="utf-8")
    return str(path)


def test_side_by_side_table_gives_medians_spreads_and_per_round_ratios():
    p = run_compare(SAMPLE, "--no-plot")
    assert p.returncode == 0, p.stderr
    rows = side_by_side(p.stdout)
    assert set(next(iter(rows.values()))) == set(COLUMNS)
    sleeping = rows["one-way, sleeping (µs)"]
    assert sleeping["xmem"] == "50.0 (40.0–60.0)"
    assert sleeping["C pool + socket"] == "40.0 (40.0–40.0)"
    assert sleeping["C spin ring"] == "—"  # a spinning peer has no sleeping figure
    assert sleeping["iceoryx WaitSet"] == "45.0 (45.0–45.0)"
    assert sleeping["torch.mp"] == "2073 (2073–2073)"
    assert sleeping["xmem Python"] == "95.0 (90.0–100.0)"
    # per round 40/40, 50/40, 60/40; the best peer is the lowest median (C pool + socket, not iceoryx at 45)
    assert sleeping["xmem ÷ best peer"] == "1.25× (1.00–1.50) vs C pool + socket"
    spinning = rows["one-way, spinning (µs)"]
    assert spinning["xmem"] == "22.0 (21.0–23.0)"
    assert spinning["xmem ÷ best peer"] == "1.10× (1.05–1.15) vs C spin ring"


def test_stream_rows_take_the_highest_frame_rate_as_the_best_peer():
    rows = side_by_side(run_compare(SAMPLE, "--no-plot").stdout)
    sleeping = rows["stream ≤ 4 in flight, sleeping (frames/s)"]
    assert sleeping["xmem"] == "41.0k (40.0k–42.0k)"
    assert sleeping["xmem ÷ best peer"] == "0.51× (0.50–0.53) vs iceoryx WaitSet"
    spinning = rows["stream ≤ 4 in flight, spinning (frames/s)"]
    assert spinning["iceoryx busy-poll"] == "65.0k (65.0k–65.0k)"
    assert spinning["xmem ÷ best peer"] == "0.50× (0.49–0.51) vs C spin ring"


def test_stage_table_pairs_xmem_with_the_c_peer_stage_by_stage():
    p = run_compare(SAMPLE, "--no-plot")
    stages = table_rows(p.stdout, "lockstep stage (µs)")
    checksum = stages["checksum (consumer reads 1519 pages)"]
    assert checksum["xmem"] == "13.0 (11.6–14.5)"
    assert checksum["C pool + socket"] == "5.80 (5.80–5.80)"
    ratios = [c.strip() for c in next(line for line in p.stdout.splitlines()
                                      if line.startswith("| checksum")).strip("|").split("|")]
    assert ratios[3] == "2.24× (2.00–2.50)"  # 11.6/5.8, 13.0/5.8, 14.5/5.8
    assert ratios[6] == "0.95× (0.95–0.95)"  # spinning: 5.3 / 5.6
    for stage in ("acquire", "send", "deliver (t_recv − send done)"):
        assert stage in stages


def test_python_table_gives_the_ratio_to_shared_memory_and_every_rounds_ratio():
    p = run_compare(SAMPLE, "--no-plot")
    rows = table_rows(p.stdout, "Python, xmem compiled ÷ shm+Pipe")
    one_way = rows["one-way, lockstep (µs)"]
    assert one_way["xmem Python"] == "95.0 (90.0–100.0)"
    assert one_way["py shm+Pipe"] == "94.0 (94.0–94.0)"
    assert one_way["÷"] == "1.01× (0.96–1.06)"  # 90/94, 95/94, 100/94
    assert one_way["÷ per round"] == "0.96 / 1.01 / 1.06"
    assert one_way["target"] == "≤ 0.8×"
    stream = rows["stream ≤ 4 in flight (frames/s)"]
    assert stream["÷"] == "1.27× (1.18–1.37)"  # 6000/5100, 6500/5100, 7000/5100
    assert stream["target"] == "≥ 1.3×"
    assert rows["send"]["÷"] == "0.52× (0.52–0.52)"  # 12 / 23


def test_without_python_figures_there_is_no_python_table(tmp_path):
    path = tmp_path / "no-python.txt"
    with open(SAMPLE, encoding="utf-8") as f:
        path.write_text("".join(line for line in f if " RESULT xmem-python." not in line), encoding="utf-8")
    p = run_compare(str(path), "--no-plot")
    assert p.returncode == 0, p.stderr
    assert "Python, xmem compiled ÷ shm+Pipe" not in p.stdout
    assert "one-way, sleeping (µs)" in p.stdout


def test_header_names_the_machine_and_the_load_of_every_round():
    out = run_compare(SAMPLE, "--no-plot").stdout
    assert "3 interleaved round(s), 2026-12-02T03:00:00Z; 2 CPUs (AMD EPYC), Linux 6.18.44" in out
    assert "round 2 03:03:00–03:03:30: 2.00 1.40 1.10 → 3.25 1.80 1.20" in out


def test_a_round_loaded_beyond_the_cpu_count_is_flagged():
    # the sample's 1-minute loads: round 1 1.50 → 2.00, round 2 2.00 → 3.25, round 3 3.25 → 2.75, on 2 CPUs
    out = run_compare(SAMPLE, "--no-plot").stdout
    assert "above the CPU count (2) in round(s) 2, 3;" in out


def test_an_absent_peer_reads_not_installed_and_the_ratio_uses_the_next_best(tmp_path):
    p = run_compare(without_iceoryx(tmp_path), "--no-plot")
    assert p.returncode == 0, p.stderr
    rows = side_by_side(p.stdout)
    assert rows["one-way, sleeping (µs)"]["iceoryx WaitSet"] == "not installed"
    assert rows["one-way, spinning (µs)"]["iceoryx busy-poll"] == "not installed"
    stream = rows["stream ≤ 4 in flight, sleeping (frames/s)"]
    assert stream["iceoryx WaitSet"] == "not installed"
    assert stream["xmem ÷ best peer"] == "0.54× (0.53–0.55) vs C pool + socket"  # 40k/76k … 42k/76k


def test_a_failed_contender_reads_failed_and_partial_rounds_are_counted(tmp_path):
    lines = []
    with open(SAMPLE, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            # xmem.spin failed in every round; xmem Python has no figure in round 3
            if len(parts) > 2 and parts[1] == "RESULT" and parts[2].startswith("xmem.spin."):
                continue
            if parts[:1] == ["3"] and len(parts) > 2 and parts[2].startswith("xmem-python."):
                continue
            lines.append(line)
            if line.startswith("ROUND") and "end=" in line:
                lines.append("%s FAIL xmem.spin: exit code 1 (see the log)\n" % parts[1])
    path = tmp_path / "failed.txt"
    path.write_text("".join(lines), encoding="utf-8")
    rows = side_by_side(run_compare(str(path), "--no-plot").stdout)
    assert rows["one-way, spinning (µs)"]["xmem"] == "failed"
    assert rows["one-way, spinning (µs)"]["xmem ÷ best peer"] == "—"
    assert rows["one-way, sleeping (µs)"]["xmem Python"] == "92.5 (90.0–95.0) [2 of 3 rounds]"


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="python3-matplotlib is not installed (scripts/install-deps.sh --bench)")
def test_plot_is_written_as_png(tmp_path):
    png = tmp_path / "peers.png"
    p = run_compare(without_iceoryx(tmp_path), "--plot", str(png))
    assert p.returncode == 0, p.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000  # two panels of bars, labels and text, not an empty canvas


def test_without_matplotlib_the_tables_still_come_and_it_says_how_to_get_the_plot(tmp_path):
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=str(shim.parent))
    png = tmp_path / "peers.png"
    p = run_compare(SAMPLE, "--plot", str(png), env=env)
    assert p.returncode == 0, p.stderr
    assert "one-way, sleeping (µs)" in p.stdout
    assert "scripts/install-deps.sh --bench" in p.stderr
    assert not png.exists()


def test_a_file_without_rounds_is_refused(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("RESULT c.shm_uds.stream.frames_per_s median=1 min=1 max=1 unit=frames/s n=1\n")
    p = run_compare(str(path), "--no-plot")
    assert p.returncode == 1
    assert "not a results file of bench/compare.sh" in p.stderr


def test_a_failed_peers_script_marks_every_peer_column_failed(tmp_path):
    lines = []
    with open(SAMPLE, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[1] == "RESULT" and not parts[2].startswith("xmem"):
                continue
            lines.append(line)
            if line.startswith("ROUND") and "end=" in line:
                lines.append("%s FAIL peers: exit code 124 (timed out after 600 s) (see the log)\n" % parts[1])
    path = tmp_path / "peers-failed.txt"
    path.write_text("".join(lines), encoding="utf-8")
    rows = side_by_side(run_compare(str(path), "--no-plot").stdout)
    sleeping = rows["one-way, sleeping (µs)"]
    for col in ("C pool + socket", "iceoryx WaitSet", "py shm+Pipe", "torch.mp"):
        assert sleeping[col] == "failed", col
    assert sleeping["xmem"] == "50.0 (40.0–60.0)"
    assert sleeping["xmem ÷ best peer"] == "—"
