#!/usr/bin/python3
"""Reads a results file of bench/compare.sh and prints xmem beside every peer; writes the plot.

    /usr/bin/python3 bench/compare.py artifacts/bench/compare-<date>.txt [--plot PATH.png | --no-plot]

The file (written by bench/compare.sh): ``MACHINE date=… nproc=… cpu="…" kernel="…"``; per round
``ROUND <r> begin=… load="…"``, lines ``<r> RESULT <name> median=… min=… max=… unit=… n=…`` (the peers' format,
../shared/peers/run.sh), ``<r> SKIP <what>: …`` and ``<r> FAIL <what>: …``, then ``ROUND <r> end=… load="…"``.

Every figure is the median over rounds of the round's value (each round's value is that contender's RESULT median),
with the min–max over rounds as its spread. A ratio is taken within each round (xmem's value that round ÷ the
peer's value that round) and its median and spread over rounds are given, so that slow and fast moments of the
machine cancel. "Best peer" is the peer with the best median over rounds in that row (lowest time, most frames/s).

Prints Markdown: the side-by-side table (issue 10), the stage table (xmem against the C pool + socket, sleeping, and
against the C spin ring, spinning), the Python table (issue 16: xmem's compiled module against ``shared_memory`` +
``Pipe``, with every round's ratio) and xmem's floors. The plot (python3-matplotlib: scripts/install-deps.sh --bench)
shows one-way latency and stream frames/s of every contender, bars at the median with min–max error bars.
Exit status: 0, also when a contender is absent (its column says "not installed", "failed" or "no data");
1 when the file has no round; 2 for a bad command line.
"""

import argparse
import os
import re
import shlex
import statistics
import sys

# Columns of the side-by-side table: (label, result name prefix when sleeping, when spinning, the SKIP word that
# means "not installed", is it xmem). None: the contender has no such mode ("—").
COLUMNS = (
    ("xmem", "xmem.block", "xmem.spin", None, True),
    ("C pool + socket", "c.shm_uds", None, None, False),
    ("C spin ring", None, "c.shm_spin", None, False),
    ("iceoryx WaitSet", "iceoryx.block", None, "iceoryx", False),
    ("iceoryx busy-poll", None, "iceoryx.poll", "iceoryx", False),
    ("py shm+Pipe", "py.shm_pipe", None, None, False),
    ("torch.mp", "torch.file_descriptor.prealloc", None, "torch", False),
    ("xmem Python", "xmem-python.compiled", None, "xmem-python", True),
)

ONE_WAY = "lockstep.one_way_total"
FPS = "stream.frames_per_s"

# Rows of the side-by-side table: (label, metric, spinning?, higher is better?).
ROWS = (
    ("one-way, sleeping (µs)", ONE_WAY, False, False),
    ("one-way, spinning (µs)", ONE_WAY, True, False),
    ("stream ≤ 4 in flight, sleeping (frames/s)", FPS, False, True),
    ("stream ≤ 4 in flight, spinning (frames/s)", FPS, True, True),
)

# The stage table: (label, metric).
STAGES = (
    ("acquire", "lockstep.producer.acquire"),
    ("stamp (1519 pages)", "lockstep.producer.stamp_pages"),
    ("send", "lockstep.producer.send"),
    ("deliver (t_recv − send done)", "lockstep.deliver(send_done->consumer_has_data)"),
    ("checksum (consumer reads 1519 pages)", "lockstep.consumer.checksum"),
    ("**one-way total**", ONE_WAY),
    ("round trip", "lockstep.round_trip(ack back)"),
)
STAGE_PAIRS = (("xmem", "xmem.block", "C pool + socket", "c.shm_uds"),
               ("xmem spinning", "xmem.spin", "C spin ring", "c.shm_spin"))

# The Python table (issue 16): xmem's compiled module against shared_memory + Pipe, per round.
PY_MINE, PY_PEER = "xmem-python.compiled", "py.shm_pipe"
PY_ROWS = (
    ("one-way, lockstep (µs)", ONE_WAY, "≤ 0.8×"),
    ("stream ≤ 4 in flight (frames/s)", FPS, "≥ 1.3×"),
) + tuple((label, metric, "") for label, metric in STAGES[:5])

FLOORS = (
    ("atomic increment on shared memory", "floor.shared_atomic_increment"),
    ("futex wake round trip, 2 processes", "floor.futex_round_trip"),
    ("4-byte pipe round trip, 2 processes", "floor.pipe_round_trip"),
    ("memcpy of one frame (6,220,800 B)", "floor.memcpy_frame"),
)

