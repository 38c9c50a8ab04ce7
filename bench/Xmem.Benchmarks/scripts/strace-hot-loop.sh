#!/usr/bin/env bash
# Counts the system calls made inside the hot loops (the "no system call" half of the targets in docs/benchmarks.md).
#
# usage: bench/Xmem.Benchmarks/scripts/strace-hot-loop.sh [N] [OP...]     (default N=1000000, OP=acquire get addref refcount)
#
# For each OP it runs `Xmem.Benchmarks hot-loop OP N` under `strace -f` and counts, between the loop's begin and end
# markers (two write(2) calls on stderr), the calls made by the looping thread and by every other thread of the
# process (runtime background threads: GC, tiered JIT, finalizer), then divides by N. It also prints the
# `strace -f -c` totals of a run with N and of a run with 0 iterations, whose difference is the loop's share.
set -euo pipefail
cd "$(dirname "$0")/../../.."
N=${1:-1000000}
shift || true
OPS=("$@")
[ ${#OPS[@]} -eq 0 ] && OPS=(acquire get addref refcount)
BIN=bench/Xmem.Benchmarks/bin/Release/net10.0/Xmem.Benchmarks
command -v strace >/dev/null || { echo "strace is missing: sudo apt-get install -y strace" >&2; exit 2; }
[ -x "$BIN" ] || dotnet build bench/Xmem.Benchmarks -c Release -v q >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf '| op | N | calls in loop, looping thread | per op | calls in loop, other threads | strace -c total (N) | strace -c total (0) |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
for op in "${OPS[@]}"; do
    strace -f -qq -o "$tmp/$op.trace" "$BIN" hot-loop "$op" "$N" >/dev/null 2>&1
    read -r main other names < <(awk '
        /xmem-hot-loop:begin/ { tid = $1; inside = 1; next }
        /xmem-hot-loop:end/   { inside = 0; next }
        inside && !/resumed>/ && !/^[0-9]+ +(\+\+\+|---)/ {
            name = $2; sub(/\(.*/, "", name)
            if ($1 == tid) { main++; seen[name]++ } else { other++; oseen[name]++ }
        }
        END {
            list = ""
            for (n in seen) list = list n "×" seen[n] " "
            for (n in oseen) list = list "[other " n "×" oseen[n] "] "
            if (list == "") list = "-"
            printf "%d %d %s\n", main, other, list
        }' "$tmp/$op.trace")
    total_n=$(strace -f -c -o "$tmp/$op.c" "$BIN" hot-loop "$op" "$N" >/dev/null 2>&1; awk '/total/ {print $4}' "$tmp/$op.c" | tail -1)
    total_0=$(strace -f -c -o "$tmp/$op.c0" "$BIN" hot-loop "$op" 0 >/dev/null 2>&1; awk '/total/ {print $4}' "$tmp/$op.c0" | tail -1)
    per_op=$(awk -v m="$main" -v n="$N" 'BEGIN { printf "%.6f", (n > 0 ? m / n : 0) }')
    printf '| %s | %d | %d | %s | %d | %s | %s |\n' "$op" "$N" "$main" "$per_op" "$other" "$total_n" "$total_0"
    [ "$names" != "-" ] && printf '|   calls seen: %s | | | | | | |\n' "$names"
done
