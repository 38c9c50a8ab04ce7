#!/usr/bin/env bash
# Runs xmem's CUDA suite on a machine with an NVIDIA GPU, PyTorch (and optionally CuPy), but no .NET SDK.
#
# It needs what a build machine made:
#   libxmem.so     the NativeAOT library:  dotnet publish src/Xmem.Native -c Release
#                  (bin/Release/net10.0/linux-x64/publish/libxmem.so)
#   python/xmem    the Python package (or an installed xmem wheel)
# Copy the repository (or just scripts/, tests/gpu/, python/ and the .so) to the GPU machine, then:
#
#   scripts/gpu-test.sh [path/to/libxmem.so]
#
# Environment: XMEM_LIBRARY (the .so, if not given as argument), PYTHON (default python3),
# CUDA_VISIBLE_DEVICES as usual. Exit status: 0 all checks passed, 1 a check failed, 2 no usable GPU.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
lib="${1:-${XMEM_LIBRARY:-}}"
if [[ -z "$lib" ]]; then
    for c in "$here"/src/Xmem.Native/bin/Release/net10.0/linux-x64/publish/libxmem.so "$here"/libxmem.so; do
        [[ -f "$c" ]] && lib="$c" && break
    done
fi
if [[ -z "$lib" || ! -f "$lib" ]]; then
    echo "gpu-test: no libxmem.so; build it with 'dotnet publish src/Xmem.Native -c Release' and pass its path" >&2
    exit 2
fi
export XMEM_LIBRARY="$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")"
export PYTHONPATH="$here/python${PYTHONPATH:+:$PYTHONPATH}"

echo "gpu-test: library $XMEM_LIBRARY"
if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu-test: nvidia-smi not found (no NVIDIA driver?)" >&2
else
    nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader || true
fi
"$py" - <<'PY'
import sys
try:
    import torch
except ImportError:
    print("gpu-test: PyTorch is not installed", file=sys.stderr); sys.exit(2)
if not torch.cuda.is_available():
    print("gpu-test: torch sees no CUDA device", file=sys.stderr); sys.exit(2)
import xmem
print("gpu-test: torch", torch.__version__, "CUDA", torch.version.cuda, "xmem", xmem.__version__ if hasattr(xmem, "__version__") else "?")
PY

# A watchdog on the whole suite: a hang is a failure, never a stuck machine.
timeout --kill-after=10 600 "$py" "$here/tests/gpu/cuda_ipc_suite.py"