# The plot's bars: (label, prefix, is it xmem).
CONTENDERS = (
    ("xmem\nsleeping", "xmem.block", True),
    ("xmem\nspin 200 µs", "xmem.spin", True),
    ("C pool +\nsocket", "c.shm_uds", False),
    ("C spin\nring", "c.shm_spin", False),
    ("iceoryx\nWaitSet", "iceoryx.block", False),
    ("iceoryx\nbusy-poll", "iceoryx.poll", False),
    ("py shm +\nPipe", "py.shm_pipe", False),
    ("torch.mp", "torch.file_descriptor.prealloc", False),
    ("xmem\nPython", "xmem-python.compiled", True),
)

# Names may hold spaces ("round_trip(ack back)(per-run p50)"): a name ends where " median=" begins.
RESULT_RE = re.compile(r"^(?P<round>\d+) RESULT (?P<name>.+?)\s+median=(?P<median>\S+)\s+min=\S+\s+max=\S+\s+"
                       r"unit=(?P<unit>\S+)\s+n=\d+\s*$")
NOTE_RE = re.compile(r"^(?P<round>\d+) (?P<kind>SKIP|FAIL) (?P<what>[^:\s]+)")
ROUND_RE = re.compile(r"^ROUND (?P<round>\d+) (?P<rest>.*)$")
STAGE_SUFFIX = "(per-run p50)"


class Results:
    """What one results file holds: per (name, round) the RESULT median; SKIP and FAIL words; machine and rounds."""

    def __init__(self):
        self.values = {}  # name -> {round: value}
        self.skipped = set()  # SKIP words: "iceoryx", "torch", "xmem-python"
        self.failed = set()  # FAIL words: "xmem.block", "iceoryx", "peers", ...
        self.machine = {}
        self.rounds = {}  # round -> {"begin": ..., "begin_load": ..., "end": ..., "end_load": ...}

    @classmethod
    def read(cls, path):
        res = cls()
        with open(path, encoding="utf-8") as f:
            for line in f:
                res._line(line.rstrip("\n"))
        return res

    def _line(self, line):
        m = RESULT_RE.match(line)
        if m:
            name = m["name"]
            if name.endswith(STAGE_SUFFIX):
                name = name[: -len(STAGE_SUFFIX)]
            try:
                value = float(m["median"])
            except ValueError:
                return  # a "median=-" of a one-off setup figure
            self.values.setdefault(name, {})[int(m["round"])] = value
            return
        m = NOTE_RE.match(line)
        if m:
            (self.skipped if m["kind"] == "SKIP" else self.failed).add(m["what"])
            return
        m = ROUND_RE.match(line)
        if m:
            fields = dict(kv.split("=", 1) for kv in shlex.split(m["rest"]) if "=" in kv)
            r = self.rounds.setdefault(int(m["round"]), {})
            for key in ("begin", "end"):
                if key in fields:
                    r[key] = fields[key]
                    r[key + "_load"] = fields.get("load", "?")
            return
        if line.startswith("MACHINE "):
            self.machine = dict(kv.split("=", 1) for kv in shlex.split(line[len("MACHINE "):]) if "=" in kv)

    def series(self, prefix, metric):
        """{round: value} of one contender's metric (empty when absent)."""
        if prefix is None:
            return {}
        return self.values.get(prefix + "." + metric, {})

    def absent(self, prefix, skip_word):
        """Why a contender has no figures: "not installed", "failed" or "no data"."""
        if skip_word and skip_word in self.skipped:
            return "skipped" if skip_word.startswith("xmem") else "not installed"
        words = {prefix, prefix.split(".")[0], skip_word}
        if not prefix.startswith("xmem"):
            words.add("peers")  # bench/compare.sh's name for ../shared/peers/run.sh
        if words & self.failed:
            return "failed"
        return "no data"


def spread(series):
    """(median, min, max) over rounds of {round: value}."""
    v = list(series.values())
    return statistics.median(v), min(v), max(v)


def fmt(v, fps=False):
    if fps:
        return "%.1fk" % (v / 1e3) if v >= 1e3 else "%.0f" % v
    if v >= 1000:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def cell(series, rounds, fps=False):
    """The median (min–max) over rounds; "[k of n rounds]" when some rounds have no figure."""
    med, lo, hi = spread(series)
    text = fmt(med, fps) if len(series) == 1 else "%s (%s–%s)" % (fmt(med, fps), fmt(lo, fps), fmt(hi, fps))
    if len(series) < rounds:
        text += " [%d of %d rounds]" % (len(series), rounds)
    return text


