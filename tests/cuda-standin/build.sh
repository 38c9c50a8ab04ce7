#!/usr/bin/env bash
# Builds xmem's strict stand-in CUDA driver — a contract checker, not a GPU (tests/cuda-standin/standin.h,
# docs/cuda.md) — into artifacts/cuda-standin/libcuda.so.1. Only the symbols xmem binds are exported. Rebuilds only
# when a source is newer than the library. Tests load it with XMEM_LIBCUDA=<that path>.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src="$root/tests/cuda-standin"
out="$root/artifacts/cuda-standin"
lib="$out/libcuda.so.1"
mkdir -p "$out"
if [[ -f "$lib" ]] && [[ -z "$(find "$src" -newer "$lib" -name '*.[ch]' -print -quit)" ]]; then
    exit 0
fi
# The second library is a driver that predates VMM: the same stand-in without the 11 VMM entry points.
mkdir -p "$out/no-vmm"
gcc -std=gnu11 -O1 -g -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden -pthread -DSTANDIN_NO_VMM_SYMBOLS \
    -Wl,-soname,libcuda.so.1 -o "$out/no-vmm/libcuda.so.1.tmp" "$src"/api.c "$src"/vmm.c "$src"/registry.c "$src"/log.c
mv -f "$out/no-vmm/libcuda.so.1.tmp" "$out/no-vmm/libcuda.so.1"
gcc -std=gnu11 -O1 -g -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden -pthread \
    -Wl,-soname,libcuda.so.1 -o "$lib.tmp" "$src"/api.c "$src"/vmm.c "$src"/registry.c "$src"/log.c
mv -f "$lib.tmp" "$lib"
echo "cuda-standin: $lib (and $out/no-vmm/libcuda.so.1, without the VMM entry points)"
