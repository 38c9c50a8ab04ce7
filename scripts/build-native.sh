#!/usr/bin/env bash
# Builds the native library and the Python wheel:
#   1. publishes src/Xmem.Native with NativeAOT → libxmem.so (C ABI: include/xmem.h)
#   2. copies it, with xmem.h, to artifacts/native/ (a stable place for the C tests and XMEM_LIBRARY)
#   3. builds the offline-installable wheel dist/xmem-<version>-py3-none-manylinux_2_36_x86_64.whl
#
# Usage: scripts/build-native.sh            (env: XMEM_CONFIG=Release, XMEM_VERSION=0.1.0, PYTHON=/usr/bin/python3)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
config=${XMEM_CONFIG:-Release}
version=${XMEM_VERSION:-0.1.0}
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

rm -f dist/xmem-*.whl
"$python" scripts/build_wheel.py --package-dir python/xmem --lib artifacts/native/libxmem.so \
    --version "$version" --out dist/ --requires-python ">=3.8"
ls dist/xmem-*.whl