def ratio_cell(mine, theirs):
    """Median and spread over rounds of mine[r] / theirs[r], rounds both have."""
    per_round = {r: mine[r] / theirs[r] for r in mine if r in theirs and theirs[r] > 0}
    if not per_round:
        return "—"
    med, lo, hi = spread(per_round)
    f = (lambda x: "%.2f" % x) if hi < 10 else (lambda x: "%.1f" % x)
    if len(per_round) == 1:
        return f(med) + "×"
    return "%s× (%s–%s)" % (f(med), f(lo), f(hi))


def side_by_side(res):
    out = ["| 6 MiB frame, benchmark protocol | " + " | ".join(c[0] for c in COLUMNS) + " | xmem ÷ best peer |",
           "|---|" + "---:|" * (len(COLUMNS) + 1)]
    for label, metric, spinning, higher in ROWS:
        cells = []
        best = None  # (median, label, series)
        mine = None
        for col, sleep_prefix, spin_prefix, skip_word, is_xmem in COLUMNS:
            prefix = spin_prefix if spinning else sleep_prefix
            if prefix is None:
                cells.append("—")
                continue
            s = res.series(prefix, metric)
            if not s:
                cells.append(res.absent(prefix, skip_word))
                continue
            cells.append(cell(s, len(res.rounds), fps=higher))
            if col == "xmem":
                mine = s
            elif not is_xmem:
                med = spread(s)[0]
                if best is None or (med > best[0] if higher else med < best[0]):
                    best = (med, col, s)
        if mine and best:
            ratio = "%s vs %s" % (ratio_cell(mine, best[2]), best[1])
        else:
            ratio = "—"
        out.append("| %s | %s | %s |" % (label, " | ".join(cells), ratio))
    out.append("")
    out.append("Medians over rounds, (min–max over rounds). xmem ÷ best peer: per-round ratio, median (min–max); "
               "below 1× is ahead in the one-way rows, above 1× is ahead in the stream rows. "
               "torch.mp: the file_descriptor strategy, 4 tensors shared once (\"prealloc\").")
    return out


