#!/usr/bin/env bash
# Runs xmem's CUDA suite on a machine with an NVIDIA GPU, PyTorch (and optionally CuPy), but no .NET SDK.
#
# It needs what a build machine made with scripts/build-native.sh:
#   artifacts/native/libxmem.so   the NativeAOT library (built against glibc 2.34 or newer: the GPU machine needs
#                                 glibc >= 2.34, e.g. Ubuntu 22.04, Debian 12, RHEL 9)
#   python/xmem                   the Python package (or an installed xmem wheel)
# and, on the GPU machine: Python 3, PyTorch with CUDA, NumPy (PyTorch's __cuda_array_interface__ import path
# needs it), optionally CuPy.
# Copy the repository (or just scripts/, tests/gpu/, python/ and artifacts/native/) to the GPU machine, then:
#
#   scripts/gpu-test.sh [path/to/libxmem.so]
#
# Environment: XMEM_LIBRARY (the .so, if not given as argument), PYTHON (default python3),
# CUDA_VISIBLE_DEVICES as usual.
# Exit status: 0 all checks passed, 1 a check failed, 2 no usable GPU (no driver, no device, or PyTorch without
# CUDA), 3 libxmem.so missing or not loadable here, 4 a Python dependency missing (PyTorch, NumPy).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
lib="${1:-${XMEM_LIBRARY:-}}"
if [[ -z "$lib" ]]; then
    for c in "$here"/artifacts/native/libxmem.so "$here"/src/Xmem.Native/bin/Release/net10.0/linux-x64/publish/libxmem.so "$here"/libxmem.so; do
        [[ -f "$c" ]] && lib="$c" && break
    done
fi
if [[ -z "$lib" || ! -f "$lib" ]]; then
    echo "gpu-test: no libxmem.so (looked in artifacts/native/, the publish folder and the repository root); build it with scripts/build-native.sh, or pass its path" >&2
    exit 3
fi
glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
if [[ -n "$glibc" ]] && [[ "$(printf '%s\n2.34\n' "$glibc" | sort -V | head -n1)" != "2.34" ]]; then
    echo "gpu-test: this machine has glibc $glibc; libxmem.so needs glibc 2.34 or newer" >&2
    exit 3
fi
export XMEM_LIBRARY="$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")"
export PYTHONPATH="$here/python${PYTHONPATH:+:$PYTHONPATH}"

echo "gpu-test: library $XMEM_LIBRARY"
if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu-test: nvidia-smi not found (no NVIDIA driver?)" >&2
else
    nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader || true
fi
set +e
"$py" - <<'PY'
import sys
try:
    import numpy  # noqa: F401  (torch.as_tensor of a __cuda_array_interface__ goes through NumPy)
except ImportError:
    print("gpu-test: NumPy is not installed (PyTorch's CUDA Array Interface import needs it): pip install numpy", file=sys.stderr); sys.exit(4)
try:
    import torch
except ImportError:
    print("gpu-test: PyTorch is not installed: pip install torch (a CUDA build)", file=sys.stderr); sys.exit(4)
if not torch.cuda.is_available():
    print("gpu-test: torch sees no CUDA device", file=sys.stderr); sys.exit(2)
try:
    import xmem
except (ImportError, OSError) as e:
    print("gpu-test: xmem cannot load %s: %s" % (__import__("os").environ["XMEM_LIBRARY"], e), file=sys.stderr); sys.exit(3)
print("gpu-test: torch", torch.__version__, "CUDA", torch.version.cuda, "xmem", xmem.__version__ if hasattr(xmem, "__version__") else "?")
PY
rc=$?
set -e
[[ $rc -eq 0 ]] || exit $rc

# A watchdog on each suite: a hang is a failure (exit 1), never a stuck machine. The VMM suite checks that a buffer
# outlives its producer (SIGKILLed while the consumer holds it); it passes as skipped on a device without VMM.
set +e
timeout --kill-after=10 600 "$py" "$here/tests/gpu/cuda_ipc_suite.py"
ipc=$?
timeout --kill-after=10 300 "$py" "$here/tests/gpu/vmm_outlive_suite.py"
vmm=$?
set -e
[[ $ipc -eq 2 ]] && exit 2
[[ $ipc -eq 0 && $vmm -eq 0 ]] && exit 0
exit 1
