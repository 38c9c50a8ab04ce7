#!/usr/bin/env bash
# Install the Debian packages xmem's build and tests need.
#
# Idempotent and fast when everything is already there: each package is
# checked with dpkg-query first, and `apt-get update` + `apt-get install` run
# only when at least one is missing.
#
# What needs what:
#   gcc, libc6-dev, binutils  NativeAOT link of libxmem.so. The ILCompiler
#                             looks for `clang` and falls back to `gcc` (with
#                             the bfd linker); objcopy (binutils) does
#                             StripSymbols. No clang/lld/zlib1g-dev needed:
#                             the NativeAOT runtime pack ships its own libz.a.
#   gstreamer1.0-*,           the GStreamer plugin (gstreamer/: headers, pkg-config)
#   libgstreamer*-dev         and its tests (gst-launch-1.0, videotestsrc, videoconvert,
#                             gdppay/tcpserversink, rtpvrawpay: -base, -good, -bad)
#   tmux                      the live `xmem top` test (scripts/test-top.sh): a real
#                             terminal whose pane is captured and keys sent
#   valgrind                  bench/c/instructions.sh (instructions per C ABI call)
#   python3-*                 Python package tests, run with /usr/bin/python3
#                             (the pyenv python3 has no pytest/numpy and PyPI
#                             is unreachable here).
#
# Only with --bench (the benchmarks, not the tests, need them; bench/compare.sh):
#   iceoryx, libiceoryx-*-dev the iceoryx 2.0 peer of ../shared/peers/run.sh (iox-roudi, the C binding)
#   linux-perf                `perf stat` / `perf record` for profiling the hot paths
#   python3-matplotlib        the plot of bench/compare.py (docs/img/peers.png)
#
# Usage: scripts/install-deps.sh [--bench]            install what is missing
#        scripts/install-deps.sh [--bench] --check    only report; exit 1 if missing
set -euo pipefail

PACKAGES=(
    gcc
    libc6-dev
    binutils
    python3
    python3-venv
    python3-pip
    python3-dev
    python3-setuptools
    cython3
    python3-pytest
    python3-numpy
    python3-torch
    libgstreamer1.0-dev
    libgstreamer-plugins-base1.0-dev
    gstreamer1.0-tools
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
    tmux
    valgrind
)

BENCH_PACKAGES=(
    iceoryx
    libiceoryx-binding-c-dev
    libiceoryx-posh-dev
    libiceoryx-hoofs-dev
    linux-perf
    python3-matplotlib
)

check_only=0
for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        --bench) PACKAGES+=("${BENCH_PACKAGES[@]}") ;;
        *)
            echo "usage: $0 [--bench] [--check]" >&2
            exit 2
            ;;
    esac
done

is_installed() {
    # ${db:Status-Status} is "installed" only for fully configured packages
    # ("config-files", "half-installed", ... count as missing).
    local status
    status="$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)"
    [[ "$status" == "installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! is_installed "$pkg"; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#PACKAGES[@]} Debian packages already installed"
    exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if [[ $check_only -eq 1 ]]; then
    exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-deps: not root and no sudo; install manually: ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
start=$SECONDS
"${SUDO[@]}" apt-get update -qq
# --no-install-recommends keeps python3-torch's dependency tree small.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${#missing[@]} package(s) in $((SECONDS - start))s"

# Verify the result rather than trusting apt's exit code alone.
still=()
for pkg in "${missing[@]}"; do
    is_installed "$pkg" || still+=("$pkg")
done
if [[ ${#still[@]} -gt 0 ]]; then
    echo "install-deps: still missing after install: ${still[*]}" >&2
    exit 1
fi