def stage_table(res):
    heads = []
    for mine_label, _, peer_label, _ in STAGE_PAIRS:
        heads += [mine_label, peer_label, "÷"]
    out = ["| lockstep stage (µs) | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for label, metric in STAGES:
        cells = []
        for _, mine_prefix, _, peer_prefix in STAGE_PAIRS:
            mine, theirs = res.series(mine_prefix, metric), res.series(peer_prefix, metric)
            cells.append(cell(mine, len(res.rounds)) if mine else res.absent(mine_prefix, None))
            cells.append(cell(theirs, len(res.rounds)) if theirs else res.absent(peer_prefix, None))
            cells.append(ratio_cell(mine, theirs) if mine and theirs else "—")
        out.append("| %s | %s |" % (label, " | ".join(cells)))
    out.append("")
    out.append("÷: xmem's stage ÷ the C peer's same stage, per round, median (min–max); same rounds as above.")
    return out


def python_table(res):
    """xmem's Python handoff ÷ shared_memory + Pipe: medians, the ratio's median (min–max) and every round's ratio."""
    out = ["| Python, xmem compiled ÷ shm+Pipe | xmem Python | py shm+Pipe | ÷ | ÷ per round | target |",
           "|---|---:|---:|---:|---|---:|"]
    rows = 0
    for label, metric, target in PY_ROWS:
        mine, theirs = res.series(PY_MINE, metric), res.series(PY_PEER, metric)
        if not mine or not theirs:
            continue
        fps = metric == FPS
        per_round = " / ".join("%.2f" % (mine[r] / theirs[r]) for r in sorted(mine) if r in theirs and theirs[r] > 0)
        out.append("| %s | %s | %s | %s | %s | %s |" % (label, cell(mine, len(res.rounds), fps),
                                                        cell(theirs, len(res.rounds), fps), ratio_cell(mine, theirs),
                                                        per_round or "—", target))
        rows += 1
    if not rows:
        return []
    out.append("")
    out.append("÷ per round: rounds in order; below 1× is ahead in the time rows, above 1× in the stream row.")
    return out


def floor_table(res):
    rows = []
    for label, metric in FLOORS:
        s = res.series("xmem.block", metric)
        if s:
            unit = "ns" if metric.endswith("increment") else "µs"
            rows.append("| %s | %s | %s |" % (label, cell(s, len(res.rounds)), unit))
    if not rows:
        return []
    return ["| floor (xmem.block's run, same rounds) | median (min–max) | unit |", "|---|---:|---|"] + rows


def header(res):
    m = res.machine
    out = ["xmem beside its peers: %d interleaved round(s), %s; %s CPUs (%s), %s." % (
        len(res.rounds), m.get("date", "date unknown"), m.get("nproc", "?"), m.get("cpu", "CPU unknown"),
        m.get("kernel", "kernel unknown")), ""]
    loads = []
    for r in sorted(res.rounds):
        info = res.rounds[r]
        loads.append("round %d %s–%s: %s → %s" % (r, info.get("begin", "?")[11:19], info.get("end", "?")[11:19],
                                                   info.get("begin_load", "?"), info.get("end_load", "?")))
    out.append("Load average (1, 5, 15 min) at the start → end of each round: " + "; ".join(loads) + ".")
    busy = busy_rounds(res)
    if busy:
        out += ["", "**Loaded machine: the 1-minute load average was above the CPU count (%s) in round(s) %s; the "
                "contenders competed with other work for the CPUs, so these figures and even their ratios are "
                "noise as much as measurement. Repeat on a quiet machine.**" % (m.get("nproc", "?"),
                                                                               ", ".join(map(str, busy)))]
    return out


def busy_rounds(res):
    """Rounds whose 1-minute load average, at the start or the end, was above the machine's CPU count."""
    try:
        cpus = float(res.machine["nproc"])
    except (KeyError, ValueError):
        return []
    busy = []
    for r in sorted(res.rounds):
        info = res.rounds[r]
        loads = []
        for key in ("begin_load", "end_load"):
            try:
                loads.append(float(info.get(key, "").split()[0]))
            except (IndexError, ValueError):
                pass
        if any(load > cpus for load in loads):
            busy.append(r)
    return busy


def plot(res, path):
    """The plot: one-way latency (sleeping and spinning contenders) and stream frames/s, log scale, min–max bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2))
    for ax, metric, title, unit in ((axes[0], ONE_WAY, "one-way latency, lockstep (lower is better)", "µs"),
                                    (axes[1], FPS, "stream, ≤ 4 frames in flight (higher is better)", "frames/s")):
        xs = range(len(CONTENDERS))
        for x, (label, prefix, is_xmem) in zip(xs, CONTENDERS):
            s = res.series(prefix, metric)
            if not s:
                skip = next((c[3] for c in COLUMNS if prefix in (c[1], c[2])), None)
                ax.text(x, 0.02, res.absent(prefix, skip), rotation=90, ha="center", va="bottom",
                        transform=ax.get_xaxis_transform(), fontsize=8, color="0.4")
                continue
            med, lo, hi = spread(s)
            ax.bar(x, med, color="tab:blue" if is_xmem else "0.6", yerr=[[med - lo], [hi - med]], capsize=4)
            ax.text(x, hi, " " + fmt(med, fps=metric == FPS), ha="center", va="bottom", fontsize=8)
        ax.set_xlim(-0.6, len(CONTENDERS) - 0.4)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([c[0] for c in CONTENDERS], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    from matplotlib.patches import Patch
    axes[1].legend(handles=[Patch(color="tab:blue", label="xmem"), Patch(color="0.6", label="peers")],
                   loc="upper right", fontsize=8)
    loads = [res.rounds[r].get("begin_load", "?").split()[0] for r in sorted(res.rounds)]
    fig.suptitle("6 MiB frame handoff, benchmark protocol: %s, %s CPUs, %d rounds (medians, min–max), "
                 "load at round start %s" % (res.machine.get("date", "?")[:16].replace("T", " "),
                                             res.machine.get("nproc", "?"), len(res.rounds), ", ".join(loads)),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="a results file of bench/compare.sh (artifacts/bench/compare-<date>.txt)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--plot", help="where to write the PNG (default: the results file with .png)")
    g.add_argument("--no-plot", action="store_true", help="tables only")
    args = p.parse_args(argv)

    res = Results.read(args.results)
    if not res.rounds:
        print("compare.py: %s has no ROUND line: not a results file of bench/compare.sh" % args.results,
              file=sys.stderr)
        return 1
    py = python_table(res)
    for part in header(res) + [""] + side_by_side(res) + [""] + stage_table(res) + [""] + (py + [""] if py else []) + \
            floor_table(res):
        print(part)

    if args.no_plot:
        return 0
    path = args.plot or os.path.splitext(args.results)[0] + ".png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("compare.py: no plot: python3-matplotlib is not installed (scripts/install-deps.sh --bench installs "
              "it)", file=sys.stderr)
        return 0
    plot(res, path)
    print("", file=sys.stderr)
    print("compare.py: plot written to %s" % path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
