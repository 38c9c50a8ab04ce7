#!/usr/bin/env bash
# Builds the native library and the Python wheel:
#   1. publishes src/Xmem.Native with NativeAOT → libxmem.so (C ABI: include/xmem.h)
#   2. copies it, with xmem.h, to artifacts/native/ (a stable place for the C tests and XMEM_LIBRARY)
#   3. builds the offline-installable wheel dist/xmem_shm-<version>-cp311-cp311-manylinux_2_34_x86_64.whl (for $PYTHON's
#      version) from python/pyproject.toml: setuptools + Cython (the compiled module xmem._xmem), the ctypes
#      fallback and libxmem.so, with pip's --no-build-isolation so that nothing is downloaded
#   4. builds the stand-in CUDA driver artifacts/cuda-standin/libcuda.so.1 (tests/cuda-standin: a contract checker
#      for the CUDA tests, not a GPU)
#   5. builds the GStreamer plugin artifacts/gstreamer/libgstxmem.so (gstreamer/build.sh; xmemsink, xmemsrc)
#
# Usage: scripts/build-native.sh            (env: XMEM_CONFIG=Release, PYTHON=/usr/bin/python3)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
config=${XMEM_CONFIG:-Release}
python=${PYTHON:-/usr/bin/python3}

echo "build-native: dotnet publish src/Xmem.Native ($config, NativeAOT)"
dotnet publish src/Xmem.Native/Xmem.Native.csproj -c "$config" -nologo -v:q
so="src/Xmem.Native/bin/$config/net10.0/linux-x64/publish/libxmem.so"
if [[ ! -f "$so" ]]; then
    echo "build-native: $so was not produced" >&2
    exit 1
fi

mkdir -p artifacts/native dist
cp -f "$so" artifacts/native/libxmem.so
cp -f include/xmem.h artifacts/native/xmem.h
echo "build-native: artifacts/native/libxmem.so ($(stat -c %s artifacts/native/libxmem.so) bytes)"

rm -f dist/xmem_shm-*.whl
rm -rf python/build
echo "build-native: $python -m pip wheel ./python (setuptools + Cython, offline)"
XMEM_NATIVE_LIB="$root/artifacts/native/libxmem.so" "$python" -m pip wheel --no-build-isolation --no-deps --no-index \
    --disable-pip-version-check --quiet --wheel-dir dist/ ./python
ls dist/xmem_shm-*.whl

echo "build-native: tests/cuda-standin/build.sh (the stand-in libcuda.so.1 the CUDA tests check the binding against)"
./tests/cuda-standin/build.sh

echo "build-native: gstreamer/build.sh (libgstxmem.so: xmemsink, xmemsrc)"
./gstreamer/build.sh
