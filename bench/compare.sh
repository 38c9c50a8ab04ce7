#!/usr/bin/env bash
# xmem side by side with every peer, in one run: the peers of ../shared/peers/run.sh (a C pool + Unix socket, a C
# spin ring, iceoryx 2.0 WaitSet and busy-poll, Python shared_memory + Pipe, torch.multiprocessing), xmem's C#
# handoff sleeping and spinning (bench/Xmem.Benchmarks handoff [--spin-us 200]) and xmem's Python handoff (the
# compiled module, bench/python/bench_handoff.py), all with the benchmark protocol (../shared/benchmark-protocol.md),
# producer on CPU 0 and consumer on CPU 1, in INTERLEAVED rounds: round r runs every contender once before round
# r + 1 starts (the order rotates by one each round), so that a noisy neighbour hits them alike.
#
#   bench/compare.sh [rounds] [--no-build] [--no-python]      (rounds: default 3; about 1–2 minutes a round)
#
# Builds what it needs (the Release benchmark; with the Python handoff also the wheel, scripts/build-native.sh, and
# a venv artifacts/venv-bench with it installed offline); --no-build uses what is there. Installs no package: what
# is missing is said, with how to get it (scripts/install-deps.sh --bench installs iceoryx, linux-perf and
# python3-matplotlib; a missing iceoryx shows as "not installed" in the table).
#
# Writes artifacts/bench/compare-<UTC date and time>.txt: a MACHINE line (date, nproc, CPU model, kernel), then per
# round `ROUND <r> begin=… load="…"`, every RESULT / SKIP / FAIL line of that round prefixed with the round number,
# and `ROUND <r> end=… load="…"`; the contenders' whole output goes to the .log beside it. Then bench/compare.py
# reads the file: the table goes to the .md beside it (and to stdout), the plot to the .png beside it.
# To refresh the documentation's figure: /usr/bin/python3 bench/compare.py <file> --plot docs/img/peers.png
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=/usr/bin/python3
peers_sh=${XMEM_PEERS:-$root/../shared/peers/run.sh}
bench_bin=bench/Xmem.Benchmarks/bin/Release/net10.0/Xmem.Benchmarks
venv=artifacts/venv-bench

rounds=3
build=1
with_python=1
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --no-python) with_python=0 ;;
        [1-9] | [1-9][0-9]) rounds=$arg ;;
        *)
            echo "usage: $0 [rounds 1..99] [--no-build] [--no-python]" >&2
            exit 2
            ;;
    esac
done

say() { echo "compare: $*" >&2; }
die() {
    say "FAILED: $*"
    exit 1
}

[[ -x "$peers_sh" ]] || die "the peers' script $peers_sh is not there (XMEM_PEERS=… names another)."
peers_sh=$(readlink -f "$peers_sh")
mkdir -p artifacts/bench

if [[ $build -eq 1 ]]; then
    say "building bench/Xmem.Benchmarks (Release)"
    dotnet build bench/Xmem.Benchmarks/Xmem.Benchmarks.csproj -c Release -nologo -v:q >/dev/null \
        || die "bench/Xmem.Benchmarks does not build: dotnet build bench/Xmem.Benchmarks -c Release"
fi
[[ -x "$bench_bin" ]] || die "$bench_bin is missing: run without --no-build."

