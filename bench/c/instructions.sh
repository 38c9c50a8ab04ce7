#!/usr/bin/env bash
# Instructions per C ABI call, counted by valgrind (callgrind) rather than timed: a figure that a machine shared with
# other work does not disturb, for comparing two builds of libxmem.so (e.g. before and after a change to the exports).
#   bench/c/instructions.sh [path/to/libxmem.so]      (default: artifacts/native/libxmem.so)
# Ops: ref_count add_ref_release get_release acquire_release capacity guard_info send_receive (XMEM_BENCH_OPS="..." picks).
# Prints "<op> <instructions per call>": (Ir at n=4000 - Ir at n=2000) / (2000 * 7 repetitions), so the setup cancels.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
lib=$(realpath "${1:-$root/artifacts/native/libxmem.so}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
gcc -O2 -I "$root/include" "$root/bench/c/abi_loop.c" -L "$(dirname "$lib")" -lxmem -Wl,-rpath,"$(dirname "$lib")" -o "$work/abi_loop"
ir() { XMEM_STALE_SWEEP=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$work/abi_loop" "abi-loop-$$" "$1" "$2" 2>&1 | sed -n 's/.*I *refs: *//p' | tr -d ,; }
ops=${XMEM_BENCH_OPS:-ref_count add_ref_release get_release acquire_release capacity guard_info send_receive}
for op in $ops; do
    a=$(ir "$op" 2000)
    b=$(ir "$op" 4000)
    echo "$op $(( (b - a) / 14000 ))"
done