python_note=""
if [[ $with_python -eq 1 ]]; then
    if [[ $build -eq 1 ]]; then
        say "building the wheel (scripts/build-native.sh) and $venv"
        if ! ./scripts/build-native.sh >artifacts/build-native-bench.log 2>&1; then
            python_note="scripts/build-native.sh failed (artifacts/build-native-bench.log)"
        else
            shopt -s nullglob
            wheels=(dist/xmem_shm-*.whl)
            shopt -u nullglob
            rm -rf "$venv"
            if [[ ${#wheels[@]} -ne 1 ]]; then
                python_note="expected one dist/xmem_shm-*.whl after scripts/build-native.sh, found ${#wheels[@]}"
            elif ! { "$python" -m venv --system-site-packages "$venv" &&
                "$venv/bin/python" -m pip install --no-index --no-deps --force-reinstall --quiet \
                    --disable-pip-version-check "${wheels[0]}"; } >artifacts/venv-bench.log 2>&1; then
                python_note="could not install ${wheels[0]:-the wheel} into $venv (artifacts/venv-bench.log)"
            fi
        fi
    fi
    if [[ -z "$python_note" ]] && ! XMEM_IMPLEMENTATION=compiled "$venv/bin/python" -c 'import xmem' 2>/dev/null; then
        python_note="$venv has no importable compiled xmem: run without --no-build"
    fi
else
    python_note="left out (--no-python)"
fi
[[ -n "$python_note" ]] && say "xmem Python: $python_note"

command -v iox-roudi >/dev/null ||
    say "iceoryx is not installed: scripts/install-deps.sh --bench (its columns will say \"not installed\")"
"$python" -c 'import matplotlib' 2>/dev/null ||
    say "python3-matplotlib is not installed: scripts/install-deps.sh --bench (no plot without it)"
"$python" -c 'import torch' 2>/dev/null ||
    say "python3-torch is not installed: scripts/install-deps.sh (the torch.mp column will say \"not installed\")"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=artifacts/bench/compare-$stamp.txt
log=artifacts/bench/compare-$stamp.log
: >"$log"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*:[[:space:]]*//')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || commit="$commit+changes"

# One contender's run: its whole output to the log; its RESULT, SKIP and FAIL lines, prefixed with the round, to
# the results file; a failure (non-zero exit, or killed by the timeout) as a FAIL line naming the contender.
run_part() {
    local r=$1 name=$2 limit=$3
    shift 3
    printf '\n==> round %s: %s (%s)\n' "$r" "$name" "$*" >>"$log"
    local part
    part=$(mktemp "${TMPDIR:-/tmp}/xmem-compare.XXXXXX")
    timeout "$limit" "$@" >"$part" 2>&1
    local rc=$?
    cat "$part" >>"$log"
    grep -E '^(RESULT|SKIP|FAIL)' "$part" | sed "s/^/$r /" >>"$out"
    rm -f "$part"
    if [[ $rc -ne 0 ]]; then
        echo "$r FAIL $name: exit code $rc$([[ $rc -eq 124 ]] && echo " (timed out after $limit s)") (see $log)" >>"$out"
        say "round $r: $name failed (exit code $rc; see $log)"
    fi
}

contender() {
    local r=$1 which=$2
    case "$which" in
        peers) run_part "$r" peers 600 "$peers_sh" 1 ;;
        xmem.block) run_part "$r" xmem.block 300 "$bench_bin" handoff --runs 1 --producer-cpu 0 --consumer-cpu 1 \
            --result-lines ;;
        xmem.spin) run_part "$r" xmem.spin 300 "$bench_bin" handoff --runs 1 --producer-cpu 0 --consumer-cpu 1 \
            --spin-us 200 --result-lines ;;
        xmem-python)
            if [[ -n "$python_note" ]]; then
                echo "$r SKIP xmem-python: $python_note" >>"$out"
            else
                run_part "$r" xmem-python 300 env XMEM_IMPLEMENTATION=compiled "$venv/bin/python" \
                    bench/python/bench_handoff.py --xmem-only --result-lines --runs 1
            fi
            ;;
    esac
}

{
    echo "# bench/compare.sh $rounds rounds, xmem $commit, peers $peers_sh; producer CPU 0, consumer CPU 1"
    printf 'MACHINE date=%s nproc=%s cpu="%s" kernel="%s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" \
        "$cpu_model" "$(uname -srvm)"
} >"$out"
say "$rounds interleaved rounds; results in $out (whole output in $log)"

order=(peers xmem.block xmem.spin xmem-python)
for ((r = 1; r <= rounds; r++)); do
    echo "ROUND $r begin=$(date -u +%Y-%m-%dT%H:%M:%SZ) load=\"$(loadavg)\"" >>"$out"
    say "round $r of $rounds (load $(loadavg))"
    for ((k = 0; k < ${#order[@]}; k++)); do
        contender "$r" "${order[$(((k + r - 1) % ${#order[@]}))]}"
    done
    echo "ROUND $r end=$(date -u +%Y-%m-%dT%H:%M:%SZ) load=\"$(loadavg)\"" >>"$out"
done

plot=(--plot "${out%.txt}.png")
"$python" -c 'import matplotlib' 2>/dev/null || plot=(--no-plot)
"$python" bench/compare.py "$out" "${plot[@]}" | tee "${out%.txt}.md"
rc=${PIPESTATUS[0]}
say "results $out, table ${out%.txt}.md$([[ ${plot[0]} == --plot ]] && echo ", plot ${plot[1]}")"
exit "$rc"
